"""End to end on a real local Airflow 3: trigger sidrec_features through the REST API, watch the Asset-triggered
sidrec_sid_refresh run follow, take a UI screenshot, stop every process by PID."""

from __future__ import annotations

import shutil

import psutil
import pytest
import yaml

from components.data.readers import write_table
from components.data.synthetic import generate_synthetic
from components.orchestration import local_airflow as la
from components.utils.procs import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _deployment(root) -> str:
    catalog, events = generate_synthetic(n_items=60, n_users=60, seed=11)
    write_table(catalog, root / "raw" / "catalog.jsonl.gz")
    write_table(events, root / "raw" / "events.csv.gz")
    config = {
        "run_root": str(root / "runs"),
        "data": {
            "catalog_uri": str(root / "raw" / "catalog.jsonl.gz"),
            "events_uri": str(root / "raw" / "events.csv.gz"),
            "splits_dir": None,
        },
        "store": {"root": str(root / "artifacts")},
        "sids": {"codebook_size": 8, "content_encoder": "hashing", "collab_dim": 8},
        "model": {"backbone": "tiny", "tiny_hidden_size": 32, "tiny_layers": 1, "tiny_heads": 2},
        "train": {"batch_size": 16, "lr": 0.01, "max_steps": 30, "torch_threads": 1},
        "eval": {"beam_size": 10, "max_examples": 20},
        "reasoning": {"paths_per_user": 1, "prefixes_per_path": 3, "max_rationale_tokens": 4},
        "serving": {"model_repository": str(root / "triton_repo")},
    }
    (root / "deploy.yaml").write_text(yaml.safe_dump(config))
    return str(root / "deploy.yaml")


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
    env = la.airflow_environment(tmp_path / "airflow_home", port, _deployment(tmp_path))
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
