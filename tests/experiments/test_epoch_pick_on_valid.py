"""experiments.epoch_pick_on_valid: the patience rule, the halves, and a whole run + compare on tiny data."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from experiments.epoch_pick_on_valid import SAMPLE_RULE, compare_run, halves, main, pick


@pytest.mark.parametrize(
    ("curve", "patience", "expected"),
    [
        ([0.1, 0.3, 0.2, 0.2, 0.2, 0.2, 0.9], 4, 1),  # stopped after 4 scores below the best: never sees 0.9
        ([0.1, 0.3, 0.2, 0.2, 0.2, 0.9], 4, 5),
        ([0.1, 0.3, 0.3, 0.1], None, 1),  # a tie keeps the earlier epoch, as training does
    ],
)
def test_pick_stops_as_training_does(curve, patience, expected):
    assert pick(curve, patience) == expected


def test_a_users_rows_stay_in_one_half():
    users = pd.Series(["u1", "u2", "u1", "u3", "u2"])
    half = halves(users)
    assert half[0] == half[2] and half[1] == half[4]
    assert set(half) <= {0, 1}


def test_each_rule_is_scored_on_the_half_it_did_not_pick_on():
    users = [f"u{i}" for i in range(40)]
    half = halves(pd.Series(users))
    # epoch 1 is right on half 0 only, epoch 2 on half 1 only: each pick then scores 0 on the other half
    hits = [[1.0 if h == 0 else 0.0 for h in half], [1.0 if h == 1 else 0.0 for h in half]]
    rows = compare_run({"name": "r", "seed": 0, "patience": 4, "users": users, "hr10": hits, "ndcg10": hits})
    whole = [r for r in rows if r["rule"] == "HR@10, whole half"]
    assert [(r["picked on half"], r["epoch"]) for r in whole] == [(0, 1), (1, 2)]
    assert all(r["hr10"].sum() == 0 for r in whole)


def test_a_run_stores_every_epochs_ranks_and_compare_reads_them(tiny_benchmark, tmp_path, capsys):
    cfg = tiny_benchmark(overrides={"train": {"epochs": 2}})
    main(["run", "t", "--seed", "0", "--config", str(cfg), "--out", str(tmp_path / "ep")])
    result = json.loads((tmp_path / "ep" / "t" / "per_row.json").read_text())
    assert len(result["hr10"]) == 2 and len(result["hr10"][0]) == len(result["users"]) == len(result["ndcg10"][1])
    assert json.loads((tmp_path / "ep" / "t" / "sidrec_model.json").read_text())["train"]["patience"] is None
    main(["compare", str(tmp_path / "ep" / "t"), "--out", str(tmp_path / "cmp")])
    table = (tmp_path / "cmp" / "compare.md").read_text()
    assert SAMPLE_RULE in table and "| +0.0000 ± 0.0000 |" in table


def test_a_missing_run_is_one_line(tmp_path):
    with pytest.raises(SystemExit) as exited:
        main(["compare", str(tmp_path / "nope")])
    assert "epoch_pick_on_valid:" in str(exited.value) and "\n" not in str(exited.value)


def test_a_broken_ranks_file_is_one_line(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "per_row.json").write_text("{not json")
    with pytest.raises(SystemExit) as exited:
        main(["compare", str(tmp_path / "r")])
    assert "per_row.json is not JSON" in str(exited.value) and "\n" not in str(exited.value)


def test_overrides_that_are_not_json_are_one_line(tmp_path):
    with pytest.raises(SystemExit) as exited:
        main(["run", "x", "--overrides", "{train: 1", "--out", str(tmp_path / "ep")])
    assert "the overrides '{train: 1' is not JSON" in str(exited.value)
    assert not (tmp_path / "ep").exists()
