"""
### sidrec_sid_refresh
Runs when the **sidrec_catalog** asset changes: assigns SIDs to new items with the existing codebooks and
measures drift. When drift crosses the configured thresholds it builds a new SID version. A new SID version
updates the **sidrec_sid_map** asset (extra: SID and curated versions), which triggers `sidrec_training`.
"""

from __future__ import annotations

import os
import sys

from airflow.sdk import dag, task

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # shared wiring beside the DAG files
from sidrec_common import (  # noqa: E402
    CATALOG,
    DEFAULT_ARGS,
    SID_MAP,
    START,
    config_path,
    log_metrics,
    upstream_versions,
)


@dag(
    dag_id="sidrec_sid_refresh",
    schedule=[CATALOG],
    start_date=START,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    tags=["sidrec", "sids"],
)
def sidrec_sid_refresh():
    @task
    def versions() -> dict:
        return upstream_versions(CATALOG, {"curated_version": "curated"})

    @task
    def refresh(inputs: dict) -> dict:
        from components.pipeline import steps

        result = steps.sid_refresh(config_path(), curated_version=inputs["curated_version"])
        return log_metrics("sid_refresh", {**result, "curated_version": inputs["curated_version"]})

    @task.short_circuit
    def new_sid_version(result: dict) -> bool:
        return bool(result["new_sid_version"])

    @task(outlets=[SID_MAP])
    def announce_sid_map(result: dict, *, outlet_events=None) -> dict:
        extra = {k: result[k] for k in ("sid_version", "curated_version", "action")}
        outlet_events[SID_MAP].extra = extra
        return extra

    result = refresh(versions())
    new_sid_version(result) >> announce_sid_map(result)


sidrec_sid_refresh()
