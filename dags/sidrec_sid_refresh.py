"""
### sidrec_sid_refresh
Runs when the **sidrec_catalog** asset changes: assigns SIDs to new items with the existing codebooks and
measures drift. When drift crosses the configured thresholds it builds a new SID version and updates the
**sidrec_sid_map** asset — which triggers `sidrec_training` (retraining on catalog drift).
"""

from __future__ import annotations

import os
import sys

from airflow.sdk import dag, task

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # shared wiring beside the DAG files
from sidrec_common import CATALOG, DEFAULT_ARGS, SID_MAP, START, config_path, log_metrics  # noqa: E402


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
    def refresh() -> dict:
        from components.orchestration import steps

        return log_metrics("sid_refresh", steps.sid_refresh(config_path()))

    @task.short_circuit
    def new_sid_version(result: dict) -> bool:
        return bool(result["new_sid_version"])

    @task(outlets=[SID_MAP])
    def announce_sid_map(result: dict) -> dict:
        return {"sid_version": result["sid_version"], "action": result["action"]}

    result = refresh()
    new_sid_version(result) >> announce_sid_map(result)


sidrec_sid_refresh()
