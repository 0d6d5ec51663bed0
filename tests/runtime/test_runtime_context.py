"""The runtime context line: its buckets, the clocks examples carry, and who puts it in the prompt."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from components.runtime.context import ContextError, RequestContext, context_text, contexts_of, gap_text
from components.runtime.recommender import Recommender


def _unix(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def test_context_line_names_weekday_part_of_day_and_gap():
    at = _unix("2026-12-01T19:30:00")  # a Tuesday evening (UTC)
    assert context_text(RequestContext(at, at - 3 * 86400)) == "Context: Tuesday evening, last purchase within a week"
    assert context_text(RequestContext(at)) == "Context: Tuesday evening, first visit"
    assert context_text(RequestContext(_unix("2026-12-06T05:59:59"), None)).startswith("Context: Sunday night")
    assert context_text(RequestContext(_unix("2026-12-06T06:00:00"), None)).startswith("Context: Sunday morning")
    assert [gap_text(s) for s in (0, 3599, 3600, 86399, 86400, 30 * 86400)] == [
        "within the hour",
        "within the hour",
        "within a day",
        "within a day",
        "within a week",
        "over a month",
    ]
    assert gap_text(-50) == "within the hour"  # a skewed client clock is not a negative gap


def test_contexts_come_from_the_example_clocks_and_need_them():
    frame = pd.DataFrame(
        {
            "history": [["i1"], ["i1", "i2"]],
            "target": ["i2", "i3"],
            "event_timestamp": pd.to_datetime(["2026-12-01T08:00:00Z", "2026-12-02T23:00:00Z"]),
            "last_event_unix": [None, _unix("2026-12-01T08:00:00")],
        }
    )
    contexts = contexts_of(frame)
    assert contexts == [
        RequestContext(_unix("2026-12-01T08:00:00"), None),
        RequestContext(_unix("2026-12-02T23:00:00"), _unix("2026-12-01T08:00:00")),
    ]
    with pytest.raises(ContextError, match=r"lack \['event_timestamp', 'last_event_unix'\].*published split"):
        contexts_of(frame[["history", "target"]])


def test_only_a_model_trained_with_contexts_reads_them(tiny_sid_model):
    model, tokenizer, sidmap = tiny_sid_model
    at = RequestContext(_unix("2026-12-01T19:30:00"), _unix("2026-11-30T19:30:00"))
    plain = Recommender([model], tokenizer, sidmap, beam_size=10)
    trained = Recommender([model], tokenizer, sidmap, beam_size=10, info={"train": {"context": True}})
    assert not plain.uses_context and trained.uses_context  # as sidrec_model.json records the training
    assert plain.prompts([["i1"]], [at]) == plain.prompts([["i1"]])
    prompt = trained.prompts([["i1"], ["i1"]], [at, None])
    assert prompt[0] == f"{context_text(at)}\n{plain.prompts([['i1']])[0]}"
    assert prompt[1] == plain.prompts([["i1"]])[0]  # a request without clocks gets the plain prompt
    with_line = trained.recommend([["i1", "i2"]], 5, contexts=[at])
    without = trained.recommend([["i1", "i2"]], 5)
    assert with_line != without  # the line reaches the model: another prompt, other scores
