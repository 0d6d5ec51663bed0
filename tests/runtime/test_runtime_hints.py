"""Count statistics in the prompt (TrainConfig.hint_successors): the hint line training writes, with each row's
own transition left out, and the one a served model writes from its transitions.json."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from components.config import TrainConfig
from components.runtime.language import format_prompt, sid_of
from components.runtime.recommender import Recommender, RecommenderError
from components.runtime.transitions import TransitionTable
from components.training.examples import build_training_texts, next_item_examples, training_hints


def _rows(*pairs: tuple[list[str], str]) -> pd.DataFrame:
    return pd.DataFrame({"history": [h for h, _ in pairs], "target": [t for _, t in pairs]})


def test_top_successors_are_most_frequent_first_ties_by_id_and_can_leave_one_out():
    table = TransitionTable({"a": {"y": 1, "x": 2, "z": 1, "w": 3}, "b": {"v": 5, "y": 2}})
    assert table.top_successors(["a"], 3) == ["w", "x", "y"]  # y before z: a tie goes by item id
    assert table.top_successors(["b", "a"], 9) == ["w", "x", "y", "z"]  # window 1: the last item only
    assert table.top_successors(["a"], 2, leave_out="x") == ["w", "x"]  # x 2 -> 1 ties y, z; x sorts first
    assert table.top_successors(["a"], 4, leave_out="y") == ["w", "x", "z"]  # y's only count was the row's own
    assert table.top_successors(["c"], 3) == [] and table.top_successors([], 3) == []
    assert table.top_successors(["a"], 0) == []
    # window 2: b's counts at distance 2 count half (v 2.5, y 1 + 1), the row's own transition only from a
    assert table.top_successors(["b", "a"], 4, window=2) == ["w", "v", "x", "y"]
    assert table.top_successors(["b", "a"], 9, window=2, leave_out="y") == ["w", "v", "x", "y", "z"]


def test_the_hint_line_names_the_sids_and_an_empty_one_is_the_plain_prompt(tiny_sid_model):
    _, _, sidmap = tiny_sid_model
    plain = format_prompt(["i1", "i2"], sidmap)
    assert format_prompt(["i1", "i2"], sidmap, hints=[]) == plain
    assert format_prompt(["i1", "i2"], sidmap, hints=["not-in-the-map"]) == plain
    hinted = format_prompt(["i1", "i2"], sidmap, hints=["i5", "i9"])
    assert hinted == f"Often next: {sid_of(sidmap, 'i5')}{sid_of(sidmap, 'i9')}\n{plain}"


def test_training_rows_never_see_their_own_label_through_their_own_count(tiny_sid_model):
    _, _, sidmap = tiny_sid_model
    # after i1: i2 twice, i3 once; after i4: i5 once
    rows = _rows((["i1"], "i2"), (["i0", "i1"], "i2"), (["i1"], "i3"), (["i4"], "i5"))
    cfg = TrainConfig(hint_successors=2, weight_sid_title=0.0, weight_behaviour=0.0)
    counted = TransitionTable.from_examples(rows["history"], rows["target"])
    pairs = next_item_examples(rows, sidmap, hints=training_hints(cfg, counted, counted=True))
    first, second, third, fourth = (prompt for prompt, _ in pairs)
    # i1 -> i2 seen by another row too: i2 (1 left) and i3 (1) stay, tied, by id
    assert first == format_prompt(["i1"], sidmap, hints=["i2", "i3"])
    assert second == format_prompt(["i0", "i1"], sidmap, hints=["i2", "i3"])
    assert third == format_prompt(["i1"], sidmap, hints=["i2"])  # its own i3 was the only one
    assert fourth == format_prompt(["i4"], sidmap)  # nothing else ever followed i4: no line at all
    # with a table counted elsewhere (as a served model's), nothing is left out
    served = TransitionTable.from_examples(rows["history"], rows["target"])
    assert next_item_examples(rows.tail(1), sidmap, hints=training_hints(cfg, served, counted=False))[0][0] == (
        format_prompt(["i4"], sidmap, hints=["i5"])
    )
    assert training_hints(cfg.model_copy(update={"hint_successors": 0}), counted, counted=True) is None
    texts = build_training_texts(rows, sidmap, pd.DataFrame({"item_id": [], "title": []}), cfg)
    assert sorted(p for p, _ in texts) == sorted([first, second, third, fourth])


def test_a_hinted_model_reads_its_table_when_served_and_refuses_to_run_without_it(tiny_sid_model, tmp_path):
    model, tokenizer, sidmap = tiny_sid_model
    table = TransitionTable({"i7": {"i20": 1, "i30": 4, "gone-from-catalog": 9}})
    info = {"train": {"hint_successors": 2, "hint_window": 2}}
    served = Recommender([model], tokenizer, sidmap, beam_size=10, transitions=table, info=info)
    prompt = served.prompts([["i3", "i7"]])[0]
    assert prompt == format_prompt(["i3", "i7"], sidmap, hints=["gone-from-catalog", "i30"])
    assert prompt.startswith(f"Often next: {sid_of(sidmap, 'i30')}\n")  # an item outside the map is skipped
    # i3 has no successors; i7, two back, is the one read
    assert served.prompts([["i7", "i3"]])[0] == format_prompt(["i7", "i3"], sidmap, hints=["gone-from-catalog", "i30"])
    assert len(served.recommend([["i3", "i7"]], 5)[0]) == 5
    with pytest.raises(RecommenderError, match="hint_successors"):
        Recommender([model], tokenizer, sidmap, info=info)
    # a policy under alignment reads the prompts its supervised model was trained on
    assert served.with_models([model]).prompts([["i3", "i7"]]) == [prompt]
    # the directory round trip: the table is loaded because the model's record says its prompts carry hints
    path = served.save_pretrained(tmp_path / "rec")
    loaded = Recommender.from_pretrained(path)
    assert (loaded.hint_successors, loaded.hint_window) == (2, 2) and loaded.prompts([["i3", "i7"]]) == [prompt]
    # members trained on other prompts cannot share a beam
    member = tmp_path / "rec" / "model"
    other = tmp_path / "other"
    Recommender([model], tokenizer, sidmap, beam_size=10).save_pretrained(other)
    with pytest.raises(RecommenderError, match="other prompts"):
        Recommender.from_pretrained([member, other / "model"])
    assert json.loads((member / "sidrec_model.json").read_text())["train"]["hint_successors"] == 2
