"""Airflow on Kubernetes without local state: the four DAGs run with `airflow dags test` while every step call gets
a fresh scratch directory (SIDREC_SCRATCH_ROOT, what a KubernetesExecutor pod has), against a real SeaweedFS S3
(artifacts, the Feast registry, the Triton repository) and a real Redis (the online store). Nothing else is
shared between tasks, so a step that handed another a local path, or read local state it did not create, fails
here. The serving side is checked the same way: a reader with an empty run directory finds every user's
prefixes through the feature service, knowing only S3 and Redis.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pipeline_deployment import ARTIFACTS, write_tiny_deployment

ROOT = Path(__file__).resolve().parents[2]
DAGS = ["sidrec_features", "sidrec_sid_refresh", "sidrec_training", "sidrec_reasoning"]
BUCKET = "sidrec"


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """SeaweedFS (S3, real credentials) and Redis on free 127.0.0.1 ports, stopped by PID."""
    from components.local.redis import start_redis
    from components.local.s3 import start_seaweedfs

    root = tmp_path_factory.mktemp("servers")
    s3 = start_seaweedfs(root / "seaweedfs")
    try:
        redis = start_redis(root / "redis")
    except BaseException:
        s3.stop()
        raise
    try:
        s3.client().create_bucket(Bucket=BUCKET)
        yield s3, redis
    finally:
        redis.stop()
        s3.stop()


def _deployment(root: Path, s3, redis) -> Path:
    """The tiny deployment with every shared location on S3 or Redis (nothing under a shared local path)."""
    deploy = write_tiny_deployment(root, seed=9, max_steps=30, eval_examples=20)
    config = yaml.safe_load(deploy.read_text())
    config["store"] = {"root": f"s3://{BUCKET}/artifacts", "s3_endpoint_url": s3.endpoint_url}
    config["features"] = {
        "registry": f"s3://{BUCKET}/feast/registry.db",
        "online_store": "redis",
        "redis_connection": redis.connection,
    }
    config["serving"]["model_repository"] = f"s3://{BUCKET}/triton_repo"
    config["serving"]["ranker"] = False  # learning the ranker costs ~60 s here; test_pipeline_dags covers it
    deploy.write_text(yaml.safe_dump(config))
    return deploy


def _dags_test(dag_id: str, env: dict, logs: Path, conf: dict | None = None) -> None:
    cmd = [sys.executable, "-m", "airflow", "dags", "test", dag_id]
    if conf:
        cmd += ["--conf", json.dumps(conf)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    (logs / f"{dag_id}.log").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.integration
def test_dags_run_on_scratch_space_with_only_s3_and_redis_shared(tmp_path, servers, monkeypatch):
    from components.config import load_config
    from components.features.online import OnlineFeatures
    from components.serving.export import served_version
    from components.store.artifacts import ArtifactStore

    s3, redis = servers
    deploy = _deployment(tmp_path, s3, redis)
    scratch = tmp_path / "scratch"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "AIRFLOW_HOME": str(tmp_path / "airflow_home"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "SIDREC_CONFIG": str(deploy),
        "SIDREC_SCRATCH_ROOT": str(scratch),
        "AWS_ACCESS_KEY_ID": s3.access_key,
        "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    env.pop("AWS_ENDPOINT_URL", None)  # the endpoint comes from the deployment (store.s3_endpoint_url) only
    for cmd in (["db", "migrate"], ["dags", "reserialize"]):
        subprocess.run([sys.executable, "-m", "airflow", *cmd], check=True, capture_output=True, env=env)
    for dag_id in DAGS:
        _dags_test(dag_id, env, tmp_path, {"promote_anyway": True} if dag_id == "sidrec_training" else None)

    # every step ran in its own scratch directory, and nothing was written where the deployment's local
    # defaults would have put it
    tasks = list(scratch.glob("task-*"))
    # ingest, materialize, refresh, examples, train, gate, export, train/gate reasoner, 2 shards, publish
    assert len(tasks) >= 12, tasks
    for local in ("runs", "artifacts", "triton_repo"):
        assert not (tmp_path / local).exists(), local

    for key, value in {k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}.items():
        monkeypatch.setenv(key, value)
    store = ArtifactStore(f"s3://{BUCKET}/artifacts", endpoint_url=s3.endpoint_url)
    for name in ARTIFACTS:
        assert store.latest_version(name), f"{name}: not published to S3"
    model_version = store.latest_version("model")
    reasoning_version = store.latest_version("reasoning_model")  # fine-tuned from the promoted model
    curated = store.latest_version("curated")
    shards = [f"{reasoning_version}.{curated}.{s:03d}-of-002" for s in (0, 1)]
    assert sorted(store.list_versions("prefix_shards")) == shards
    s3_client = s3.client()
    s3_client.head_object(Bucket=BUCKET, Key="feast/registry.db")  # the registry every task and reader shares
    repository = ArtifactStore(f"s3://{BUCKET}/triton_repo", endpoint_url=s3.endpoint_url)
    assert served_version(repository.get_text("sidrec/config.pbtxt")) == 1
    assert json.loads(repository.get_text("sidrec/1/metadata.json"))["model_version"] == model_version

    # a serving-side reader with an empty run directory: the registry from S3, the values from Redis
    reader = load_config(deploy, {"run_root": str(tmp_path / "reader")})
    online = OnlineFeatures(reader)
    users = sorted({str(u) for u in _prefix_users(store)})
    assert len(users) == 60
    for user in users:
        features = online.user(user)
        assert features.history, user
        assert features.prefixes and features.prefix_model_version == reasoning_version, user


def _prefix_users(store) -> list[str]:
    import pandas as pd

    folder = store.fetch("prefixes")
    return pd.concat([pd.read_parquet(f) for f in sorted(folder.glob("prefixes-*.parquet"))]).user_id.tolist()
