"""Items' content neighbours (runtime.content): the history's query, its nearest items, and the saved index."""

from __future__ import annotations

import numpy as np
import pytest

from components.runtime.content import ContentIndex

# unit vectors in the plane at these angles (degrees): a 0, b 30, c 60, d 80, e 180
ANGLES = {"a": 0, "b": 30, "c": 60, "d": 80, "e": 180}
INDEX = ContentIndex(list(ANGLES), np.array([[np.cos(np.radians(t)), np.sin(np.radians(t))] for t in ANGLES.values()]))


def test_neighbours_are_the_nearest_items_to_the_newest_purchases_best_first():
    assert [i for i, _ in INDEX.neighbours(["a"], 3)] == ["b", "c", "d"]  # e is opposite: no positive score
    assert INDEX.neighbours(["a"], 1)[0][1] == pytest.approx(np.cos(np.radians(30)))
    # the newest item counts most: after d then a the query leans to a, after a then d to d
    assert [i for i, _ in INDEX.neighbours(["d", "a"], 1)] == ["b"]
    assert [i for i, _ in INDEX.neighbours(["a", "d"], 1)] == ["c"]
    assert "b" not in dict(INDEX.neighbours(["a"], 3, exclude=["b"]))  # e.g. the training row's own target
    assert INDEX.neighbours(["unknown"], 3) == [] and INDEX.neighbours(["a"], 0) == []


def test_similarity_scores_known_items_and_zero_for_the_rest():
    query = INDEX.query(["a"])
    assert INDEX.similarity(query, ["b", "unknown", "e"]) == pytest.approx([np.cos(np.radians(30)), 0.0, -1.0])
    assert INDEX.query(["unknown"]) is None and list(INDEX.similarity(None, ["a"])) == [0.0]


def test_the_index_round_trips_through_its_file_and_refuses_mismatched_shapes(tmp_path):
    INDEX.save(tmp_path)
    loaded = ContentIndex.load(tmp_path)
    assert loaded.item_ids == INDEX.item_ids and np.allclose(loaded.vectors, INDEX.vectors, atol=1e-3)
    assert [i for i, _ in loaded.neighbours(["a"], 3)] == ["b", "c", "d"]
    with pytest.raises(ValueError, match="2 item ids"):
        ContentIndex(["a", "b"], np.zeros((3, 2)))
