"""Choosing the hybrid's blend weight on valid rows (the blend itself: tests/decoding/test_decoding_transitions.py)."""

from __future__ import annotations

import math

import pandas as pd

from components.evaluation.baselines import LastItemMarkov
from experiments.blend import blended_items, select_blend_weight


def _table():
    train = pd.DataFrame({"history": [["a"], ["a"], ["a"], ["b"]], "target": ["x", "x", "y", "z"]})
    return LastItemMarkov().fit(train).table  # P(x|a) = 2/3, P(y|a) = 1/3, P(z|b) = 1


def _recs(*pairs):
    return [(item, math.log(p)) for item, p in pairs]


def test_blended_items_are_the_blend_without_scores():
    recs = [_recs(("m", 0.5), ("y", 0.2))]
    assert blended_items(recs, [["a"]], _table(), 0.0, 3) == [["m", "y"]]
    assert blended_items(recs, [["a"]], _table(), 0.5, 3) == [["x", "y", "m"]]


def test_select_blend_weight_follows_the_rows():
    table = _table()
    recs = [_recs(("m", 0.6), ("y", 0.3))] * 4
    histories = [["a"]] * 4
    # the chain's favourite is right: any weight that puts x first wins, the smallest such weight is chosen
    best, scored = select_blend_weight(recs, histories, ["x"] * 4, table, k=1, weights=(0.0, 0.3, 0.7, 0.9))
    assert best == 0.7 and scored[0.0]["HR@1"] == 0.0 and scored[0.7]["HR@1"] == 1.0
    # the model's favourite is right: no blending
    best, _ = select_blend_weight(recs, histories, ["m"] * 4, table, k=1, weights=(0.0, 0.3, 0.7, 0.9))
    assert best == 0.0


def test_markov_recommends_from_the_same_table():
    train = pd.DataFrame({"history": [["a"], ["a"], ["a"], ["b"]], "target": ["x", "x", "y", "z"]})
    chain = LastItemMarkov().fit(train)
    assert chain.table.successors == {"a": {"x": 2, "y": 1}, "b": {"z": 1}}
    # an unknown last item falls back to popularity (histories count too: a 3, x 2)
    assert chain.recommend([["a"], ["q"]], 2) == [["x", "y"], ["a", "x"]]
