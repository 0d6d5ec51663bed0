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
from components.runtime.content import ContentIndex
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


def _twins(n_pairs: int, seed: int) -> ContentIndex:
    """Items i0..i{2n-1} where i(2k) and i(2k+1) are content twins (near-identical random vectors)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n_pairs, 32))
    vectors = np.repeat(base, 2, axis=0) + 0.05 * rng.normal(size=(2 * n_pairs, 32))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return ContentIndex([f"i{j}" for j in range(2 * n_pairs)], vectors)


def test_candidate_features_pool_the_content_neighbours_and_read_their_similarity():
    content = _twins(20, 0)
    stats = ItemStats.from_examples([["i0"]], ["i5"])
    codes = {f"i{j}": (j, 0, 0) for j in range(40) if j != 3}  # i3 is not servable
    items, x = candidate_features(["i0"], stats, None, codes, content=content)
    names = feature_names(with_model=False, with_sids=True, with_content=True)
    assert names[-2:] == ["content_history", "content_last"] and x.shape == (len(items), len(names))
    assert "i1" in items and "i5" in items and "i3" not in items  # the twin joins; the map's rule holds
    twin = dict(zip(names, x[items.index("i1")], strict=True))
    other = dict(zip(names, x[items.index("i5")], strict=True))
    assert twin["content_history"] > 0.9 and twin["content_last"] == pytest.approx(twin["content_history"])
    assert other["content_history"] < twin["content_history"]
    _, plain = candidate_features(["i0"], stats, None, codes)
    assert plain.shape[1] == len(names) - 2
    empty_items, empty = candidate_features([], ItemStats(), None, None, content=content)
    assert empty_items == [] and empty.shape == (0, len(feature_names(False, False, True)))


def test_score_ranker_finds_targets_no_count_reaches_through_their_content():
    """Each user buys an item and then its content twin, and no pair repeats: counts cannot know the next item,
    the content source can."""
    content = _twins(300, 1)
    rng = np.random.default_rng(2)

    def rows(pairs):
        histories, targets = [], []
        for k in pairs:
            first, second = (2 * k, 2 * k + 1) if rng.random() < 0.5 else (2 * k + 1, 2 * k)
            histories.append([f"i{int(rng.integers(600))}", f"i{first}"])
            targets.append(f"i{second}")
        return pd.DataFrame({"history": histories, "target": targets})

    order = rng.permutation(300)
    splits = {"train": rows(order[:100]), "valid": rows(order[100:200]), "test": rows(order[200:])}
    fits = {"valid": splits["train"], "test": pd.concat([splits["train"], splits["valid"]], ignore_index=True)}
    assert score_ranker(fits, splits, [10], content=content)["test"]["HR@10"] > 0.9
    with pytest.raises(ValueError, match="contain its target"):  # the count candidates never hold the target
        score_ranker(fits, splits, [10])
