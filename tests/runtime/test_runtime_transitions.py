"""The hybrid: beam candidates blended with last-item transitions, in the library and as served."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from typer.testing import CliRunner

from components.cli import app
from components.runtime.recommender import Recommender, RecommenderError
from components.runtime.transitions import TransitionsError, TransitionTable, blend, blend_row


def _table():
    # last transitions only: a->x twice, a->y once, b->z once; the inner a->b of ["a", "b"] is not counted
    return TransitionTable.from_examples([["a"], ["q", "a"], ["a"], ["a", "b"], []], ["x", "x", "y", "z", "w"])


def _recs(*pairs):
    return [(item, math.log(p)) for item, p in pairs]


def test_table_counts_each_examples_last_transition():
    table = _table()
    assert table.successors == {"a": {"x": 2, "y": 1}, "b": {"z": 1}}
    assert table.examples == 5
    assert table.probabilities("a") == pytest.approx({"x": 2 / 3, "y": 1 / 3})
    assert table.probabilities("unknown") == {} and table.probabilities(None) == {}


def test_table_round_trips_and_a_missing_or_foreign_file_is_named(tmp_path):
    path = _table().save(tmp_path / "m" / "transitions.json")
    assert TransitionTable.load(path) == _table()
    assert [p.name for p in path.parent.iterdir()] == ["transitions.json"]  # no temp file left behind
    with pytest.raises(TransitionsError, match="sidrec training transitions"):
        TransitionTable.load(tmp_path / "none.json")
    (tmp_path / "other.json").write_text(json.dumps({"successors": {}}))
    with pytest.raises(TransitionsError, match="other.json"):
        TransitionTable.load(tmp_path / "other.json")


def test_blend_mixes_the_two_distributions():
    recs = [_recs(("m", 0.5), ("y", 0.2))]
    assert blend(recs, [["a"]], _table(), 0.0, 3) == recs  # the model alone, scores untouched
    # weight 0.5: m 0.25, y 0.1 + 1/6, x 1/3 -> x, y, m; scores are log blended probabilities
    mixed = blend(recs, [["a"]], _table(), 0.5, 3)[0]
    assert [i for i, _ in mixed] == ["x", "y", "m"]
    assert [math.exp(s) for _, s in mixed] == pytest.approx([1 / 3, 0.1 + 1 / 6, 0.25])
    assert [i for i, _ in blend(recs, [["a"]], _table(), 0.5, 2)[0]] == ["x", "y"]
    # an unknown or missing last item: the chain has nothing to add, the model's order stays
    rows = blend(recs * 2, [["q"], []], _table(), 0.9, 3)
    assert [[i for i, _ in r] for r in rows] == [["m", "y"], ["m", "y"]]


def test_blend_keeps_only_eligible_successors():
    recs = _recs(("m", 0.5), ("y", 0.2))
    row = blend_row(recs, "a", _table(), 0.5, 3, eligible=lambda item: item != "x")
    assert [i for i, _ in row] == ["y", "m"]  # x left out; y is a beam item anyway


def test_blend_rejects_weights_outside_zero_one_and_mismatched_rows():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        blend([], [], _table(), 1.5, 3)
    with pytest.raises(ValueError, match="one list"):
        blend([[]], [], _table(), 0.5, 3)


def test_the_recommender_serves_the_hybrid(tiny_sid_model):
    model, tokenizer, sidmap = tiny_sid_model

    def rec(weight=0.0, table=None):
        return Recommender([model], tokenizer, sidmap, beam_size=10, blend_weight=weight, transitions=table)

    history = ["i3", "i7"]
    plain = rec().recommend([history], 5)[0]
    beam = rec().recommend([history], 10)[0]
    outside = [i for i in sidmap.item_ids if i not in {b for b, _ in beam}][:2]
    table = TransitionTable({"i7": {outside[0]: 3, outside[1]: 1, "gone-from-catalog": 50}})
    assert rec(0.0, table).recommend([history], 5) == [plain]
    hybrid = rec(0.5, table).recommend([history], 5)[0]
    # the whole beam (10), not the top 5, is the blend's candidate set
    assert hybrid == blend_row(beam, "i7", table, 0.5, 5, eligible=lambda item: item in sidmap)
    assert "gone-from-catalog" not in {i for i, _ in hybrid}  # never serve an item the SID map lacks
    heavy = rec(1.0, table).recommend([history], 5)[0]
    assert [i for i, _ in heavy[:2]] == outside
    with pytest.raises(RecommenderError, match="transitions"):
        rec(0.5, None)  # a blend weight without a table is refused, not ignored
    # with think-ahead prefixes, a successor outside them is not served
    prefix = [sidmap.codes_of(outside[1])[:1]]
    allowed = rec(1.0, table).recommend([history], 5, [prefix])[0]
    assert allowed and all(sidmap.codes_of(i)[:1] == prefix[0] for i, _ in allowed)
    assert allowed[0][0] == outside[1] or sidmap.codes_of(outside[0])[:1] == prefix[0]
    if sidmap.codes_of(outside[0])[:1] != prefix[0]:
        assert outside[0] not in {i for i, _ in allowed}


def test_cli_writes_a_model_dirs_table_and_scores_the_hybrid(tiny_sid_model, tiny_model_dir, tmp_path):
    """`sidrec training transitions` fits the table on the given splits; `sidrec evaluation model --blend-weight`
    scores the hybrid with it. Here the table is fit on the scored rows themselves, so weight 1 must hit every row."""
    sidmap = tiny_sid_model[2]
    model_dir = tiny_model_dir
    splits = tmp_path / "splits"
    splits.mkdir()
    rows = [
        {"user_id": f"u{i}", "history": sidmap.item_ids[i : i + 3], "target": sidmap.item_ids[i + 3]} for i in range(6)
    ]
    pd.DataFrame(rows[:3]).to_json(splits / "train.jsonl", orient="records", lines=True)
    pd.DataFrame(rows[3:]).to_json(splits / "valid.jsonl", orient="records", lines=True)
    config = tmp_path / "cfg.yaml"
    config.write_text(f"data:\n  splits_dir: {splits}\nserving:\n  beam_size: 5\n")
    runner = CliRunner()
    args = ["training", "transitions", "--model-dir", str(model_dir), "--config", str(config)]
    result = runner.invoke(app, [*args, "--split", "train", "--split", "valid"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["examples"] == 6
    assert TransitionTable.load(model_dir / "transitions.json").probabilities(sidmap.item_ids[5]) == {
        sidmap.item_ids[6]: 1.0
    }
    scores = {}
    for weight in ("0", "1.0"):
        result = runner.invoke(
            app, ["evaluation", "model", str(model_dir), "--config", str(config), "--blend-weight", weight]
        )
        assert result.exit_code == 0, result.output
        scores[weight] = json.loads(result.output[result.output.index("{") :])
    assert scores["1.0"]["HR@3"] == 1.0 and scores["1.0"]["NDCG@3"] == 1.0 and scores["1.0"]["invalid_rate"] == 0.0
    assert scores["0"]["NDCG@3"] < 1.0
