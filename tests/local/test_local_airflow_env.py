"""The local Airflow environment: loopback only, one persistent JWT secret, the documented dev settings, and a
client that survives SQLite's transient write conflicts."""

from __future__ import annotations

import stat

import httpx
import pytest

from components.local import airflow as la
from components.local.airflow import airflow_environment
from components.local.triton import s3_repository_url


def test_environment_is_loopback_with_one_private_jwt_secret(tmp_path):
    env = airflow_environment(tmp_path / "home", 18080, base_env={"PATH": "/usr/bin"})
    again = airflow_environment(tmp_path / "home", 18080, base_env={"PATH": "/usr/bin"})
    secret = env["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert len(bytes.fromhex(secret)) == 64 and again["AIRFLOW__API_AUTH__JWT_SECRET"] == secret
    assert stat.S_IMODE((tmp_path / "home" / "jwt_secret").stat().st_mode) == 0o600
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18080/execution/"
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "False"
    assert env["AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL"] == "15" and env["AIRFLOW__CORE__PARALLELISM"] == "4"
    assert env["AIRFLOW_HOME"] == str((tmp_path / "home").resolve())
    assert env["PATH"].split(":")[0].endswith("bin") and env["PATH"].endswith("/usr/bin")
    for public in ("0.0.0.0", "10.1.2.3"):  # all-admins mode never listens beyond loopback
        with pytest.raises(la.LocalAirflowError, match="loopback only"):
            airflow_environment(tmp_path / "home", 18080, host=public)


def test_s3_repository_url_puts_the_endpoint_inside():
    assert (
        s3_repository_url("http://127.0.0.1:8333/", "s3://models/triton/") == "s3://http://127.0.0.1:8333/models/triton"
    )
    with pytest.raises(ValueError, match="not an s3"):
        s3_repository_url("http://127.0.0.1:8333", "/local/repo")


def test_client_retries_a_transient_database_error_only(monkeypatch):
    calls = []
    replies = iter(
        [
            httpx.Response(500, json={"detail": {"reason": "Database error"}}),
            httpx.Response(500, json={"detail": {"reason": "Database error"}}),
            httpx.Response(200, json={"dag_run_id": "r1"}),
            httpx.Response(500, json={"detail": "boom"}),
        ]
    )

    def fake_request(method, url, **kwargs):
        calls.append((method, url))
        return next(replies)

    monkeypatch.setattr(la.httpx, "request", fake_request)
    monkeypatch.setattr(la.time, "sleep", lambda s: None)
    client = la.AirflowClient("http://127.0.0.1:1")
    client._token = "t"
    assert client.request("POST", "/dags/d/dagRuns", json={})["dag_run_id"] == "r1" and len(calls) == 3
    with pytest.raises(RuntimeError, match="HTTP 500"):
        client.request("GET", "/dags")  # any other server error is not retried
    assert len(calls) == 4


def test_waiting_for_an_asset_triggered_run_outlasts_airflows_queued_run_500(monkeypatch):
    """Airflow <= 3.3.2 answers 500 on upstreamAssetEvents while a run the event created is still queued
    (apache/airflow#71360; seen as a CI flake of the drift test): the wait skips runs with no start_date, reads a
    500 again at the next poll, and still fails at once on any other error."""
    state = {"polls": 0, "events_calls": 0}
    queued = {"dag_run_id": "r2", "run_type": "asset_triggered", "start_date": None}
    started = {"dag_run_id": "r1", "run_type": "asset_triggered", "start_date": "2026-12-06T00:00:00Z"}
    event = {"source_dag_id": "up", "source_run_id": "s1"}

    def fake_request(method, url, **kwargs):
        path = url.split("/api/v2", 1)[1]
        if path == "/dags/down/dagRuns":
            state["polls"] += 1
            return httpx.Response(200, json={"dag_runs": [queued, started]})
        assert path == "/dags/down/dagRuns/r1/upstreamAssetEvents", f"read a queued run: {path}"
        state["events_calls"] += 1
        if state["events_calls"] == 1:
            return httpx.Response(500, text="Internal Server Error")
        return httpx.Response(200, json={"asset_events": [event]})

    monkeypatch.setattr(la.httpx, "request", fake_request)
    monkeypatch.setattr(la.time, "sleep", lambda s: None)
    client = la.AirflowClient("http://127.0.0.1:1")
    client._token = "t"
    assert client.wait_for_asset_triggered_run("down", "up", "s1", timeout=60, poll=0)["dag_run_id"] == "r1"
    assert state == {"polls": 2, "events_calls": 2}

    def forbidden(method, url, **kwargs):
        if url.endswith("/dags/down/dagRuns"):
            return httpx.Response(200, json={"dag_runs": [started]})
        return httpx.Response(403, json={"detail": "forbidden"})

    monkeypatch.setattr(la.httpx, "request", forbidden)
    with pytest.raises(RuntimeError, match="HTTP 403"):
        client.wait_for_asset_triggered_run("down", "up", "s1", timeout=60, poll=0)
