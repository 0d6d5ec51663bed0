"""Blending the generative model's items with last-item transition probabilities."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from components.evaluation.baselines import LastItemMarkov
from components.evaluation.blend import blend_with_transitions, select_blend_weight


def _markov():
    train = pd.DataFrame(
        {"history": [["a"], ["a"], ["a"], ["b"]], "target": ["x", "x", "y", "z"]},
    )
    return LastItemMarkov().fit(train)  # P(x|a) = 2/3, P(y|a) = 1/3, P(z|b) = 1


def _recs(*pairs):
    return [(item, math.log(p)) for item, p in pairs]


def test_blend_mixes_the_two_distributions():
    recs = [_recs(("m", 0.5), ("y", 0.2))]
    markov = _markov()
    assert blend_with_transitions(recs, [["a"]], markov, 0.0, 3) == [["m", "y"]]  # the model alone
    # alpha 0.5: m 0.25, y 0.1 + 1/6 = 0.267, x 1/3 -> x, y, m
    assert blend_with_transitions(recs, [["a"]], markov, 0.5, 3) == [["x", "y", "m"]]
    assert blend_with_transitions(recs, [["a"]], markov, 0.5, 2) == [["x", "y"]]
    # an unseen last item (and an empty history) keeps the model's order
    assert blend_with_transitions(recs * 2, [["q"], []], markov, 0.9, 3) == [["m", "y"], ["m", "y"]]


def test_blend_rejects_weights_outside_zero_one_and_mismatched_rows():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        blend_with_transitions([], [], _markov(), 1.5, 3)
    with pytest.raises(ValueError, match="one list"):
        blend_with_transitions([[]], [], _markov(), 0.5, 3)


def test_select_blend_weight_follows_the_rows():
    markov = _markov()
    recs = [_recs(("m", 0.6), ("y", 0.3))] * 4
    histories = [["a"]] * 4
    # the chain's favourite is right: any weight that puts x first wins, the smallest such weight is chosen
    best, scored = select_blend_weight(recs, histories, ["x"] * 4, markov, k=1, weights=(0.0, 0.3, 0.7, 0.9))
    assert best == 0.7 and scored[0.0]["HR@1"] == 0.0 and scored[0.7]["HR@1"] == 1.0
    # the model's favourite is right: no blending
    best, _ = select_blend_weight(recs, histories, ["m"] * 4, markov, k=1, weights=(0.0, 0.3, 0.7, 0.9))
    assert best == 0.0
