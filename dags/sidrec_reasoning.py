"""
### sidrec_reasoning
Daily, and whenever the **sidrec_model** asset changes: offline OneRec-Think think-ahead with the promoted model.
Active users are split into shards processed in parallel (dynamic task mapping); each shard samples reasoning
paths, keeps the pooled SID prefixes per user and publishes them as a shard version. The shards are then
published as one `prefixes` artifact version and loaded into the Feast online store, where the serving client
picks them up.
"""

from __future__ import annotations

import os
import sys

from airflow.sdk import dag, task
from airflow.timetables.assets import AssetOrTimeSchedule
from airflow.timetables.trigger import CronTriggerTimetable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # shared wiring beside the DAG files
from sidrec_common import DEFAULT_ARGS, MODEL, START, config_path, log_metrics, upstream_versions  # noqa: E402


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
    def versions() -> dict:
        return upstream_versions(
            MODEL, {"model_version": "model", "sid_version": "sid_map", "curated_version": "curated"}
        )

    @task.short_circuit
    def model_ready(inputs: dict) -> bool:
        return all(inputs.values())

    @task
    def plan_shards(inputs: dict) -> list[dict]:
        from components.config import load_config
        from components.pipeline import steps

        log_metrics("active_users", steps.active_users(config_path(), None, inputs["curated_version"]))
        shards = load_config(config_path()).reasoning.shards
        return [{**inputs, "shard": shard, "n_shards": shards} for shard in range(shards)]

    @task(max_active_tis_per_dag=4)
    def think_ahead(job: dict) -> dict:
        from components.pipeline import steps

        result = steps.think_ahead(
            config_path(), None, job["model_version"], job["curated_version"], job["shard"], job["n_shards"]
        )
        return log_metrics("think_ahead", {**job, **result})

    @task
    def publish(results: list[dict]) -> dict:
        from components.pipeline import steps

        first = results[0]
        return log_metrics(
            "publish_prefixes",
            steps.publish_prefixes(
                config_path(),
                None,
                [r["shard_version"] for r in sorted(results, key=lambda r: r["shard"])],
                first["model_version"],
                first["curated_version"],
                first["sid_version"],
            ),
        )

    inputs = versions()
    jobs = plan_shards(inputs)
    model_ready(inputs) >> jobs
    publish(think_ahead.expand(job=jobs))


sidrec_reasoning()
