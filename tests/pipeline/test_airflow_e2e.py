"""End to end on a real local Airflow 3: trigger sidrec_features through the REST API, watch the Asset-triggered
sidrec_sid_refresh run follow, take a UI screenshot, stop every process by PID."""

from __future__ import annotations

import shutil

import psutil
import pytest
from pipeline_deployment import write_tiny_deployment

from components.local import airflow as la
from components.local.procs import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _listening_hosts(pids: list[int]) -> set[str]:
    """Local addresses of the TCP sockets the processes (and their children) listen on."""
    hosts = set()
    for pid in pids:
        try:
            procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for p in procs:
            try:
                conns = p.net_connections(kind="tcp")
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            hosts |= {c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN}
    return hosts


def test_rest_trigger_runs_features_and_the_asset_triggered_sid_refresh(tmp_path):
    port = free_port()
    env = la.airflow_environment(
        tmp_path / "airflow_home", port, write_tiny_deployment(tmp_path, seed=11, max_steps=30, eval_examples=20)
    )
    la.init_airflow(env)
    airflow = la.start_airflow(env)
    pids = list(airflow.pids.values())
    try:
        assert _listening_hosts(pids) == {"127.0.0.1"}  # api-server on loopback, no log servers on 0.0.0.0
        client = la.AirflowClient(airflow.url)
        client.wait_for_dags(["sidrec_features", "sidrec_sid_refresh"])
        run_id = client.trigger("sidrec_features")
        run = client.wait_for_run("sidrec_features", run_id, timeout=600)
        states = {t["task_id"]: t["state"] for t in client.task_instances("sidrec_features", run_id)}
        assert run["state"] == "success", states
        assert states == {"ingest": "success", "materialize": "success"}

        refresh = client.wait_for_asset_triggered_run("sidrec_sid_refresh", "sidrec_features", run_id)
        refresh = client.wait_for_run("sidrec_sid_refresh", refresh["dag_run_id"], timeout=600)
        assert refresh["state"] == "success"
        refresh_states = {t["task_id"]: t["state"] for t in client.task_instances(*_ids(refresh))}
        result = client.xcom(*_ids(refresh), "refresh")
        assert refresh_states["refresh"] == "success" and result["action"] in {"build", "refresh", "rebuild"}
        # the sid_map asset (which schedules sidrec_training) is updated exactly when a new SID version appears
        announced = refresh_states["announce_sid_map"] == "success"
        assert announced == bool(result["new_sid_version"]), (refresh_states, result)

        if shutil.which("chromium"):
            png = la.screenshot(f"{airflow.url}/dags/sidrec_features", tmp_path / "grid.png", tmp_path / "chrome")
            assert png.stat().st_size > 20_000  # a rendered page, not a blank one
    finally:
        la.stop_airflow(airflow)
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids)
    assert not (tmp_path / "airflow_home" / "sidrec_airflow.json").exists()


def _ids(run: dict) -> tuple[str, str]:
    return run["dag_id"], run["dag_run_id"]
