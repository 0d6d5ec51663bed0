"""`sidrec local ...`: local servers for development and demos, all on 127.0.0.1.

- `sidrec local airflow init|start|stop|trigger|runs|screenshot|env`: Airflow 3 (components.local.airflow).
  `start` runs in the background and records the component PIDs in AIRFLOW_HOME/sidrec_airflow.json; `stop`
  stops exactly those processes.
- `sidrec local triton`: tritonserver on a model repository, on stable ports (foreground).
- `sidrec local s3`: a SeaweedFS S3 server with generated credentials (foreground).
"""

from __future__ import annotations

import json
import os
import shlex
import time
from pathlib import Path

import typer

from components.config import PROJECT_ROOT, load_config
from components.local import airflow as la
from components.local.procs import free_port, port_open
from components.local.s3 import CREDENTIALS_FILE, start_seaweedfs
from components.local.triton import s3_repository_url, start_triton

app = typer.Typer(no_args_is_help=True)
airflow_app = typer.Typer(no_args_is_help=True)
app.add_typer(airflow_app, name="airflow", help="Local Airflow 3: init, start, trigger, runs, screenshot, stop.")
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


@airflow_app.command("env")
def env_cmd(port: int = 8080, config: Path | None = ConfigOpt, home: Path | None = HomeOpt) -> None:
    """Print `export` lines for the local Airflow environment (`eval "$(sidrec airflow env)"`)."""
    env = la.airflow_environment(_home(home), port, config)
    for key in sorted(env):
        if key.startswith("AIRFLOW") or key in ("SIDREC_CONFIG", "PYTHONPATH"):
            typer.echo(f"export {key}={shlex.quote(env[key])}")


@airflow_app.command()
def init(config: Path | None = ConfigOpt, home: Path | None = HomeOpt) -> None:
    """Create AIRFLOW_HOME, the JWT secret and the SQLite metadata DB (`airflow db migrate`); serialize the DAGs."""
    env = la.airflow_environment(_home(home), 8080, config)
    la.init_airflow(env)
    typer.echo(f"Airflow initialised in {env['AIRFLOW_HOME']}")


@airflow_app.command()
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


@airflow_app.command()
def stop(home: Path | None = HomeOpt) -> None:
    """Stop the components recorded by `start` (by PID, SIGTERM then SIGKILL)."""
    home_dir = _home(home)
    if not la.pid_file(home_dir).exists():
        typer.echo(f"no local Airflow recorded in {home_dir}")
        return
    airflow = la.LocalAirflow.load(home_dir)
    la.stop_airflow(airflow)
    typer.echo(f"stopped {json.dumps(airflow.pids)}")


@airflow_app.command()
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


@airflow_app.command()
def runs(dag_id: str, home: Path | None = HomeOpt) -> None:
    """List a DAG's recent runs (type, state, start, end)."""
    for run in _client(home).runs(dag_id):
        typer.echo(f"{run['dag_run_id']:<70} {run['run_type']:<16} {run['state']:<8} {run.get('end_date') or ''}")


@airflow_app.command()
def screenshot(
    out: Path | None = typer.Option(None, help="PNG to write (default: docs/airflow_dags.png in the project)"),
    dag_id: str | None = typer.Option(None, help="a DAG's grid page; default: the DAG list"),
    home: Path | None = HomeOpt,
) -> None:
    """Headless Chromium screenshot of the Airflow UI (the DAG list, or one DAG's grid)."""
    client = _client(home)
    url = f"{client.url}/dags/{dag_id}" if dag_id else f"{client.url}/dags"
    out = out or PROJECT_ROOT / "docs" / "airflow_dags.png"
    path = la.screenshot(url, out, profile_dir=_home(home) / "chromium-profile")
    typer.echo(f"wrote {path}")


@app.command()
def triton(
    repo: str = typer.Option(None, help="Model repository (default: serving.model_repository; s3:// too)."),
    port: int = typer.Option(
        None, help="gRPC port (default: serving.triton_url's); HTTP = port - 1, metrics = port + 1."
    ),
    cpu_fallback: bool = typer.Option(False, help="Run a KIND_GPU repository on the CPU when this host has no GPU."),
    poll_s: int = typer.Option(5, help="Poll the repository this often: a newly exported version goes live."),
    config: Path | None = typer.Option(None, help="Deployment YAML (default: configs/local.yaml)."),
) -> None:
    """Start tritonserver on 127.0.0.1 in the foreground (Ctrl-C stops it by PID). The ports are stable, so a
    client configured with serving.triton_url finds a restarted server where it was."""
    cfg = load_config(config)
    repository = str(repo or cfg.serving.model_repository)
    if repository.startswith("s3://"):  # Triton reads it from S3 itself; credentials from AWS_* env
        endpoint = cfg.store.s3_endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
        repository = s3_repository_url(endpoint, repository) if endpoint else repository
    else:
        repository = cfg.path(repository)
    grpc = port or int(cfg.serving.triton_url.rsplit(":", 1)[1])
    with start_triton(
        repository,
        Path(cfg.path(cfg.run_root)) / "triton",
        ports=(grpc - 1, grpc, grpc + 1),
        cpu_fallback=cpu_fallback,
        poll_s=poll_s,
    ) as server:
        typer.echo(f"triton ready: http={server.http_url} grpc={server.grpc_url} pid={server.pid}")
        try:
            while server.process.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


@app.command()
def s3(
    directory: str = typer.Option(".cache/seaweedfs", "--dir", help="Data directory (holds the credentials file)."),
    bucket: str = typer.Option("sidrec", help="Bucket to create."),
    port: int = typer.Option(8333, help="S3 port on 127.0.0.1."),
) -> None:
    """Run a local SeaweedFS S3 server in the foreground (Ctrl-C stops it). Its credentials are generated once and
    kept in DIR/credentials.json (mode 0600); they are never printed."""
    with start_seaweedfs(Path(directory), s3_port=port) as server:
        client = server.client()
        if bucket not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
            client.create_bucket(Bucket=bucket)
        typer.echo(
            f"S3 endpoint {server.endpoint_url} bucket={bucket} access_key={server.access_key} "
            f"(secret in {Path(directory) / CREDENTIALS_FILE}) pid={server.pid}"
        )
        try:
            while server.process.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
