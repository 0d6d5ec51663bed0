"""
### sidrec_features
Hourly: ingest the raw catalog and events, validate them with Great Expectations (bad rows quarantined with
their reason), publish the curated snapshot, then materialize the Feast online store with the production SID map.
Updates the **sidrec_catalog** and **sidrec_events** assets (extra: the curated version), which trigger
`sidrec_sid_refresh`.
"""

from __future__ import annotations

import os
import sys

from airflow.sdk import dag, task

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # shared wiring beside the DAG files
from sidrec_common import CATALOG, DEFAULT_ARGS, EVENTS, START, config_path, log_metrics, schedule  # noqa: E402


@dag(
    dag_id="sidrec_features",
    schedule=schedule("features"),
    start_date=START,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    tags=["sidrec", "features"],
)
def sidrec_features():
    @task(outlets=[CATALOG, EVENTS])
    def ingest(*, outlet_events=None) -> dict:
        from components.pipeline import steps

        result = log_metrics("ingest", steps.ingest(config_path()))
        for asset in (CATALOG, EVENTS):
            outlet_events[asset].extra = {"curated_version": result["curated_version"]}
        return result

    @task
    def materialize(curated: dict) -> dict:
        from components.pipeline import steps

        sid_version = steps.resolve(config_path(), None, "sid_map")
        if sid_version is None:
            return {"skipped": "no SID map yet: sidrec_sid_refresh builds the first one"}
        prefixes = steps.resolve(config_path(), None, "prefixes")
        return log_metrics(
            "features_materialize",
            steps.features_materialize(config_path(), None, curated["curated_version"], sid_version, prefixes),
        )

    materialize(ingest())


sidrec_features()
