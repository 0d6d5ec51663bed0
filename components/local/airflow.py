"""Local Airflow 3 for development, demos and the end-to-end test: environment, start/stop, REST client, screenshot.

The components (api-server, scheduler, dag-processor, triggerer) run as separate processes rather than
`airflow standalone`, so that each can be bound and stopped on its own: the api-server listens on
127.0.0.1 only, and the scheduler/triggerer log servers (which bind every interface) are skipped — task logs
are read from the local files. Every process runs in its own process group and is stopped by PID
(components.local.procs), never by name. AIRFLOW_HOME lives inside the project (or a test's tmp dir);
metadata is SQLite. The simple auth manager with all-admins is for local use and CI only.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from components.config import PROJECT_ROOT
from components.errors import MissingFileError, SidrecError
from components.local.procs import free_port, log_tail, start_process, stop_process, wait_until

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
TERMINAL_STATES = {"success", "failed"}
T = TypeVar("T")


def pid_file(home: str | Path) -> Path:
    """Where `start` records the URL and component PIDs of a local Airflow (its presence means "running")."""
    return Path(home) / "sidrec_airflow.json"


LOOPBACK = ("127.0.0.1", "localhost", "::1")


class LocalAirflowError(SidrecError):
    """A local Airflow that would be unsafe or cannot start as asked."""


def airflow_environment(
    home: str | Path,
    port: int,
    config_path: str | Path | None = None,
    dags_folder: str | Path | None = None,
    base_env: dict[str, str] | None = None,
    host: str = "127.0.0.1",
) -> dict[str, str]:
    """Environment for every local Airflow process: one AIRFLOW_HOME, one JWT secret, one API URL.

    All components must share the JWT secret (the api-server signs the tokens the task workers present to the
    execution API) and know the execution API's URL — that is why they are set here and not left to defaults.
    Local Airflow runs the all-admins auth manager (no login), so it refuses any address but loopback:
    production runs a real auth manager (infra/README.md, "Authentication").
    """
    if host not in LOOPBACK:
        raise LocalAirflowError(
            f"local Airflow gives every visitor admin rights, so it binds loopback only, not {host!r}: "
            "use infra/ (compose or Helm, with real authentication) to serve Airflow on a network"
        )
    home = Path(home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    env = dict(base_env if base_env is not None else os.environ)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")  # airflow spawns `airflow` sub-commands by name
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(Path(dags_folder or PROJECT_ROOT / "dags").resolve()),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",  # local/CI only
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{host}:{port}/execution/",
            "AIRFLOW__API__HOST": host,
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://{host}:{port}",
            "AIRFLOW__API_AUTH__JWT_SECRET": jwt_secret(home),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "15",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "SIDREC_CONFIG": str(Path(config_path or PROJECT_ROOT / "configs" / "demo.yaml").resolve()),
            "PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p),
        }
    )
    return env


def jwt_secret(home: str | Path) -> str:
    """The local JWT secret: 64 random bytes (hex), created once in AIRFLOW_HOME with owner-only permissions."""
    path = Path(home) / "jwt_secret"
    if not path.exists():
        path.write_text(secrets.token_hex(64))
        path.chmod(0o600)
    return path.read_text().strip()


def init_airflow(env: dict[str, str], timeout: float = 600) -> None:
    """`airflow db migrate` on the SQLite metadata DB, then serialize the DAGs so they can be triggered at once."""
    for cmd in (["db", "migrate"], ["dags", "reserialize"]):
        proc = subprocess.run(
            [sys.executable, "-m", "airflow", *cmd], env=env, capture_output=True, text=True, timeout=timeout
        )
        if proc.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


@dataclass
class LocalAirflow:
    """A running local Airflow: its URL, home and component processes (stopped by PID)."""

    url: str
    home: Path
    pids: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def save(self) -> None:
        pid_file(self.home).write_text(json.dumps({"url": self.url, "pids": self.pids}, indent=2))

    @classmethod
    def load(cls, home: str | Path) -> LocalAirflow:
        home = Path(home)
        state = json.loads(pid_file(home).read_text())
        return cls(url=state["url"], home=home, pids=state["pids"])


def start_airflow(env: dict[str, str], timeout: float = 180) -> LocalAirflow:
    """Start the four components and wait until the api-server reports scheduler, dag-processor, triggerer healthy.

    On a failed start every process already started is stopped before the error is raised.
    """
    home = Path(env["AIRFLOW_HOME"])
    logs = home / "logs" / "components"
    url = env["AIRFLOW__API__BASE_URL"]
    airflow = LocalAirflow(url=url, home=home)
    commands = {
        "api-server": ["api-server", "--host", env["AIRFLOW__API__HOST"], "--port", env["AIRFLOW__API__PORT"]],
        "scheduler": ["scheduler", "--skip-serve-logs"],
        "dag-processor": ["dag-processor"],
        "triggerer": ["triggerer", "--skip-serve-logs"],
    }
    try:
        for name, args in commands.items():
            proc = start_process([sys.executable, "-m", "airflow", *args], logs / f"{name}.log", env=env)
            airflow.procs[name] = proc
            airflow.pids[name] = proc.pid
        airflow.save()
        client = AirflowClient(url)
        wait_until(
            lambda: _all_dead_or(airflow, client.healthy),
            timeout,
            "local Airflow healthy",
            proc=airflow.procs["api-server"],
            log_path=logs / "api-server.log",
        )
        dead = [n for n, p in airflow.procs.items() if p.poll() is not None]
        if dead:
            tails = {n: log_tail(logs / f"{n}.log") for n in dead}
            raise RuntimeError(f"Airflow components exited during start: {dead}\n{json.dumps(tails, indent=1)}")
    except BaseException:
        stop_airflow(airflow)
        raise
    return airflow


def _all_dead_or(airflow: LocalAirflow, check) -> bool:
    if any(p.poll() is not None for p in airflow.procs.values()):
        return True  # let the caller report the dead component
    return check()


def stop_airflow(airflow: LocalAirflow, timeout: float = 30) -> None:
    """SIGTERM each component's process group (by PID), SIGKILL after `timeout`; clears the PID file."""
    for name in reversed(COMPONENTS):
        pid = airflow.procs.get(name) or airflow.pids.get(name)
        if pid is not None:
            stop_process(pid, timeout=timeout)
    pid_file(airflow.home).unlink(missing_ok=True)


