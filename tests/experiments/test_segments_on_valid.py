"""The valid rows' segments by what the training transitions know about the target."""

from __future__ import annotations

import pytest

from components.config import PROJECT_ROOT
from components.runtime.transitions import TransitionTable
from experiments.segments_on_valid import main, segment, segment_table

TABLE = TransitionTable.from_examples(
    [["a"], ["x", "a"], ["y", "a"], ["b"], ["c"], ["d"], ["d"], ["d"]],
    ["b", "b", "c", "e", "f", "g", "g", "g"],
)


@pytest.mark.parametrize(
    ("history", "target", "expected"),
    [
        (["b", "a"], "b", "repeat"),
        (["x", "a"], "b", "last item -> target seen twice"),
        (["a"], "c", "last item -> target seen once"),
        (["d"], "g", "last item -> target seen 3+ times"),
        (["b", "z"], "e", "earlier item -> target"),
        (["z"], "q", "no count"),
        ([], "q", "no count"),
    ],
)
def test_a_row_falls_into_the_segment_its_counts_say(history, target, expected):
    assert segment(history, target, TABLE) == expected


def test_each_ranking_is_scored_on_its_segments_rows_and_on_all():
    histories = [["a"], ["z"], ["a"]]
    targets = ["b", "q", "c"]
    ranked = {"model": [["b"], ["x"], ["x"]], "markov": [["x", "b"], ["q"], ["c"]]}
    table = segment_table(histories, targets, ranked, TABLE)
    assert list(table) == ["last item -> target seen once", "last item -> target seen twice", "no count", "all"]
    assert table["last item -> target seen twice"]["model"]["HR@10"] == 1.0
    assert table["last item -> target seen twice"]["markov"]["NDCG@10"] == pytest.approx(1 / 1.5849625, rel=1e-6)
    assert table["no count"]["model"]["HR@10"] == 0.0
    assert table["all"]["rows"] == 3
    assert table["all"]["share"] == 1.0
    assert table["all"]["markov"]["HR@10"] == 1.0


def test_a_missing_model_directory_is_one_line_not_a_traceback(tmp_path):
    with pytest.raises(SystemExit) as exited:
        main(
            [
                str(tmp_path / "nope"),
                "--config",
                str(PROJECT_ROOT / "configs" / "benchmark.yaml"),
                "--out",
                str(tmp_path / "out"),
            ]
        )
    message = str(exited.value)
    assert "not a trained model directory" in message and str(tmp_path / "nope") in message
    assert "\n" not in message and not (tmp_path / "out").exists()
