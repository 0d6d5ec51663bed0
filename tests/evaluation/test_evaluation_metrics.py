"""Metrics on hand-made cases; baselines on synthetic sequences; generative scoring has 0 invalid SIDs."""

from __future__ import annotations

import math

import pytest

from components.data.splits import examples_from_events
from components.data.synthetic import generate_synthetic
from components.evaluation.baselines import LastItemMarkov, MostPopular, SASRec
from components.metrics import hit_overlap, hit_rate_ndcg


def test_hit_rate_and_ndcg_exact_values():
    ranked = [["a", "b", "c"], ["b", "a", "c"], ["c", "b", "x"]]
    m = hit_rate_ndcg(ranked, ["a", "a", "a"], [1, 2, 3])
    assert m["HR@1"] == pytest.approx(1 / 3) and m["HR@2"] == pytest.approx(2 / 3) and m["HR@3"] == pytest.approx(2 / 3)
    assert m["NDCG@2"] == pytest.approx((1 + 1 / math.log2(3)) / 3)
    with pytest.raises(ValueError):
        hit_rate_ndcg([["a"]], ["a", "b"], [1])


def test_sequence_baselines_beat_popularity_on_sequential_data():
    _, events = generate_synthetic(n_items=150, n_users=300, seed=4)
    splits = examples_from_events(events, 10)
    histories = [list(h) for h in splits["test"]["history"]]
    targets = splits["test"]["target"].tolist()
    pop = hit_rate_ndcg(MostPopular().fit(splits["train"]).recommend(histories, 10), targets, [10])
    markov = hit_rate_ndcg(LastItemMarkov().fit(splits["train"]).recommend(histories, 10), targets, [10])
    sasrec = SASRec(dim=32, epochs=15, batch_size=64).fit(splits["train"], splits["valid"])
    sas = hit_rate_ndcg(sasrec.recommend(histories, 10), targets, [10])
    assert markov["HR@10"] > pop["HR@10"] + 0.05
    assert sas["HR@10"] > pop["HR@10"]
    assert all(len(set(r)) == 10 for r in sasrec.recommend(histories[:20], 10))


def test_hit_overlap_counts_rows_and_coarse_misses():
    ranked = [["a", "b"], ["c", "d"], ["x", "y"], ["y", "z"]]
    baseline = [["a"], ["q"], ["t1"], ["t2"]]
    targets = ["a", "c", "t1", "t2"]
    codes = {"a": 0, "b": 0, "c": 1, "d": 1, "x": 2, "y": 3, "z": 3, "t1": 2, "t2": 9}
    out = hit_overlap(ranked, baseline, targets, 2, codes)
    assert out == {"both": 1, "model_only": 1, "baseline_only": 2, "neither": 0, "baseline_only_first_code_missed": 1}
    with pytest.raises(ValueError):
        hit_overlap(ranked, baseline[:2], targets, 2)