class AirflowClient:
    """The public REST API (/api/v2) with a token from /auth/token — what ops scripts and the e2e test use."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._token: str | None = None

    def healthy(self) -> bool:
        """True when the api-server answers and scheduler, dag-processor and triggerer report healthy."""
        try:
            r = httpx.get(f"{self.url}/api/v2/monitor/health", timeout=5)
            if r.status_code != 200:
                return False
            health = r.json()
        except (httpx.HTTPError, ValueError):
            return False
        parts = ("metadatabase", "scheduler", "dag_processor", "triggerer")
        return all((health.get(p) or {}).get("status") == "healthy" for p in parts)

    def token(self) -> str:
        """A JWT from /auth/token (all-admins mode hands one out without credentials; local/CI only)."""
        if self._token is None:
            r = httpx.get(f"{self.url}/auth/token", timeout=self.timeout)
            if r.status_code >= 400:  # older/stricter setups issue tokens on POST
                r = httpx.post(f"{self.url}/auth/token", json={}, timeout=self.timeout)
            r.raise_for_status()
            self._token = r.json()["access_token"]
        return self._token

    def request(self, method: str, path: str, attempts: int = 4, **kwargs: Any) -> Any:
        """One /api/v2 call. A 500 "Database error" is retried with backoff: on SQLite (local/CI) a write that
        meets the scheduler's write fails as "database is locked" and is rolled back whole, so a retry is safe."""
        headers = {"Authorization": f"Bearer {self.token()}"}
        for attempt in range(attempts):
            r = httpx.request(method, f"{self.url}/api/v2{path}", headers=headers, timeout=self.timeout, **kwargs)
            if r.status_code == 500 and "Database error" in r.text and attempt < attempts - 1:
                time.sleep(0.5 * 2**attempt)
                continue
            break
        if r.status_code >= 400:
            raise RuntimeError(f"Airflow API {method} {path} -> HTTP {r.status_code}: {r.text[:1000]}")
        return r.json() if r.content else None

    def dag(self, dag_id: str) -> dict:
        return self.request("GET", f"/dags/{dag_id}")

    def wait_for_dags(self, dag_ids: list[str], timeout: float = 180) -> None:
        """Wait until the dag-processor has parsed every DAG (a trigger before that is a 404)."""

        def parsed() -> bool:
            try:
                found = {d["dag_id"] for d in self.request("GET", "/dags", params={"limit": 100})["dags"]}
            except RuntimeError:
                return False
            return set(dag_ids) <= found

        wait_until(parsed, timeout, f"DAGs parsed: {dag_ids}")

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        """Trigger a run now; returns its dag_run_id. Unpauses the DAG first (a paused DAG queues forever)."""
        self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        body = {"logical_date": None, "conf": conf or {}, "note": "triggered by sidrec"}
        return self.request("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"]

    def runs(self, dag_id: str) -> list[dict]:
        return self.request("GET", f"/dags/{dag_id}/dagRuns", params={"order_by": "-run_after", "limit": 50})[
            "dag_runs"
        ]

    def run(self, dag_id: str, run_id: str) -> dict:
        return self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 900, poll: float = 3.0) -> dict:
        """Poll a run until success or failed; returns the final run (raises on timeout)."""
        last: dict = {}

        def finished() -> dict | None:
            last.update(self.run(dag_id, run_id))
            return dict(last) if last["state"] in TERMINAL_STATES else None

        return _poll(finished, timeout, poll, lambda: f"{dag_id} run {run_id} still {last.get('state')}")

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """A task's XCom value (the step metrics the DAG tasks return)."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        return self.request("GET", path, params={"deserialize": True})["value"]

    def upstream_asset_events(self, dag_id: str, run_id: str) -> list[dict]:
        """The asset events that triggered a run (each names its source DAG and run)."""
        return self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/upstreamAssetEvents")["asset_events"]

    def wait_for_asset_triggered_run(
        self, dag_id: str, source_dag_id: str, source_run_id: str, timeout: float = 300, poll: float = 3.0
    ) -> dict:
        """Wait for the Asset-triggered run of `dag_id` that consumed an event of the run `source_run_id`."""

        unreadable: list[str] = []

        def consumed(run: dict) -> bool:
            # Airflow <= 3.3.2 answers 500 on a run's upstream events while a run its events created has no
            # start_date yet (apache/airflow#71360, fixed by #71379): a queued run is read at a later poll
            if run.get("start_date") is None:
                return False
            try:
                events = self.upstream_asset_events(dag_id, run["dag_run_id"])
            except RuntimeError as e:
                if "HTTP 500" not in str(e):
                    raise
                unreadable[:] = [str(e)]  # an event's other created run may still be queued: read it again
                return False
            return any(
                e.get("source_dag_id") == source_dag_id and e.get("source_run_id") == source_run_id for e in events
            )

        def found() -> dict | None:
            runs = (r for r in self.runs(dag_id) if r.get("run_type") == "asset_triggered")
            return next((r for r in runs if consumed(r)), None)

        return _poll(
            found,
            timeout,
            poll,
            lambda: (
                f"no asset-triggered run of {dag_id} from {source_dag_id}/{source_run_id}"
                + (f" (last unreadable: {unreadable[0]})" if unreadable else "")
            ),
        )


def _poll(find: Callable[[], T | None], timeout: float, poll: float, what: Callable[[], str]) -> T:
    """Call `find` every `poll` s until it returns a value; TimeoutError (saying `what`) after `timeout` s.

    Unlike procs.wait_until it returns what was found and lets API errors propagate.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = find()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what()} after {timeout:.0f} s")
        time.sleep(poll)


def chromium_binary() -> str:
    """The Debian chromium (installed by scripts/setup_system.sh)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise MissingFileError("chromium not found: run scripts/setup_system.sh (apt-get install chromium)")


def screenshot(url: str, out: str | Path, profile_dir: str | Path, width: int = 1600, height: int = 1000) -> Path:
    """Headless Chromium screenshot of an Airflow UI page.

    The UI is a React app: without --virtual-time-budget Chromium captures before it renders (a blank page).
    A fresh user-data-dir keeps the browser's state out of $HOME.
    """
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        chromium_binary(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--no-first-run",
        f"--user-data-dir={Path(profile_dir).resolve()}",
        f"--window-size={width},{height}",
        "--virtual-time-budget=15000",
        f"--screenshot={out}",
        url,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"chromium screenshot failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return out
