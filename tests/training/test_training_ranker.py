"""The ranking stage: counts, pooled candidates and their features, the LightGBM ranker, its benchmark scoring."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from components.data.splits import examples_from_events
from components.data.synthetic import generate_synthetic
from components.evaluation.baselines import MostPopular
from components.metrics import hit_rate_ndcg
from components.runtime.candidates import ItemStats, candidate_features, candidate_rows, feature_names
from components.runtime.ranker import rerank
from components.training.ranker import cross_validated, train_ranker
from experiments.rerank import score_ranker


def _stats() -> ItemStats:
    histories = [["a"], ["a", "b"], ["x", "a"], ["a", "b", "c"], ["q", "r", "s", "t", "u", "v"]]
    targets = ["b", "c", "b", "d", "w"]
    return ItemStats.from_examples(histories, targets, window=3)


def test_item_stats_count_each_examples_last_transition_and_its_window():
    stats = _stats()
    assert stats.successors["a"] == {"b": 2}
    assert stats.successors["b"] == {"c": 1}
    assert stats.successors["c"] == {"d": 1}
    # items up to window - 1 places before the last one, each towards the target
    assert stats.nearby["a"] == {"c": 1, "d": 1} and stats.nearby["x"] == {"b": 1}
    assert "q" not in stats.nearby and stats.nearby["t"] == {"w": 1}
    assert stats.popularity["b"] == 2 and stats.popularity_rank("b") == 0
    assert stats.popularity_rank("never-bought") == len(stats.popularity)


def test_candidate_features_pool_the_beam_first_then_counts_without_duplicates():
    stats = _stats()
    beam = [("d", -0.5), ("b", -1.0)]
    items, x = candidate_features(["x", "a"], stats, beam)
    assert items[:2] == ["d", "b"] and len(items) == len(set(items))
    assert {"c", "x", "a"} <= set(items)  # nearby of a, and the history's own items (repeat purchases)
    names = feature_names(with_model=True, with_sids=False)
    assert x.shape == (len(items), len(names))
    row = dict(zip(names, x[items.index("b")], strict=True))
    assert row["model_logp"] == pytest.approx(-1.0) and row["model_logp_gap"] == pytest.approx(-0.5)
    assert row["last_p"] == pytest.approx(1.0) and row["last_count"] == pytest.approx(math.log1p(2))
    outside = dict(zip(names, x[items.index("c")], strict=True))
    assert outside["model_logp"] == pytest.approx(-2.0)  # below the beam's worst
    assert outside["model_rank"] > row["model_rank"]


def test_candidate_features_without_a_model_and_with_sid_codes():
    stats = _stats()
    codes = {"a": (1, 2, 3), "b": (1, 2, 4), "c": (1, 5, 6), "x": (7, 7, 7)}
    items, x = candidate_features(["x", "a"], stats, None, codes)
    assert set(items) <= set(codes) and "d" not in items  # only items of the map are served
    names = feature_names(with_model=False, with_sids=True)
    assert x.shape == (len(items), len(names)) and "model_logp" not in names
    b = dict(zip(names, x[items.index("b")], strict=True))
    c = dict(zip(names, x[items.index("c")], strict=True))
    assert b["same_prefix_as_last"] == 1.0 and c["same_prefix_as_last"] == 0.0 and c["same_first_code_as_last"] == 1.0
    assert b["first_code_share_of_history"] == pytest.approx(0.5)
    empty_items, empty = candidate_features([], ItemStats(), None, None)
    assert empty_items == [] and empty.shape == (0, len(feature_names(False, False)))
    with pytest.raises(ValueError, match="beams"):
        candidate_rows([["a"], ["b"]], stats, beams=[[("a", 0.0)]])


def _planted_rows(n: int, seed: int):
    """Column 1 is the signal (the target's is highest), column 0 is noise."""
    rng = np.random.default_rng(seed)
    rows, targets = [], []
    for r in range(n):
        items = [f"i{r}_{j}" for j in range(12)]
        x = rng.normal(size=(12, 2)).astype(np.float32)
        t = int(rng.integers(12))
        x[t, 1] = x[:, 1].max() + 0.5
        rows.append((items, x))
        targets.append(items[t])
    return rows, targets


def test_ranker_learns_a_planted_signal_and_cross_validates_every_row():
    rows, targets = _planted_rows(300, 0)
    booster = train_ranker(rows, targets, rounds=30)
    test_rows, test_targets = _planted_rows(100, 1)
    top1 = [row[0][0] for row in rerank(booster, test_rows, 1)]
    assert np.mean([a == b for a, b in zip(top1, test_targets, strict=True)]) > 0.9  # chance is 1/12
    ranked = cross_validated(rows, targets, k=3, folds=3, rounds=30)
    assert all(len(row) == 3 for row in ranked)
    assert hit_rate_ndcg([[i for i, _ in row] for row in ranked], targets, [1])["HR@1"] > 0.9


def test_ranker_refuses_rows_it_cannot_learn_from():
    rows, targets = _planted_rows(5, 0)
    with pytest.raises(ValueError, match="targets"):
        train_ranker(rows, targets[:4])
    with pytest.raises(ValueError, match="contain its target"):
        train_ranker(rows, ["elsewhere"] * 5)
    assert rerank(train_ranker(rows, targets, rounds=2), [([], np.zeros((0, 2), np.float32))], 3) == [[]]


def test_score_ranker_beats_popularity_on_sequential_data():
    _, events = generate_synthetic(n_items=150, n_users=300, seed=4)
    splits = examples_from_events(events, 10)
    fits = {"valid": splits["train"], "test": pd.concat([splits["train"], splits["valid"]], ignore_index=True)}
    out = score_ranker(fits, splits, [10])
    targets = splits["test"]["target"].tolist()
    histories = [list(h) for h in splits["test"]["history"]]
    pop = hit_rate_ndcg(MostPopular().fit(fits["test"]).recommend(histories, 10), targets, [10])
    assert out["test"]["HR@10"] > pop["HR@10"] + 0.05
    assert 0.0 < out["valid"]["HR@10"] <= 1.0 and out["valid"]["train_seconds"] >= 0.0
