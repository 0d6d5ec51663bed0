"""
### sidrec_sid_refresh
Runs when the **sidrec_catalog** asset changes: codes new and edited items with the existing codebooks, retires
deleted ones, and measures drift.
- A refresh (same lineage) is served at once, without retraining: the production model with the refreshed map is
  published and exported (`serve_refresh`), so new items are recommendable right away.
- When drift crosses the configured thresholds it rebuilds the codebooks (SIDs kept stable where possible, an old ->
  new mapping written) and updates the **sidrec_sid_map** asset (extra: SID and curated versions), which triggers
  `sidrec_training` from the base LLM. A rebuild that would reassign too many SIDs is refused, with its numbers.
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

    @task.branch
    def route(result: dict) -> str | None:
        """A new lineage retrains; a refresh of the served lineage is served as is; no change, nothing."""
        if not result["new_sid_version"]:
            return None
        return "announce_sid_map" if result["action"] in ("build", "rebuild") else "serve_refresh"

    @task(outlets=[SID_MAP])
    def announce_sid_map(result: dict, *, outlet_events=None) -> dict:
        extra = {k: result[k] for k in ("sid_version", "curated_version", "action")}
        outlet_events[SID_MAP].extra = extra
        return extra

    @task
    def serve_refresh(result: dict) -> dict:
        from components.pipeline import steps

        return log_metrics("serve_refresh", steps.serve_refresh(config_path(), None, result["sid_version"]))

    result = refresh(versions())
    route(result) >> [announce_sid_map(result), serve_refresh(result)]


sidrec_sid_refresh()
