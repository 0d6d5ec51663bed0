"""Shared wiring for the sidrec DAGs: assets, default args, failure records. No ML logic here."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from airflow.sdk import Asset

CATALOG = Asset("sidrec_catalog")
EVENTS = Asset("sidrec_events")
SID_MAP = Asset("sidrec_sid_map")
MODEL = Asset("sidrec_model")
START = datetime(2026, 1, 1, tzinfo=UTC)
log = logging.getLogger("sidrec.dags")


def config_path() -> str | None:
    """The deployment YAML: env SIDREC_CONFIG (set per deployment), else the project's configs/local.yaml."""
    return os.environ.get("SIDREC_CONFIG") or None


def schedule(dag: str, assets: list[Asset] | None = None):
    """The DAG's schedule from the deployment's `schedules` section: its cron (or preset), its assets, or both
    (whichever comes first); None when neither (manual runs only). Read when the DAG file is parsed."""
    from airflow.timetables.assets import AssetOrTimeSchedule
    from airflow.timetables.trigger import CronTriggerTimetable

    from components.config import load_config

    cron = getattr(load_config(config_path()).schedules, dag)
    if cron and assets:
        return AssetOrTimeSchedule(timetable=CronTriggerTimetable(cron, timezone="UTC"), assets=assets)
    return cron or assets or None


def record_failure(context) -> None:
    """on_failure_callback: log and write a JSON failure record next to the run outputs for ops."""
    ti = context.get("task_instance")
    record = {
        "dag_id": getattr(ti, "dag_id", None),
        "task_id": getattr(ti, "task_id", None),
        "run_id": context.get("run_id"),
        "try_number": getattr(ti, "try_number", None),
        "error": repr(context.get("exception")),
        "at": datetime.now(UTC).isoformat(),
    }
    log.error("sidrec task failed: %s", record)
    from components.config import load_config

    folder = Path(load_config(config_path()).path("runs")) / "failures"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{record['dag_id']}.{record['task_id']}.{record['run_id']}.json".replace(":", "_")).write_text(
        json.dumps(record, indent=2)
    )


def upstream_versions(asset: Asset, names: dict[str, str]) -> dict[str, str | None]:
    """The artifact versions this run works on: from the asset event that triggered it (its extra), else (a
    scheduled or manual run) what the store's LATEST pointers name now, read once here and handed down.

    names: key in the event's extra -> artifact name in the store, e.g. {"sid_version": "sid_map"}."""
    from airflow.sdk import get_current_context

    from components.pipeline import steps

    events = get_current_context().get("triggering_asset_events") or {}
    extra = dict(events[asset][-1].extra or {}) if asset in events and events[asset] else {}
    out = {key: extra.get(key) or steps.resolve(config_path(), None, name) for key, name in names.items()}
    log.info("sidrec versions (%s): %s", "asset event" if extra else "latest", out)
    return out


def log_metrics(step: str, result: dict) -> dict:
    """Metrics in the task log (and returned into XCom by the caller)."""
    log.info("sidrec %s: %s", step, json.dumps(result, default=str))
    return result


DEFAULT_ARGS = {
    "owner": "sidrec",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    "execution_timeout": timedelta(hours=2),
    "on_failure_callback": record_failure,
}
