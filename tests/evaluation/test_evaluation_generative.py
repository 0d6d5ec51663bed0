"""The generative scorer on a briefly trained tiny model: every generated SID is a real item, 0 invalid."""

from __future__ import annotations

import pytest

from components.config import SidConfig, load_config
from components.data.splits import examples_from_events
from components.data.synthetic import generate_synthetic
from components.evaluation.evaluate import score_recommender
from components.runtime.beam import constrained_beam_search
from components.runtime.recommender import Recommender, encode_prompts
from components.sids.build import build_sids
from components.training.train import train_model


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
            "eval": {"max_examples": 20, "batch_size": 16},
            "serving": {"beam_size": 10},
        },
    )
    splits = examples_from_events(events, 5)
    path = train_model(cfg, sidmap, catalog, splits["train"], splits["valid"], tmp_path_factory.mktemp("m"))
    return Recommender.from_pretrained(path, beam_size=10), splits["test"].head(20)


def test_generated_codes_are_real_items(trained):
    recommender, test = trained
    trie, sidmap = recommender.trie, recommender.sidmap
    ids, mask = encode_prompts(recommender.tokenizer, recommender.prompts(list(test["history"])))
    result = constrained_beam_search(recommender.models[0], ids, mask, trie, beam_size=12, top_k=10)
    assert result.codes.shape == (len(test), 10, sidmap.n_levels)
    for row_codes, row_items in zip(result.codes.tolist(), result.items.tolist(), strict=True):
        for codes, index in zip(row_codes, row_items, strict=True):
            # 60 items >> 10: every slot is filled, and the code tuple names exactly the item it claims
            assert index >= 0 and sidmap.item_of(tuple(codes)) == trie.item_ids[index]


def test_scorer_reports_zero_invalid_and_full_lists(trained):
    recommender, test = trained
    m = score_recommender(recommender, test, [3, 5, 10])
    assert m["invalid_rate"] == 0.0 and m["duplicate_rate"] == 0.0 and m["short_lists"] == 0
    assert m["rows"] == len(test) and 0.0 <= m["NDCG@10"] <= m["HR@10"] <= 1.0


def test_scorer_compares_hits_with_a_baseline(trained):
    recommender, test = trained
    oracle = [[t] for t in test["target"]]  # a baseline that hits every row
    m = score_recommender(recommender, test, [3, 10], baseline=oracle)
    overlap = m["overlap@10"]
    assert overlap["both"] == round(m["HR@10"] * len(test)) and overlap["model_only"] == overlap["neither"] == 0
    assert overlap["both"] + overlap["baseline_only"] == len(test)
    assert 0 <= overlap["baseline_only_first_code_missed"] <= overlap["baseline_only"]
