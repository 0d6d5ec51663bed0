"""Alignment teachers (training.teacher): each row's own example is left out of the counts, the ranker teacher is
a distribution over the row's candidates that knows the data's transitions, and alignment runs with it."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from components.runtime.candidates import ItemStats, candidate_features, feature_names
from components.runtime.transitions import TransitionTable
from components.sids.sidmap import SidMap
from components.training.teacher import RankerTeacher, TeacherError, build_teacher, teacher_preferences

RANK = feature_names(False, False).index("popularity_rank")


def test_transition_teacher_leaves_the_row_own_transition_out():
    table = TransitionTable.from_examples([["a"], ["a"], ["a"]], ["x", "x", "y"])
    q = teacher_preferences([["a"], ["b"]], [["x", "y", "z"], ["x", "y"]], ["x", "x"], table)
    assert q[0].tolist() == pytest.approx([0.5, 0.5, 0.0])  # x: 2 - 1 (own row), y: 1
    assert q[1].sum() == 0  # an unknown last item: no teacher preference


def test_left_out_counts_equal_counts_built_without_the_row_and_are_restored():
    histories = [["a"], ["a", "b"], ["x", "a"], ["c", "a", "b"], ["q", "a"]]
    targets = ["b", "c", "b", "d", "z"]
    stats = ItemStats.from_examples(histories, targets, window=3)
    before = candidate_features(["c", "a", "b"], stats)
    for r in range(len(histories)):
        without = ItemStats.from_examples(histories[:r] + histories[r + 1 :], targets[:r] + targets[r + 1 :], 3)
        with stats.leave_out(histories[r], targets[r]) as left_out:
            assert {k: v for k, v in left_out.successors.items() if v} == without.successors
            assert +left_out.popularity == without.popularity
            got, want = candidate_features(histories[r], left_out), candidate_features(histories[r], without)
            # popularity ranks break ties by first count, which a left-out row can move: every other column agrees
            assert sorted(got[0]) == sorted(want[0])
            order = [got[0].index(item) for item in want[0]]
            assert np.array_equal(np.delete(got[1][order], RANK, 1), np.delete(want[1], RANK, 1))
    # the only "a" -> "z" transition left out: "z" does not join the row's candidates with a zero count
    with stats.leave_out(["q", "a"], "z"):
        assert "z" not in candidate_features(["q", "a"], stats)[0]
    after = candidate_features(["c", "a", "b"], stats)
    assert after[0] == before[0] and np.array_equal(after[1], before[1])


def test_included_items_are_scored_after_the_beam_whatever_the_sources_say():
    stats = ItemStats.from_examples([["a"], ["a"]], ["b", "c"], window=3)
    items, x = candidate_features(["a"], stats, [("c", -0.1)], include=["never-seen", "b", "c"])
    assert items[:3] == ["c", "never-seen", "b"]
    assert len(items) == len(set(items)) and x.shape[0] == len(items)


def _cycle_data(n_items: int = 30, users: int = 150, length: int = 8, seed: int = 0):
    """Users walk a cycle i -> i + 1 (80%) or jump anywhere (20%): the examples and a SID map of the items."""
    rng = random.Random(seed)
    rows = []
    for u in range(users):
        seq = [rng.randrange(n_items)]
        for _ in range(length - 1):
            seq.append((seq[-1] + 1) % n_items if rng.random() < 0.8 else rng.randrange(n_items))
        seq = [f"i{i}" for i in seq]
        rows += [{"user_id": f"u{u}", "history": seq[:t], "target": seq[t]} for t in range(1, length)]
    items = [f"i{i}" for i in range(n_items)]
    codes = np.array([[i // 8, i % 8] for i in range(n_items)])
    sidmap = SidMap(items, codes, [8, 8], version="test")
    return pd.DataFrame(rows), sidmap


def test_ranker_teacher_prefers_the_data_s_successor_and_sums_to_one():
    examples, sidmap = _cycle_data()
    teacher = RankerTeacher.fit(examples, sidmap, rows=600, seed=0, exclude=examples.index[:50])
    assert 0.1 <= teacher.temperature <= 10.0
    mined = examples.iloc[:50]
    histories = [list(h) for h in mined["history"]]
    targets = mined["target"].tolist()
    successor = [f"i{(int(h[-1][1:]) + 1) % 30}" for h in histories]
    other = [f"i{(int(h[-1][1:]) + 15) % 30}" for h in histories]
    candidates = [[t] + [i for i in (s, o) if i != t] for t, s, o in zip(targets, successor, other, strict=True)]
    q = teacher(histories, candidates, targets)
    for r, items in enumerate(candidates):
        assert float(q[r, : len(items)].sum()) == pytest.approx(1.0, abs=1e-5)
        assert float(q[r, len(items) :].sum()) == 0.0
    prefers = [q[r, items.index(successor[r])] > q[r, items.index(other[r])] for r, items in enumerate(candidates)]
    assert sum(prefers) >= 0.9 * len(prefers)


def test_build_teacher_names_the_kinds():
    examples, sidmap = _cycle_data(users=20)
    assert callable(build_teacher("transitions", examples, sidmap, 100, 0, None))
    with pytest.raises(ValueError, match="align.teacher"):
        build_teacher("oracle", examples, sidmap, 100, 0, None)


def test_a_ranker_teacher_with_nothing_to_learn_is_one_clear_error():
    """Rows whose targets never pool among their count candidates (every transition seen once, then left out)."""
    examples = pd.DataFrame({"history": [[f"a{i}"] for i in range(20)], "target": [f"b{i}" for i in range(20)]})
    items = [f"a{i}" for i in range(20)] + [f"b{i}" for i in range(20)]
    sidmap = SidMap(items, np.array([[i // 8, i % 8] for i in range(40)]), [8, 8], version="test")
    with pytest.raises(TeacherError, match="align.teacher: transitions"):
        RankerTeacher.fit(examples, sidmap, rows=20)
