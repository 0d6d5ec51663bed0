"""Point-in-time training examples from Feast's offline store (DuckDB)."""

from __future__ import annotations

import pandas as pd

from components.config import Config
from components.features.repo import get_store


def build_training_examples(cfg: Config, entity_df: pd.DataFrame) -> pd.DataFrame:
    """entity_df (user_id, target, event_timestamp) -> + history as of each timestamp (strictly before it) and
    the time of the user's last event before it (last_event_unix: with event_timestamp, the request context).

    Rows whose user had no earlier event get an empty history and are dropped (nothing to predict from),
    and the count is logged by the caller through the returned frame's length.
    """
    store = get_store(cfg)
    frame = entity_df[["user_id", "event_timestamp", "target"]].copy()
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    joined = store.get_historical_features(
        entity_df=frame, features=["user_history:history", "user_history:last_event_unix"]
    ).to_df()
    joined["history"] = joined["history"].map(lambda h: [] if h is None else [str(i) for i in h])
    joined = joined[joined["history"].map(len) > 0]
    return (
        joined[["user_id", "history", "target", "event_timestamp", "last_event_unix"]]
        .sort_values(["user_id", "event_timestamp"])
        .reset_index(drop=True)
    )
