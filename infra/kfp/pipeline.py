"""The sidrec pipeline as a Kubeflow Pipelines v2 definition: the same step functions the Airflow DAGs run.

Each KFP component is a thin shell around one function of components.pipeline.steps, executed in the project
image (infra/docker/Dockerfile), so a team on Kubeflow runs the identical code. Components hand each other a JSON
string of plain values holding the artifact versions they produced (exactly what the Airflow tasks put in XCom);
the artifact store is the only state they share, so each can run in its own pod. The think-ahead fan-out comes
from the deployment's `reasoning.shards`; publication collects the shards. `kfp.local` runs it without a cluster
(tests/infra/test_infra_kfp.py).

Compile:  python infra/kfp/pipeline.py infra/kfp/sidrec_pipeline.yaml
"""

# No `from __future__ import annotations`: KFP reads the real parameter types.
import sys

from kfp import compiler, dsl

IMAGE = "sidrec:latest"
CONFIG = "/opt/sidrec/configs/k8s/deployment.yaml"

# pipeline step name -> function in components.pipeline.steps
STEPS = {
    "ingest": "ingest",
    "sid-refresh": "sid_refresh",
    "features-materialize": "features_materialize",
    "build-examples": "build_examples",
    "train": "train",
    "evaluate-and-gate": "evaluate_and_gate",
    "export": "export",
    "train-reasoner": "train_reasoner",
    "gate-reasoner": "gate_reasoner",
    "plan-shards": "active_users",
    "think-ahead": "think_ahead",
    "publish-prefixes": "publish_prefixes",
    "clear-prefixes": "clear_prefixes",
}


@dsl.component(base_image=IMAGE)
def ingest(config_path: str) -> str:
    """Ingest + Great Expectations validation -> a curated version (+ quarantine)."""
    import json

    from components.pipeline import steps

    return json.dumps(steps.ingest(config_path), default=str)


@dsl.component(base_image=IMAGE)
def sid_refresh(config_path: str, curated: str) -> str:
    """SID refresh on the curated catalog; a new SID version when drift crosses the thresholds."""
    import json

    from components.pipeline import steps

    version = json.loads(curated)["curated_version"]
    result = steps.sid_refresh(config_path, curated_version=version)
    return json.dumps({**result, "curated_version": version}, default=str)


@dsl.component(base_image=IMAGE)
def features_materialize(config_path: str, sids: str) -> str:
    """Feast sources of these versions, apply, materialize into the online store."""
    import json

    from components.pipeline import steps

    v = json.loads(sids)
    return json.dumps(steps.features_materialize(config_path, None, v["curated_version"], v["sid_version"]))


@dsl.component(base_image=IMAGE)
def build_examples(config_path: str, sids: str) -> str:
    """Point-in-time examples (train / select / gate rows), published as a version."""
    import json

    from components.pipeline import steps

    v = json.loads(sids)
    result = steps.build_examples(config_path, None, v["curated_version"], v["sid_version"])
    return json.dumps({**result, "curated_version": v["curated_version"], "sid_version": v["sid_version"]})


@dsl.component(base_image=IMAGE)
def train(config_path: str, examples: str) -> str:
    """Fine-tune on the examples; stage the candidate version."""
    import json

    from components.pipeline import steps

    v = json.loads(examples)
    result = steps.train(config_path, None, v["examples_version"], v["sid_version"], v["curated_version"])
    return json.dumps({**v, **result}, default=str)


@dsl.component(base_image=IMAGE)
def evaluate_and_gate(config_path: str, trained: str) -> str:
    """The gate against production and the baselines; a candidate that passes is promoted here."""
    import json

    from components.pipeline import steps

    v = json.loads(trained)
    gate = steps.evaluate_and_gate(config_path, None, v["candidate_version"], v["examples_version"])
    keep = {k: v[k] for k in ("sid_version", "curated_version", "examples_version")}
    return json.dumps({**keep, **{k: x for k, x in gate.items() if k != "scores"}}, default=str)


@dsl.component(base_image=IMAGE)
def promoted(gate: str, promote_anyway: bool) -> bool:
    """Whether to export: the gate promoted the candidate, or ops override a refusal (promote_anyway), as the
    Airflow DAG's `promoted` does.

    A component with a single output, not a NamedTuple field of evaluate_and_gate, because kfp.local 2.17.3
    resolves a dsl.If condition only on a task's `Output`: on a named output it logs "Could not resolve parent
    input" and skips the whole branch while the run still reports SUCCESS."""
    import json

    return bool(json.loads(gate)["promoted"]) or promote_anyway


@dsl.component(base_image=IMAGE)
def export(config_path: str, gate: str) -> str:
    """Export the promoted version to the Triton model repository (checked before it is served); a candidate the
    gate refused is promoted first, logged as the ops override (only reached through promote_anyway)."""
    import json

    from components.pipeline import steps

    v = json.loads(gate)
    model_version = v.get("model_version")
    if not model_version:
        model_version = steps.promote(config_path, None, v["candidate_version"], "kfp promote_anyway")["model_version"]
    return json.dumps({**v, **steps.export(config_path, None, model_version), "model_version": model_version})


