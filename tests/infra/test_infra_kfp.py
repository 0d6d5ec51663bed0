"""The KFP v2 pipeline compiles, names every step, calls real orchestration step functions, and runs: kfp.local
executes it end to end on a tiny synthetic deployment, every task in its own subprocess (the stand-in for a pod)
with the artifact store as the only thing the tasks share."""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pipeline_module():
    return _load("sidrec_kfp_pipeline", ROOT / "infra" / "kfp" / "pipeline.py")


def test_pipeline_compiles_and_names_every_step(tmp_path):
    module = _pipeline_module()
    spec = yaml.safe_load(Path(module.compile_pipeline(str(tmp_path / "p.yaml"))).read_text())
    components = set(spec["components"])
    for step in module.STEPS:
        assert f"comp-{step}" in components, step
    tasks = spec["root"]["dag"]["tasks"]
    assert sorted(tasks["train"]["dependentTasks"]) == ["build-examples", "features-materialize"]
    condition = tasks["condition-1"]["triggerPolicy"]["condition"]
    assert condition == "inputs.parameter_values['pipelinechannel--promoted-Output'] == true"
    components = spec["components"]
    promoted = components["comp-condition-1"]["dag"]["tasks"]  # only a promoted model goes on
    assert set(promoted) == {"export", "train-reasoner", "gate-reasoner", "reasoner-passed", "condition-branches-2"}
    assert promoted["train-reasoner"]["dependentTasks"] == ["export"]
    branches = components["comp-condition-branches-2"]["dag"]["tasks"]
    passed, refused = (branches[c]["triggerPolicy"]["condition"] for c in ("condition-4", "condition-5"))
    assert passed == "inputs.parameter_values['pipelinechannel--reasoner-passed-Output'] == true"
    assert refused == f"!({passed})"  # the reasoning gate refused: prefixes withdrawn, nothing fans out
    fan_out = components["comp-condition-4"]["dag"]["tasks"]
    assert set(fan_out) == {"plan-shards", "for-loop-3", "publish-prefixes"}
    assert fan_out["for-loop-3"]["parameterIterator"]["items"]["inputParameter"].endswith("plan-shards-Output")
    assert "for-loop-3" in fan_out["publish-prefixes"]["dependentTasks"]  # collects every shard
    assert set(components["comp-condition-5"]["dag"]["tasks"]) == {"clear-prefixes"}


def test_committed_pipeline_yaml_is_current(tmp_path):
    module = _pipeline_module()
    fresh = yaml.safe_load(Path(module.compile_pipeline(str(tmp_path / "p.yaml"))).read_text())
    committed = yaml.safe_load((ROOT / "infra" / "kfp" / "sidrec_pipeline.yaml").read_text())
    for doc in (fresh, committed):
        doc.get("pipelineInfo", {}).pop("sdkVersion", None)
        doc.pop("sdkVersion", None)
    assert fresh == committed, "run: python infra/kfp/pipeline.py infra/kfp/sidrec_pipeline.yaml"


def test_every_step_is_an_orchestration_function():
    from components.pipeline import steps

    for step, func in _pipeline_module().STEPS.items():
        assert callable(getattr(steps, func, None)), f"{step}: components.pipeline.steps.{func} missing"
        assert "config_path" in inspect.signature(getattr(steps, func)).parameters


def test_export_follows_the_gate_unless_ops_override():
    decide = _pipeline_module().promoted.python_func
    assert decide(gate=json.dumps({"promoted": True}), promote_anyway=False) is True
    assert decide(gate=json.dumps({"promoted": False}), promote_anyway=False) is False
    assert decide(gate=json.dumps({"promoted": False}), promote_anyway=True) is True


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:You may be attemping to run a task:RuntimeWarning")  # the image is ours, locally
def test_pipeline_runs_with_kfp_local_through_prefix_publication(tmp_path, monkeypatch):
    """kfp.local's SubprocessRunner runs every component in a fresh Python process of this venv: ingest ->
    sid-refresh -> features / examples -> train -> gate -> promoted? -> export -> train-reasoner -> gate-reasoner
    -> passed? -> plan-shards -> think-ahead
    (ParallelFor over reasoning.shards = 2) -> publish-prefixes (dsl.Collected). promote_anyway=True, so the
    30-step candidate reaches export whatever the gate says."""
    from kfp import local

    from components.serving.export import served_version
    from components.store.artifacts import ArtifactStore

    deployment = _load("sidrec_pipeline_deployment", ROOT / "tests" / "pipeline" / "pipeline_deployment.py")
    deploy = deployment.write_tiny_deployment(tmp_path, seed=9, max_steps=30, eval_examples=20)
    config = yaml.safe_load(deploy.read_text())
    config["serving"]["ranker"] = False  # learning the ranker costs ~60 s here; tests/pipeline covers it
    deploy.write_text(yaml.safe_dump(config))
    assert config["reasoning"]["shards"] == 2
    # the components import this checkout's code (the venv's editable install may point at another one)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp_root"))
    started = time.perf_counter()
    _pipeline_module().sidrec_pipeline(config_path=str(deploy), promote_anyway=True)
    print(f"kfp.local run: {time.perf_counter() - started:.0f} s")

    store = ArtifactStore(str(tmp_path / "artifacts"))
    for name in deployment.ARTIFACTS:
        assert store.latest_version(name), f"{name}: never published (a skipped branch?)"
    model_version = store.latest_version("model")
    reasoning_version = store.latest_version("reasoning_model")
    shards = store.list_versions("prefix_shards")
    curated = store.latest_version("curated")
    assert sorted(shards) == [f"{reasoning_version}.{curated}.{s:03d}-of-002" for s in (0, 1)]
    files = sorted(store.fetch("prefixes").glob("prefixes-*.parquet"))
    assert [f.name for f in files] == ["prefixes-000-of-002.parquet", "prefixes-001-of-002.parquet"]
    prefixes = pd.concat([pd.read_parquet(f) for f in files])
    assert prefixes.user_id.nunique() == 60 and (prefixes.model_version == reasoning_version).all()
    version = tmp_path / "triton_repo" / "sidrec" / "1"
    assert (version / "model.py").exists()
    assert json.loads((version / "metadata.json").read_text())["model_version"] == model_version
    assert served_version((version.parent / "config.pbtxt").read_text()) == 1  # the config pins it
