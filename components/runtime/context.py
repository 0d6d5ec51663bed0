"""Runtime context: when a request comes, written as the one line the prompt carries (PLUM puts it there).

A request's context is two clocks: the request time (at serving the client's clock, in training the target
event's time) and the user's last event time (Feast's user_history.last_event_unix, read point-in-time for
training and from the online store at serving). From them: weekday, part of day (UTC) and the gap since the
last event, in coarse buckets a small model can learn. One function writes the line for training, evaluation,
the Triton backend and the library, so the prompt a request gets equals the prompt training built for the same
history and context (tests/serving: the parity test).

A model trained with contexts (train.context) records it (sidrec_model.json: train.context); a model trained
without ignores any context it is given, so a client may always send one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd

from components.errors import SidrecError

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# (first hour, name) of each part of the day, UTC
DAY_PARTS = ((0, "night"), (6, "morning"), (12, "afternoon"), (18, "evening"))
# (upper bound in seconds, text) of each gap bucket; the last one has no bound
GAPS = (
    (3600, "within the hour"),
    (86400, "within a day"),
    (7 * 86400, "within a week"),
    (30 * 86400, "within a month"),
    (None, "over a month"),
)
CONTEXT_COLUMNS = ("event_timestamp", "last_event_unix")


class ContextError(SidrecError, ValueError):
    """Examples or requests whose clocks cannot make a context."""


@dataclass(frozen=True)
class RequestContext:
    """The clocks of one request: the request time and the user's last event time (None: no earlier event)."""

    at_unix: int
    last_event_unix: int | None = None


def day_part(hour: int) -> str:
    """The part of the day an hour (0-23) falls in."""
    return [name for first, name in DAY_PARTS if hour >= first][-1]


def gap_text(seconds: float | None) -> str:
    """The gap bucket of `seconds` since the last event ("first visit" without one; a clock skew counts as 0)."""
    if seconds is None:
        return "first visit"
    seconds = max(0.0, float(seconds))
    return next(text for bound, text in GAPS if bound is None or seconds < bound)


def context_text(context: RequestContext) -> str:
    """ "Context: Tuesday evening, last purchase within a week": the prompt's context line."""
    at = datetime.fromtimestamp(int(context.at_unix), tz=UTC)
    gap = None if context.last_event_unix is None else context.at_unix - context.last_event_unix
    last = gap_text(gap)
    tail = last if gap is None else f"last purchase {last}"
    return f"Context: {WEEKDAYS[at.weekday()]} {day_part(at.hour)}, {tail}"


def contexts_of(frame: pd.DataFrame) -> list[RequestContext]:
    """The request contexts of example rows: the target's event_timestamp and the user's last_event_unix before
    it (features.historical.build_training_examples, data.splits.examples_from_events). A frame without those
    columns (a published split without clocks) is an error: a context model cannot be trained or scored on it."""
    missing = [c for c in CONTEXT_COLUMNS if c not in frame.columns]
    if missing:
        raise ContextError(
            f"examples lack {missing}: train.context needs each example's event time and the user's last event "
            "time before it (examples built from events or from Feast carry them; published split files do not)"
        )
    at = pd.to_datetime(frame["event_timestamp"], utc=True).map(lambda t: int(t.timestamp()))
    last = frame["last_event_unix"]
    return [
        RequestContext(int(a), None if pd.isna(b) else int(b)) for a, b in zip(at.tolist(), last.tolist(), strict=True)
    ]


def context_texts(contexts: Sequence[RequestContext | None] | None, n: int) -> list[str | None]:
    """The context lines of `n` requests (None where a request has no context)."""
    if contexts is None:
        return [None] * n
    if len(contexts) != n:
        raise ContextError(f"{len(contexts)} contexts for {n} requests")
    return [context_text(c) if c is not None else None for c in contexts]
