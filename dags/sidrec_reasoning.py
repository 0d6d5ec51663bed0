"""
### sidrec_reasoning
Daily, and whenever the **sidrec_model** asset changes: offline OneRec-Think think-ahead. Active users are
split into shards processed in parallel (dynamic task mapping); each shard samples reasoning paths and keeps
the pooled 2-token SID prefixes per user. The shards are then published as one `prefixes` artifact version
and loaded into the Feast online store, where the serving client picks them up.
"""

from __future__ import annotations

import os
import sys

from airflow.sdk import dag, task
from airflow.timetables.assets import AssetOrTimeSchedule
from airflow.timetables.trigger import CronTriggerTimetable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # shared wiring beside the DAG files
from sidrec_common import DEFAULT_ARGS, MODEL, START, config_path, log_metrics  # noqa: E402

N_SHARDS = int(os.environ.get("SIDREC_REASONING_SHARDS", "4"))


@dag(
    dag_id="sidrec_reasoning",
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("0 2 * * *", timezone="UTC"), assets=[MODEL]),
    start_date=START,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    tags=["sidrec", "reasoning"],
)
def sidrec_reasoning():
    @task
    def plan_shards() -> list[int]:
        from components.orchestration import steps

        log_metrics("active_users", steps.active_users(config_path()))
        return list(range(N_SHARDS))

    @task(max_active_tis_per_dag=4)
    def think_ahead(shard: int) -> dict:
        from components.orchestration import steps

        return log_metrics("think_ahead", steps.think_ahead(config_path(), shard=shard, n_shards=N_SHARDS))

    @task
    def publish(results: list[dict]) -> dict:
        from components.orchestration import steps

        if any(r.get("reason") for r in results):
            return {"skipped": results[0].get("reason")}
        return log_metrics("publish_prefixes", steps.publish_prefixes(config_path(), n_shards=N_SHARDS))

    publish(think_ahead.expand(shard=plan_shards()))


sidrec_reasoning()
