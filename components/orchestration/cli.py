"""`sidrec airflow ...`: local Airflow 3 for development and demos (init, start, trigger, screenshot, stop).

A thin shell over components.orchestration.local_airflow. `start` runs in the background and records the
component PIDs in AIRFLOW_HOME/sidrec_airflow.json; `stop` stops exactly those processes.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from pathlib import Path

import typer

from components.config import PROJECT_ROOT
from components.orchestration import local_airflow as la
from components.utils.procs import free_port, port_open

app = typer.Typer(no_args_is_help=True)
DAG_IDS = ["sidrec_features", "sidrec_sid_refresh", "sidrec_training", "sidrec_reasoning"]


def _home(home: Path | None) -> Path:
    return Path(home or os.environ.get("AIRFLOW_HOME") or PROJECT_ROOT / ".airflow").resolve()


def _client(home: Path | None) -> la.AirflowClient:
    state = la.pid_file(_home(home))
    if not state.exists():
        raise typer.BadParameter(f"no local Airflow recorded in {state}: run `sidrec airflow start` first")
    return la.AirflowClient(la.LocalAirflow.load(_home(home)).url)


HomeOpt = typer.Option(None, help="AIRFLOW_HOME (default: $AIRFLOW_HOME, else .airflow in the project)")
ConfigOpt = typer.Option(None, "--config", "-c", help="deployment YAML the DAGs run (default configs/demo.yaml)")


@app.command("env")
def env_cmd(port: int = 8080, config: Path | None = ConfigOpt, home: Path | None = HomeOpt) -> None:
    """Print `export` lines for the local Airflow environment (`eval "$(sidrec airflow env)"`)."""
    env = la.airflow_environment(_home(home), port, config)
    for key in sorted(env):
        if key.startswith("AIRFLOW") or key in ("SIDREC_CONFIG", "PYTHONPATH"):
            typer.echo(f"export {key}={shlex.quote(env[key])}")


@app.command()
def init(config: Path | None = ConfigOpt, home: Path | None = HomeOpt) -> None:
    """Create AIRFLOW_HOME, the JWT secret and the SQLite metadata DB (`airflow db migrate`); serialize the DAGs."""
    env = la.airflow_environment(_home(home), 8080, config)
    la.init_airflow(env)
    typer.echo(f"Airflow initialised in {env['AIRFLOW_HOME']}")


@app.command()
def start(
    port: int = typer.Option(8080, help="api-server/UI port on 127.0.0.1 (0: any free port)"),
    config: Path | None = ConfigOpt,
    home: Path | None = HomeOpt,
    timeout: float = 180,
) -> None:
    """Init, then start api-server, scheduler, dag-processor and triggerer in the background; print the UI URL."""
    home_dir = _home(home)
    if la.pid_file(home_dir).exists():
        raise typer.BadParameter(f"Airflow already recorded as running in {home_dir}: `sidrec airflow stop` first")
    port = port or free_port()
    if port_open(port):
        raise typer.BadParameter(f"port {port} on 127.0.0.1 is in use: pass --port 0 for a free one")
    env = la.airflow_environment(home_dir, port, config)
    la.init_airflow(env)
    airflow = la.start_airflow(env, timeout=timeout)
    typer.echo(f"Airflow UI: {airflow.url}  (DAGs run {env['SIDREC_CONFIG']})")
    typer.echo(f"PIDs: {json.dumps(airflow.pids)}; logs in {home_dir / 'logs' / 'components'}")
    typer.echo("Stop with: sidrec airflow stop")


@app.command()
def stop(home: Path | None = HomeOpt) -> None:
    """Stop the components recorded by `start` (by PID, SIGTERM then SIGKILL)."""
    home_dir = _home(home)
    if not la.pid_file(home_dir).exists():
        typer.echo(f"no local Airflow recorded in {home_dir}")
        return
    airflow = la.LocalAirflow.load(home_dir)
    la.stop_airflow(airflow)
    typer.echo(f"stopped {json.dumps(airflow.pids)}")


@app.command()
def trigger(
    dag_id: str = typer.Argument(..., help=f"one of {DAG_IDS}"),
    conf: str = typer.Option("{}", help="run conf as JSON, e.g. '{\"promote_anyway\": true}' for sidrec_training"),
    wait: bool = typer.Option(True, help="poll until the run ends and print its task states"),
    timeout: float = 3600,
    home: Path | None = HomeOpt,
) -> None:
    """Trigger a DAG run through the REST API (/api/v2) and, by default, wait for it."""
    client = _client(home)
    client.wait_for_dags([dag_id], timeout=120)
    run_id = client.trigger(dag_id, json.loads(conf))
    typer.echo(f"triggered {dag_id}: {run_id}")
    if not wait:
        return
    t0 = time.monotonic()
    run = client.wait_for_run(dag_id, run_id, timeout=timeout)
    for ti in client.task_instances(dag_id, run_id):
        typer.echo(f"  {ti['task_id']:<24} {ti['state']!s:<10} {ti.get('duration') or 0:8.1f} s")
    typer.echo(f"{dag_id} {run['state']} in {time.monotonic() - t0:.0f} s")
    if run["state"] != "success":
        raise typer.Exit(1)


@app.command()
def runs(dag_id: str, home: Path | None = HomeOpt) -> None:
    """List a DAG's recent runs (type, state, start, end)."""
    for run in _client(home).runs(dag_id):
        typer.echo(f"{run['dag_run_id']:<70} {run['run_type']:<16} {run['state']:<8} {run.get('end_date') or ''}")


@app.command()
def screenshot(
    out: Path = typer.Option(PROJECT_ROOT / "docs" / "airflow_dags.png", help="PNG to write"),
    dag_id: str | None = typer.Option(None, help="a DAG's grid page; default: the DAG list"),
    home: Path | None = HomeOpt,
) -> None:
    """Headless Chromium screenshot of the Airflow UI (the DAG list, or one DAG's grid)."""
    client = _client(home)
    url = f"{client.url}/dags/{dag_id}" if dag_id else f"{client.url}/dags"
    path = la.screenshot(url, out, profile_dir=_home(home) / "chromium-profile")
    typer.echo(f"wrote {path}")
