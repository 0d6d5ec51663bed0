"""The generative scorer on a briefly trained tiny model: every generated SID is a real item, 0 invalid."""

from __future__ import annotations

import pytest

from components.evaluation.evaluate import score_recommender
from components.runtime.beam import constrained_beam_search
from components.runtime.recommender import Recommender, encode_prompts
from components.training.train import train_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_world):
    cfg, catalog, _, sidmap, splits = synthetic_world(
        tmp_path_factory.mktemp("s"),
        n_items=60,
        n_users=80,
        seed=3,
        train={"max_steps": 8},
        eval={"max_examples": 20, "batch_size": 16},
        serving={"beam_size": 10},
    )
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
