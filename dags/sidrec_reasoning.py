"""
### sidrec_reasoning
Daily, and whenever the **sidrec_model** asset changes: OneRec-Think with the promoted model.
1. `train_reasoner`: grounded rationales for a sample of the training rows (coverage and samples in the log), then
   reasoning fine-tuning from the promoted model (reused when this model version already has one).
2. `gate_reasoner`: think-ahead prefixes + runtime completion against full decoding on the held-out gate rows; it
   may lose at most `reasoning.max_hr10_loss` HR@10.
3. Passed: the active users are split into `reasoning.shards` shards processed in parallel (dynamic task mapping),
   each publishing its prefixes (with grounded explanations) as a version; `publish` loads them into the Feast
   online store. Refused: `clear_prefixes` withdraws them (serving decodes fully) and logs why.
"""

from __future__ import annotations

import os
import sys

from airflow.sdk import dag, task

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # shared wiring beside the DAG files
from sidrec_common import DEFAULT_ARGS, MODEL, START, config_path, log_metrics, schedule, upstream_versions  # noqa: E402


@dag(
    dag_id="sidrec_reasoning",
    schedule=schedule("reasoning", [MODEL]),
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
            MODEL,
            {
                "model_version": "model",
                "sid_version": "sid_map",
                "curated_version": "curated",
                "examples_version": "examples",
            },
        )

    @task.short_circuit
    def model_ready(inputs: dict) -> bool:
        return all(inputs.values())

    @task
    def train_reasoner(inputs: dict) -> dict:
        from components.pipeline import steps

        result = steps.train_reasoner(
            config_path(), None, inputs["model_version"], inputs["examples_version"], inputs["curated_version"]
        )
        return log_metrics("train_reasoner", {**inputs, **result})

    @task
    def gate_reasoner(trained: dict) -> dict:
        from components.pipeline import steps

        result = steps.gate_reasoner(
            config_path(), None, trained["reasoning_version"], trained["model_version"], trained["examples_version"]
        )
        keep = ("model_version", "sid_version", "curated_version", "examples_version")
        return log_metrics("gate_reasoner", {**{k: trained[k] for k in keep}, **result})

    @task.branch
    def route(gate: dict) -> str:
        return "plan_shards" if gate["passed"] else "clear_prefixes"

    @task
    def plan_shards(gate: dict) -> list[dict]:
        from components.config import load_config
        from components.pipeline import steps

        log_metrics("active_users", steps.active_users(config_path(), None, gate["curated_version"]))
        shards = load_config(config_path()).reasoning.shards
        keep = ("reasoning_version", "sid_version", "curated_version", "examples_version")
        return [{**{k: gate[k] for k in keep}, "shard": shard, "n_shards": shards} for shard in range(shards)]

    @task(max_active_tis_per_dag=4)
    def think_ahead(job: dict) -> dict:
        from components.pipeline import steps

        result = steps.think_ahead(
            config_path(),
            None,
            job["reasoning_version"],
            job["curated_version"],
            job["shard"],
            job["n_shards"],
            job["examples_version"],
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
                first["reasoning_version"],
                first["curated_version"],
                first["sid_version"],
            ),
        )

    @task
    def clear_prefixes(gate: dict) -> dict:
        from components.pipeline import steps

        result = steps.clear_prefixes(config_path(), None, gate["curated_version"], gate["sid_version"], gate["reason"])
        return log_metrics("clear_prefixes", result)

    inputs = versions()
    trained = train_reasoner(inputs)
    model_ready(inputs) >> trained
    gate = gate_reasoner(trained)
    jobs = plan_shards(gate)
    route(gate) >> [jobs, clear_prefixes(gate)]
    publish(think_ahead.expand(job=jobs))


sidrec_reasoning()
