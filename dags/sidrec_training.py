"""
### sidrec_training
Weekly, and whenever the **sidrec_sid_map** asset changes: point-in-time examples from Feast (train / select /
gate rows), fine-tuning (epochs picked on the select rows; with `serving.ranker` also the ranking stage), the gate
against the production model and the baselines on the gate rows (its numbers in the task log and XCom), promotion
only if it passes, export of the promoted version to the Triton model repository. Updates the **sidrec_model**
asset (extra: model, SID and curated versions). Ops can promote a refused candidate by triggering with conf
`{"promote_anyway": true}` (logged as such).
"""

from __future__ import annotations

import os
import sys

from airflow.sdk import Param, dag, get_current_context, task

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # shared wiring beside the DAG files
from sidrec_common import (  # noqa: E402
    DEFAULT_ARGS,
    MODEL,
    SID_MAP,
    START,
    config_path,
    log_metrics,
    schedule,
    upstream_versions,
)


@dag(
    dag_id="sidrec_training",
    schedule=schedule("training", [SID_MAP]),
    start_date=START,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    params={"promote_anyway": Param(False, type="boolean", description="ops override of a refused gate")},
    tags=["sidrec", "training"],
)
def sidrec_training():
    @task
    def versions() -> dict:
        return upstream_versions(SID_MAP, {"sid_version": "sid_map", "curated_version": "curated"})

    @task.short_circuit
    def sids_ready(inputs: dict) -> bool:
        """A first deployment has no SID map yet: skip; the sid_map asset triggers training once it exists."""
        return bool(inputs["sid_version"] and inputs["curated_version"])

    @task
    def build_examples(inputs: dict) -> dict:
        from components.pipeline import steps

        result = steps.build_examples(config_path(), None, inputs["curated_version"], inputs["sid_version"])
        return log_metrics("build_examples", {**inputs, **result})

    @task
    def train(examples: dict) -> dict:
        from components.pipeline import steps

        result = steps.train(
            config_path(), None, examples["examples_version"], examples["sid_version"], examples["curated_version"]
        )
        return log_metrics("train", {**examples, **result})

    @task
    def evaluate_and_gate(trained: dict) -> dict:
        from components.pipeline import steps

        result = steps.evaluate_and_gate(config_path(), None, trained["candidate_version"], trained["examples_version"])
        keep = {k: trained[k] for k in ("sid_version", "curated_version", "examples_version")}
        return log_metrics("gate", {**keep, **result})

    @task.short_circuit
    def promoted(gate: dict) -> bool:
        """Export only what the gate promoted, unless ops trigger with conf {"promote_anyway": true}."""
        return gate["promoted"] or bool(get_current_context()["params"].get("promote_anyway"))

    @task(outlets=[MODEL])
    def export(gate: dict, *, outlet_events=None) -> dict:
        from components.pipeline import steps

        model_version = gate.get("model_version")
        if model_version is None:  # promoted() let it through: the ops override
            model_version = log_metrics(
                "promote (ops override)",
                steps.promote(config_path(), None, gate["candidate_version"], "airflow promote_anyway"),
            )["model_version"]
        result = log_metrics("export", steps.export(config_path(), None, model_version))
        outlet_events[MODEL].extra = {
            "model_version": model_version,
            "sid_version": gate["sid_version"],
            "curated_version": gate["curated_version"],
            "examples_version": gate["examples_version"],
        }
        return result

    inputs = versions()
    examples = build_examples(inputs)
    sids_ready(inputs) >> examples
    gate = evaluate_and_gate(train(examples))
    promoted(gate) >> export(gate)


sidrec_training()
