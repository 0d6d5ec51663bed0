"""
### sidrec_features
Hourly: ingest the raw catalog and events, validate them with Great Expectations (bad rows quarantined with
their reason), publish the curated snapshot, then materialize the Feast online store.
Updates the **sidrec_catalog** and **sidrec_events** assets, which trigger `sidrec_sid_refresh`.
"""

from __future__ import annotations

import os
import sys

from airflow.sdk import dag, task

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # shared wiring beside the DAG files
from sidrec_common import CATALOG, DEFAULT_ARGS, EVENTS, START, config_path, log_metrics  # noqa: E402


@dag(
    dag_id="sidrec_features",
    schedule="@hourly",
    start_date=START,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    tags=["sidrec", "features"],
)
def sidrec_features():
    @task(outlets=[CATALOG, EVENTS])
    def ingest() -> dict:
        from components.orchestration import steps

        return log_metrics("ingest", steps.ingest(config_path()))

    @task
    def materialize(curated: dict) -> dict:
        from components.orchestration import steps

        return log_metrics("features_materialize", steps.features_materialize(config_path()))

    materialize(ingest())


sidrec_features()
