"""Next-item examples: the published split files, or chronological leave-last-out from an event log.

An example is (user_id, history, target): the history holds the user's items strictly before the target,
oldest first, at most `max_history` long. Every later step (baselines, LLM training, evaluation) consumes
this one shape.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from components.data.readers import read_table


def load_split_examples(splits_dir: str, split: str) -> pd.DataFrame:
    """Read `{split}.jsonl.gz` (or `.jsonl`) from a split directory: user_id, history (list[str]), target."""
    directory = Path(splits_dir)
    for name in (f"{split}.jsonl.gz", f"{split}.jsonl"):
        if (directory / name).exists():
            frame = read_table(str(directory / name))
            break
    else:
        raise FileNotFoundError(f"no {split}.jsonl[.gz] in {splits_dir}")
    frame["user_id"] = frame["user_id"].astype(str)
    frame["history"] = frame["history"].map(lambda items: [str(i) for i in items])
    frame["target"] = frame["target"].astype(str)
    return frame[["user_id", "history", "target"]]


def examples_from_events(events: pd.DataFrame, max_history: int = 10) -> dict[str, pd.DataFrame]:
    """Chronological leave-last-out: per user the last event is test, the one before valid, earlier ones train.

    Each example carries the target's event_timestamp so feature lookups can be point-in-time.
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
                }
            )
    return {
        name: pd.DataFrame(r, columns=["user_id", "history", "target", "event_timestamp"]) for name, r in rows.items()
    }
