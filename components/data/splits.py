"""Next-item examples: the published split files, or chronological leave-last-out from an event log.

An example is (user_id, history, target): the history holds the user's items strictly before the target,
oldest first, at most `max_history` long. Every later step (baselines, LLM training, evaluation) consumes
this one shape.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from components.data.readers import read_table
from components.errors import MissingFileError


def load_split_examples(splits_dir: str, split: str) -> pd.DataFrame:
    """Read `{split}.jsonl.gz` (or `.jsonl`) from a split directory: user_id, history (list[str]), target."""
    directory = Path(splits_dir)
    for name in (f"{split}.jsonl.gz", f"{split}.jsonl"):
        if (directory / name).exists():
            frame = read_table(str(directory / name))
            break
    else:
        raise MissingFileError(f"no {split}.jsonl[.gz] in {splits_dir} (check data.splits_dir)")
    frame["user_id"] = frame["user_id"].astype(str)
    frame["history"] = frame["history"].map(lambda items: [str(i) for i in items])
    frame["target"] = frame["target"].astype(str)
    return frame[["user_id", "history", "target"]]


EVENT_EXAMPLE_COLUMNS = ["user_id", "history", "target", "event_timestamp", "last_event_unix"]


def examples_from_events(events: pd.DataFrame, max_history: int = 10) -> dict[str, pd.DataFrame]:
    """Chronological leave-last-out: per user the last event is test, the one before valid, earlier ones train.

    Each example carries the target's event_timestamp so feature lookups can be point-in-time, and the time of the
    user's event before it (last_event_unix, as Feast's user_history holds it): the request context's clocks.
    """
    ordered = events.sort_values(["user_id", "event_timestamp"], kind="stable")
    rows: dict[str, list[dict]] = {"train": [], "valid": [], "test": []}
    for user, group in ordered.groupby("user_id", sort=True):
        items = group["item_id"].astype(str).tolist()
        times = group["event_timestamp"].tolist()
        n = len(items)
        for t in range(1, n):
            split = "test" if t == n - 1 else "valid" if t == n - 2 else "train"
            rows[split].append(
                {
                    "user_id": str(user),
                    "history": items[max(0, t - max_history) : t],
                    "target": items[t],
                    "event_timestamp": times[t],
                    "last_event_unix": int(times[t - 1].timestamp()),
                }
            )
    return {name: pd.DataFrame(r, columns=EVENT_EXAMPLE_COLUMNS) for name, r in rows.items()}


SPLITS = ("train", "valid", "test")


def load_splits(splits_dir: str) -> dict[str, pd.DataFrame]:
    """train, valid and test examples of a split directory."""
    return {split: load_split_examples(splits_dir, split) for split in SPLITS}


def fit_periods(scored_split: str) -> list[str]:
    """The periods a model scored on `scored_split` is fit on: train for valid, train + valid for test."""
    periods = {"valid": ["train"], "test": ["train", "valid"]}
    if scored_split not in periods:
        raise ValueError(f"only valid and test are scored, not {scored_split!r}")
    return periods[scored_split]


def fit_split(splits: dict[str, pd.DataFrame] | str, scored_split: str) -> pd.DataFrame:
    """The examples a model scored on `scored_split` is fit on (fit_periods); `splits` is the loaded splits or
    their directory."""
    periods = fit_periods(scored_split)
    frames = splits if isinstance(splits, dict) else {p: load_split_examples(splits, p) for p in periods}
    return pd.concat([frames[p] for p in periods], ignore_index=True)


def fit_period_events(events: pd.DataFrame, scored_split: str) -> pd.DataFrame:
    """The events a model scored on `scored_split` may be fit on (fit_periods; all of them without a split column).

    Why SIDs are rebuilt for test: an item first bought in the valid period has no collaborative signal in a
    train-only map (its code comes from its text alone), although the test model trains on its purchases.
    """
    periods = fit_periods(scored_split)
    return events[events["split"].isin(periods)] if "split" in events else events