@dsl.component(base_image=IMAGE)
def train_reasoner(config_path: str, exported: str) -> str:
    """Grounded rationales for training rows, then reasoning fine-tuning from the promoted model (a version)."""
    import json

    from components.pipeline import steps

    v = json.loads(exported)
    result = steps.train_reasoner(config_path, None, v["model_version"], v["examples_version"], v["curated_version"])
    keep = {k: v[k] for k in ("model_version", "sid_version", "curated_version", "examples_version")}
    return json.dumps({**keep, **result}, default=str)


@dsl.component(base_image=IMAGE)
def gate_reasoner(config_path: str, trained: str) -> str:
    """Think-ahead + runtime completion against full decoding on the gate rows (reasoning.max_hr10_loss)."""
    import json

    from components.pipeline import steps

    v = json.loads(trained)
    result = steps.gate_reasoner(config_path, None, v["reasoning_version"], v["model_version"], v["examples_version"])
    keep = {k: v[k] for k in ("model_version", "sid_version", "curated_version", "examples_version")}
    return json.dumps({**keep, **result}, default=str)


@dsl.component(base_image=IMAGE)
def reasoner_passed(gate: str) -> bool:
    """A single output for dsl.If (kfp.local resolves conditions only on a task's `Output`)."""
    import json

    return bool(json.loads(gate)["passed"])


@dsl.component(base_image=IMAGE)
def plan_shards(config_path: str, gate: str) -> list:
    """The shards to fan out over (reasoning.shards), each with the versions it works on."""
    import json

    from components.config import load_config
    from components.pipeline import steps

    v = json.loads(gate)
    steps.active_users(config_path, None, v["curated_version"])
    keep = {k: v[k] for k in ("reasoning_version", "sid_version", "curated_version", "examples_version")}
    shards = load_config(config_path).reasoning.shards
    return [json.dumps({**keep, "shard": s, "n_shards": shards}) for s in range(shards)]


@dsl.component(base_image=IMAGE)
def think_ahead(config_path: str, job: str) -> str:
    """Offline OneRec-Think reasoning for one shard of the active users; the shard is published as a version."""
    import json

    from components.pipeline import steps

    v = json.loads(job)
    result = steps.think_ahead(
        config_path,
        None,
        v["reasoning_version"],
        v["curated_version"],
        int(v["shard"]),
        int(v["n_shards"]),
        v["examples_version"],
    )
    return json.dumps({**v, **result})


@dsl.component(base_image=IMAGE)
def publish_prefixes(config_path: str, shards: list) -> str:
    """Publish the collected shards as one prefixes version and load them into the online store."""
    import json

    from components.pipeline import steps

    done = sorted((json.loads(s) for s in shards), key=lambda r: r["shard"])
    first = done[0]
    result = steps.publish_prefixes(
        config_path,
        None,
        [r["shard_version"] for r in done],
        first["reasoning_version"],
        first["curated_version"],
        first["sid_version"],
    )
    return json.dumps(result)


@dsl.component(base_image=IMAGE)
def clear_prefixes(config_path: str, gate: str) -> str:
    """The reasoning gate refused: withdraw stored prefixes, serving decodes fully; the reason is logged."""
    import json

    from components.pipeline import steps

    v = json.loads(gate)
    return json.dumps(steps.clear_prefixes(config_path, None, v["curated_version"], v["sid_version"], v["reason"]))


@dsl.pipeline(
    name="sidrec",
    description="sidrec: features -> SIDs -> training -> gate -> export -> reasoning model -> its gate -> think-ahead",
)
def sidrec_pipeline(config_path: str = CONFIG, promote_anyway: bool = False) -> None:
    curated = ingest(config_path=config_path)
    sids = sid_refresh(config_path=config_path, curated=curated.output)
    materialized = features_materialize(config_path=config_path, sids=sids.output)
    examples = build_examples(config_path=config_path, sids=sids.output)
    trained = train(config_path=config_path, examples=examples.output)
    trained.after(materialized)
    gated = evaluate_and_gate(config_path=config_path, trained=trained.output)
    decision = promoted(gate=gated.output, promote_anyway=promote_anyway)
    with dsl.If(decision.output == True):  # noqa: E712 - a KFP condition, not a Python comparison
        exported = export(config_path=config_path, gate=gated.output)
        reasoner = train_reasoner(config_path=config_path, exported=exported.output)
        reasoner_gate = gate_reasoner(config_path=config_path, trained=reasoner.output)
        passed = reasoner_passed(gate=reasoner_gate.output)
        with dsl.If(passed.output == True):  # noqa: E712
            plan = plan_shards(config_path=config_path, gate=reasoner_gate.output)
            with dsl.ParallelFor(items=plan.output, parallelism=4) as job:
                shard = think_ahead(config_path=config_path, job=job)
            publish_prefixes(config_path=config_path, shards=dsl.Collected(shard.output))
        with dsl.Else():
            clear_prefixes(config_path=config_path, gate=reasoner_gate.output)


def compile_pipeline(path: str) -> str:
    compiler.Compiler().compile(sidrec_pipeline, package_path=path)
    return path


if __name__ == "__main__":
    print(compile_pipeline(sys.argv[1] if len(sys.argv) > 1 else "infra/kfp/sidrec_pipeline.yaml"))
