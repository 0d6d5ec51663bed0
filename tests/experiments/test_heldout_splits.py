"""experiments.heldout_splits: the rows held out of supervised training for alignment to mine."""

from __future__ import annotations

import json

import pandas as pd

from components.data.splits import load_split_examples
from experiments.heldout_splits import held_out_rows, write_heldout_splits


def _prefix_rows(users: dict[str, list[str]]) -> pd.DataFrame:
    """Every prefix of each user's sequence as a row, as the data contract's train split has them."""
    rows = [
        {"user_id": u, "history": seq[:i], "target": seq[i]} for u, seq in users.items() for i in range(1, len(seq))
    ]
    return pd.DataFrame(rows)


def _keys(frame: pd.DataFrame) -> list[tuple]:
    return sorted(zip(frame["user_id"], frame["history"].map(tuple), frame["target"].astype(str), strict=True))


def test_held_out_rows_are_each_drawn_users_last_row():
    train = _prefix_rows({"a": ["1", "2", "3", "4"], "b": ["5", "6"], "c": ["7", "8", "9"]})
    held = held_out_rows(train, rows=2, seed=0)
    picked = train.loc[held]
    assert picked["user_id"].is_unique and len(picked) == 2
    for _, row in picked.iterrows():
        assert len(row["history"]) == train.loc[train["user_id"] == row["user_id"], "history"].map(len).max()
    assert len(held_out_rows(train, rows=10, seed=0)) == 3  # all users when fewer than asked


def test_write_heldout_splits_partitions_train_and_links_the_rest(tmp_path):
    source = tmp_path / "data"
    source.mkdir()
    train = _prefix_rows({"a": ["1", "2", "3"], "b": ["4", "5", "6", "7"]})
    train.to_json(source / "train.jsonl.gz", orient="records", lines=True, compression="gzip")
    for split in ("valid", "test"):
        (source / f"{split}.jsonl").write_text(json.dumps({"user_id": "a", "history": ["1"], "target": "2"}) + "\n")
    counts = write_heldout_splits(source, tmp_path / "out", rows=1, seed=0)
    fit = load_split_examples(str(tmp_path / "out"), "train")
    held = load_split_examples(str(tmp_path / "out"), "heldout")
    assert counts == {"train": len(train) - 1, "heldout": 1} and len(fit) + len(held) == len(train)
    assert _keys(pd.concat([fit, held])) == _keys(train)
    assert load_split_examples(str(tmp_path / "out"), "valid").equals(load_split_examples(str(source), "valid"))
