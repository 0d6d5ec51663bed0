"""
### sidrec_training
Weekly, and whenever the **sidrec_sid_map** asset changes: point-in-time examples from Feast, fine-tuning
(with `serving.ranker`, also the ranking stage, learnt on the validation rows and carried in the model dir),
evaluation against the production model and the baselines, promotion only if better (the gate's numbers are
in the task log and XCom), export to the Triton model repository. Updates the **sidrec_model** asset.
Ops can promote a refused candidate by triggering with conf `{"promote_anyway": true}` (logged as such).
"""

from __future__ import annotations

import os
import sys

from airflow.sdk import Param, dag, get_current_context, task
from airflow.timetables.assets import AssetOrTimeSchedule
from airflow.timetables.trigger import CronTriggerTimetable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # shared wiring beside the DAG files
from sidrec_common import DEFAULT_ARGS, MODEL, SID_MAP, START, config_path, log_metrics  # noqa: E402


@dag(
    dag_id="sidrec_training",
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("0 3 * * 0", timezone="UTC"), assets=[SID_MAP]),
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
    def materialize() -> dict:
        from components.orchestration import steps

        return log_metrics("features_materialize", steps.features_materialize(config_path()))

    @task
    def build_examples(features: dict) -> dict:
        from components.orchestration import steps

        return log_metrics("build_examples", steps.build_examples(config_path()))

    @task
    def train(examples: dict) -> dict:
        from components.orchestration import steps

        return log_metrics("train", steps.train(config_path(), examples_uri=examples["examples_uri"]))

    @task
    def evaluate_and_gate(trained: dict, examples: dict) -> dict:
        from components.orchestration import steps

        return log_metrics(
            "gate",
            steps.evaluate_and_gate(
                config_path(), model_uri=trained["model_uri"], examples_uri=examples["examples_uri"]
            ),
        )

    @task.short_circuit
    def promoted(gate: dict) -> bool:
        """Export only what the gate promoted, unless ops trigger with conf {"promote_anyway": true}."""
        if gate["promoted"]:
            return True
        if get_current_context()["params"].get("promote_anyway"):
            from components.orchestration import steps

            log_metrics("promote (ops override)", steps.promote(config_path(), reason="airflow promote_anyway"))
            return True
        return False

    @task(outlets=[MODEL])
    def export(gate: dict) -> dict:
        from components.orchestration import steps

        return log_metrics("export", steps.export(config_path()))

    @task.short_circuit
    def sids_ready(features: dict) -> bool:
        """A first deployment has no SID map yet: skip this run; the sid_map asset triggers training once it exists."""
        return "skipped" not in features

    features = materialize()
    examples = build_examples(features)
    sids_ready(features) >> examples
    gate = evaluate_and_gate(train(examples), examples)
    promoted(gate) >> export(gate)


sidrec_training()
