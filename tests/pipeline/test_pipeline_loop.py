"""The production loop through its step functions: a catalog refresh served without retraining, retired items,
warm starts, preference alignment in the training step, a gate that always compares with production (also after a
SID rebuild), the churn guard, and the reasoning model gated before its prefixes are published."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from pipeline_deployment import change_catalog, write_tiny_deployment

from components.pipeline import steps
from components.runtime.language import encode_prefix
from components.runtime.recommender import Recommender
from components.serving.export import served_version
from components.store.artifacts import ArtifactStore

pytestmark = pytest.mark.slow


def _set(config: Path, **sections) -> None:
    data = yaml.safe_load(config.read_text())
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    config.write_text(yaml.safe_dump(data))


def _served(root: Path) -> Recommender:
    repo = root / "triton_repo" / "sidrec"
    return Recommender.from_pretrained(repo / str(served_version((repo / "config.pbtxt").read_text())))


@pytest.fixture(scope="module")
def day0(tmp_path_factory):
    """A deployment with a first promoted and exported model."""
    root = tmp_path_factory.mktemp("loop")
    config = str(write_tiny_deployment(root, seed=13, max_steps=40, eval_examples=40))
    _set(Path(config), serving={"ranker": False})
    curated = steps.ingest(config)["curated_version"]
    sids = steps.sid_refresh(config, curated_version=curated)
    assert sids["action"] == "build"
    examples = steps.build_examples(config, None, curated, sids["sid_version"])["examples_version"]
    trained = steps.train(config, None, examples, sids["sid_version"], curated)
    assert not trained["warm_start"]  # no production model yet: from the base LLM
    gate = steps.evaluate_and_gate(config, None, trained["candidate_version"], examples)
    assert gate["production"] is None  # nothing to compare with yet
    model = (
        gate.get("model_version") or steps.promote(config, None, trained["candidate_version"], "test")["model_version"]
    )
    steps.export(config, None, model)
    return root, config, {"curated": curated, "sid": sids["sid_version"], "examples": examples, "model": model}


def test_a_small_catalog_change_is_served_at_once_without_retraining(day0):
    root, config, v = day0
    store = ArtifactStore(str(root / "artifacts"))
    changed = change_catalog(root, new_items=2, retire=1, seed=1)
    curated = steps.ingest(config)["curated_version"]
    events = pd.read_parquet(store.fetch("curated", curated) / "events.parquet")
    assert set(changed["retired"]) <= set(events.item_id)  # a retired item's events stay: evidence of taste
    refreshed = steps.sid_refresh(config, curated_version=curated)
    assert refreshed["action"] == "refresh" and refreshed["new_sid_version"]
    served = steps.serve_refresh(config, None, refreshed["sid_version"])
    assert served["served"] and served["export"]["sid_version"] == refreshed["sid_version"]
    assert store.latest_version("model") == served["model_version"] != v["model"]
    recommender = _served(root)
    assert recommender.sid_version == refreshed["sid_version"]
    sidmap = recommender.sidmap
    new = changed["new"][0]
    assert new in recommender.trie.item_ids and changed["retired"][0] not in recommender.trie.item_ids
    prefix = [sidmap.codes_of(new)[:2]]
    got = [i for i, _ in recommender.recommend([[changed["retired"][0]]], 10, [prefix])[0]]
    assert new in got and changed["retired"][0] not in got  # recommendable at once; the retired one never
    assert (
        changed["retired"][0] in sidmap
        and recommender.prompts([[changed["retired"][0]]])[0] != recommender.prompts([[]])[0]
    )  # but it still speaks in prompts
    # the next training run continues from production (same lineage), on the current examples
    examples = steps.build_examples(config, None, curated, refreshed["sid_version"])["examples_version"]
    trained = steps.train(config, None, examples, refreshed["sid_version"], curated)
    assert trained["warm_start"]
    info = json.loads((store.fetch("model_candidate", trained["candidate_version"]) / "sidrec_model.json").read_text())
    assert info["warm_start_from"] and info["sid_version"] == refreshed["sid_version"]


def test_the_gate_refuses_a_worse_candidate_and_promotes_a_better_one_against_production(day0):
    root, config, v = day0
    store = ArtifactStore(str(root / "artifacts"))
    curated = store.latest_version("curated")
    sid = store.latest_version("sid_map")
    examples = steps.build_examples(config, None, curated, sid)["examples_version"]
    # the worse candidate also goes through preference alignment (align.enabled): aligned or refused by its guard
    # on the select rows, the step records which, and the gate still compares the result with production
    _set(Path(config), train={"warm_start": False, "max_steps": 1}, align={"enabled": True, "rows": 16, "negatives": 3})
    worse = steps.train(config, None, examples, sid, curated)
    info = json.loads((store.fetch("model_candidate", worse["candidate_version"]) / "sidrec_model.json").read_text())
    assert worse["alignment"] == info["alignment"]["status"] and info["alignment"]["kept"] in ("aligned", "supervised")
    assert info["alignment"]["rows"] > 0
    _set(Path(config), align={"enabled": False})
    gate = steps.evaluate_and_gate(config, None, worse["candidate_version"], examples)
    assert gate["production"] is not None and not gate["promoted"]
    assert any("production" in r or "baseline" in r for r in gate["reasons"])
    assert set(gate["scores"]) == {"candidate", "production", "most-popular", "last-item Markov"}
    production = store.latest_version("model")
    _set(Path(config), train={"max_steps": 400})
    better = steps.train(config, None, examples, sid, curated)
    gate = steps.evaluate_and_gate(config, None, better["candidate_version"], examples)
    if gate["promoted"]:
        assert (
            gate["candidate"] >= gate["production"] - gate["tolerance"] and store.latest_version("model") != production
        )
    else:  # a tiny model may still not beat Markov: then that is the reason, never production
        assert all("baseline" in r for r in gate["reasons"]), gate["reasons"]


def test_after_a_rebuild_production_is_still_scored_and_the_churn_guard_holds(day0):
    root, config, _ = day0
    store = ArtifactStore(str(root / "artifacts"))
    production = store.latest_version("model")
    change_catalog(root, new_line=12, seed=2)  # a new product line: drift
    curated = steps.ingest(config)["curated_version"]
    _set(Path(config), sids={"max_reassigned_share": 0.0})
    refused = steps.sid_refresh(config, curated_version=curated)
    assert refused["action"] == "refused" and not refused["new_sid_version"] and "reassign" in refused["reason"]
    _set(Path(config), sids={"max_reassigned_share": 1.0})
    rebuilt = steps.sid_refresh(config, curated_version=curated)
    assert rebuilt["action"] == "rebuild" and rebuilt["new_sid_version"]
    mapping = pd.read_parquet(store.fetch("sid_map", rebuilt["sid_version"]) / "sid_mapping.parquet")
    assert set(mapping.columns) == {"item_id", "old_codes", "new_codes"}
    assert steps.serve_refresh(config, None, rebuilt["sid_version"])["served"] is False  # another lineage: retrain
    examples = steps.build_examples(config, None, curated, rebuilt["sid_version"])["examples_version"]
    _set(Path(config), train={"warm_start": True, "max_steps": 40})
    trained = steps.train(config, None, examples, rebuilt["sid_version"], curated)
    assert not trained["warm_start"]  # a new lineage trains from the base LLM
    gate = steps.evaluate_and_gate(config, None, trained["candidate_version"], examples)
    assert gate["production_version"] == production and gate["production"] is not None
    assert gate["production_sid_version"] != gate["candidate_sid_version"]  # compared in item space


def test_the_reasoning_model_is_gated_before_its_prefixes_are_served(day0):
    root, config, v = day0
    store = ArtifactStore(str(root / "artifacts"))
    model = store.latest_version("model")
    curated = store.latest_version("curated")
    sid = json.loads((store.fetch("model", model) / "sidrec_model.json").read_text())["sid_version"]
    examples = steps.build_examples(config, None, curated, sid)["examples_version"]
    trained = steps.train_reasoner(config, None, model, examples, curated)
    assert trained["coverage"]["coverage"] > 0.5 and trained["coverage"]["samples"]
    assert steps.train_reasoner(config, None, model, examples, curated)["reused"]  # once per model version
    _set(Path(config), reasoning={"max_hr10_loss": 1.0})
    gate = steps.gate_reasoner(config, None, trained["reasoning_version"], model, examples)
    assert gate["passed"] and gate["think_ahead"]["users_with_prefixes"] > 0
    assert {"HR@10", "NDCG@10", "online_ms_per_request"} <= set(gate["full_decoding"])
    shard = steps.think_ahead(config, None, trained["reasoning_version"], curated, 0, 1, examples)
    again = steps.think_ahead(config, None, trained["reasoning_version"], curated, 0, 1, examples)  # a retried task
    assert again["reused"] and again["shard_version"] == shard["shard_version"] and not shard["reused"]
    published = steps.publish_prefixes(
        config, None, [shard["shard_version"]], trained["reasoning_version"], curated, sid
    )
    frame = pd.read_parquet(store.fetch("prefixes", published["prefixes_version"]) / "prefixes-000-of-001.parquet")
    assert (frame.sid_version == sid).all() and frame.rationale.str.len().min() > 0
    assert frame.rationale.str.contains("Because|no concrete reason").all()  # grounded explanations
    sidmap = _served(root).sidmap
    assert set(frame.prefixes.iloc[0]) <= {encode_prefix(c[:2]) for c in sidmap.codes.tolist()}
    _set(Path(config), reasoning={"max_hr10_loss": -1.0})  # an impossible bar: refused, prefixes withdrawn
    refused = steps.gate_reasoner(config, None, trained["reasoning_version"], model, examples)
    assert not refused["passed"] and "loss" in refused["reason"]
    cleared = steps.clear_prefixes(config, None, curated, sid, refused["reason"])
    assert cleared["users_with_prefixes"] == 0
