"""The sidrec pipeline as a Kubeflow Pipelines v2 definition: the same steps the Airflow DAGs run.

Each KFP component is a thin shell around one function of components.orchestration.steps, executed in the
project image (infra/docker/Dockerfile), so a team on Kubeflow runs the identical code. Steps exchange
their plain-dict results as JSON strings, exactly what the Airflow tasks put in XCom.

Compile:  python infra/kfp/pipeline.py infra/kfp/sidrec_pipeline.yaml
"""

# No `from __future__ import annotations`: KFP reads the real parameter types.
import sys

from kfp import compiler, dsl

IMAGE = "sidrec:latest"
CONFIG = "/opt/sidrec/configs/k8s/deployment.yaml"

# pipeline step name -> function in components.orchestration.steps
STEPS = {
    "ingest": "ingest",
    "sid-refresh": "sid_refresh",
    "features-materialize": "features_materialize",
    "train": "train",
    "evaluate-and-gate": "evaluate_and_gate",
    "export": "export",
    "think-ahead": "think_ahead",
}


@dsl.component(base_image=IMAGE)
def ingest(config_path: str) -> str:
    """Ingest + Great Expectations validation -> curated parquet (+ quarantine)."""
    import json

    from components.orchestration import steps

    return json.dumps(steps.ingest(config_path), default=str)


@dsl.component(base_image=IMAGE)
def sid_refresh(config_path: str, upstream: str) -> str:
    """SID refresh on the new catalog; rebuilds a new SID version when drift crosses the thresholds."""
    import json

    from components.orchestration import steps

    return json.dumps(steps.sid_refresh(config_path), default=str)


@dsl.component(base_image=IMAGE)
def features_materialize(config_path: str, upstream: str) -> str:
    """Feast apply + materialize into the online store."""
    import json

    from components.orchestration import steps

    return json.dumps(steps.features_materialize(config_path), default=str)


@dsl.component(base_image=IMAGE)
def train(config_path: str, upstream: str) -> str:
    """Point-in-time examples from Feast, then alignment + next-item fine-tuning."""
    import json

    from components.orchestration import steps

    return json.dumps(steps.train(config_path), default=str)


@dsl.component(base_image=IMAGE)
def evaluate_and_gate(config_path: str, upstream: str) -> str:
    """Score against the production model and the baselines; promote only if better."""
    import json

    from components.orchestration import steps

    trained = json.loads(upstream)
    return json.dumps(steps.evaluate_and_gate(config_path, model_uri=trained.get("model_uri")), default=str)


@dsl.component(base_image=IMAGE)
def export(config_path: str, upstream: str) -> str:
    """Export the promoted model to the Triton model repository."""
    import json

    from components.orchestration import steps

    return json.dumps(steps.export(config_path), default=str)


@dsl.component(base_image=IMAGE)
def think_ahead(config_path: str, shard: int, n_shards: int, upstream: str) -> str:
    """Offline OneRec-Think reasoning: prefix candidates for one shard of the active users."""
    import json

    from components.orchestration import steps

    return json.dumps(steps.think_ahead(config_path, shard=shard, n_shards=n_shards), default=str)


@dsl.pipeline(name="sidrec", description="sidrec: features -> SIDs -> training -> gate -> export -> think-ahead")
def sidrec_pipeline(config_path: str = CONFIG, n_shards: int = 4) -> None:
    ingested = ingest(config_path=config_path)
    sids = sid_refresh(config_path=config_path, upstream=ingested.output)
    feats = features_materialize(config_path=config_path, upstream=sids.output)
    trained = train(config_path=config_path, upstream=feats.output)
    gated = evaluate_and_gate(config_path=config_path, upstream=trained.output)
    exported = export(config_path=config_path, upstream=gated.output)
    with dsl.ParallelFor(items=[0, 1, 2, 3], parallelism=4) as shard:
        think_ahead(config_path=config_path, shard=shard, n_shards=n_shards, upstream=exported.output)


def compile_pipeline(path: str) -> str:
    compiler.Compiler().compile(sidrec_pipeline, package_path=path)
    return path


if __name__ == "__main__":
    print(compile_pipeline(sys.argv[1] if len(sys.argv) > 1 else "infra/kfp/sidrec_pipeline.yaml"))
