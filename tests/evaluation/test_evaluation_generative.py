"""The generative scorer on a briefly trained tiny model: every generated SID is a real item, 0 invalid."""

from __future__ import annotations

import pytest

from components.config import SidConfig, load_config
from components.data.splits import examples_from_events
from components.data.synthetic import generate_synthetic
from components.decoding.beam import constrained_beam_search
from components.decoding.recommend import encode_prompts
from components.decoding.trie import SidTrie
from components.evaluation.evaluate import decode_and_score
from components.model.backbone import load_trained
from components.model.prompts import format_history_prompt
from components.model.train import train_model
from components.sids.build import build_sids


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    catalog, events = generate_synthetic(n_items=60, n_users=80, seed=3)
    sidmap = build_sids(
        catalog,
        events,
        SidConfig(codebook_size=8, content_encoder="hashing", collab_dim=8),
        tmp_path_factory.mktemp("s"),
    )
    cfg = load_config(
        None,
        overrides={
            "model": {"backbone": "tiny", "tiny_hidden_size": 32, "tiny_layers": 1, "tiny_heads": 2},
            "train": {"epochs": 1, "batch_size": 16, "lr": 0.005, "max_steps": 8, "torch_threads": 1},
            "eval": {"beam_size": 10, "max_examples": 20, "batch_size": 16},
        },
    )
    splits = examples_from_events(events, 5)
    path = train_model(cfg, sidmap, catalog, splits["train"], splits["valid"], tmp_path_factory.mktemp("m"))
    model, tokenizer, loaded = load_trained(path)
    return model, tokenizer, loaded, splits["test"].head(20)


def test_generated_codes_are_real_items(trained):
    model, tokenizer, sidmap, test = trained
    trie = SidTrie.from_sidmap(sidmap, tokenizer)
    prompts = [format_history_prompt(list(h), sidmap) for h in test["history"]]
    ids, mask = encode_prompts(tokenizer, prompts)
    result = constrained_beam_search(model, ids, mask, trie, beam_size=12, top_k=10)
    assert result.codes.shape == (len(test), 10, sidmap.n_levels)
    for row_codes, row_items in zip(result.codes.tolist(), result.items.tolist(), strict=True):
        for codes, index in zip(row_codes, row_items, strict=True):
            # 60 items >> 10: every slot is filled, and the code tuple names exactly the item it claims
            assert index >= 0 and sidmap.item_of(tuple(codes)) == trie.item_ids[index]


def test_scorer_reports_zero_invalid_and_full_lists(trained):
    model, tokenizer, sidmap, test = trained
    trie = SidTrie.from_sidmap(sidmap, tokenizer)
    m, _ = decode_and_score(model, tokenizer, trie, sidmap, test, [3, 5, 10], beam_size=10)
    assert m["invalid_rate"] == 0.0 and m["duplicate_rate"] == 0.0 and m["short_lists"] == 0
    assert m["rows"] == len(test) and 0.0 <= m["NDCG@10"] <= m["HR@10"] <= 1.0


def test_scorer_compares_hits_with_a_baseline(trained):
    model, tokenizer, sidmap, test = trained
    trie = SidTrie.from_sidmap(sidmap, tokenizer)
    oracle = [[t] for t in test["target"]]  # a baseline that hits every row
    m, _ = decode_and_score(model, tokenizer, trie, sidmap, test, [3, 10], beam_size=10, baseline=oracle)
    overlap = m["overlap@10"]
    assert overlap["both"] == round(m["HR@10"] * len(test)) and overlap["model_only"] == overlap["neither"] == 0
    assert overlap["both"] + overlap["baseline_only"] == len(test)
    assert 0 <= overlap["baseline_only_first_code_missed"] <= overlap["baseline_only"]


def test_benchmark_generative_scores_the_model_the_ensemble_the_blend_and_the_ranker_then_resumes(
    tmp_path, monkeypatch
):
    import components.model.train as train_module
    from components.evaluation.benchmark import benchmark_generative

    catalog, events = generate_synthetic(n_items=60, n_users=80, seed=3)
    events_path = tmp_path / "events.csv"
    events.to_csv(events_path, index=False)
    cfg = load_config(
        None,
        overrides={
            "data": {"events_uri": str(events_path)},
            "sids": {"codebook_size": 8, "content_encoder": "hashing", "collab_dim": 8},
            "model": {"backbone": "tiny", "tiny_hidden_size": 32, "tiny_layers": 1, "tiny_heads": 2},
            "train": {"epochs": 1, "batch_size": 16, "lr": 0.005, "max_steps": 4, "torch_threads": 1},
            "eval": {"beam_size": 10, "max_examples": 20, "batch_size": 16, "ensemble_size": 2, "ensemble_jobs": 2},
        },
    )
    cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"blend_transitions": True, "rerank": True})})
    splits = {name: frame.head(30) for name, frame in examples_from_events(events, 5).items()}
    sidmap = build_sids(catalog, events, cfg.sids, tmp_path / "sid_map")
    out = benchmark_generative(cfg, sidmap, catalog, splits, tmp_path / "run")
    for split in ("valid", "test"):
        for row in (split, f"{split}_ensemble", f"{split}_blend", f"{split}_rerank"):
            assert 0.0 <= out[row]["HR@10"] <= 1.0 and out[row]["invalid_rate"] == 0.0
        assert out[f"{split}_ensemble"]["models"] == 2 and out[split]["models"] == 1
        assert out[f"{split}_rerank"]["train_seconds"] >= out[f"{split}_ensemble"]["train_seconds"]
    assert out["blend_weight"] in [float(w) for w in out["blend_weights_on_valid"]]
    assert "test_candidates" not in out
    for name in ("model_train", "model_train_seed1", "model_final", "model_final_seed1"):
        assert (tmp_path / "run" / name / "sidrec_model.json").exists()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished model was trained again")

    monkeypatch.setattr(train_module, "train_model", no_training)
    again = benchmark_generative(cfg, sidmap, catalog, splits, tmp_path / "run")
    assert again["test_ensemble"]["HR@10"] == out["test_ensemble"]["HR@10"]
    assert again["valid_blend"] == out["valid_blend"]
