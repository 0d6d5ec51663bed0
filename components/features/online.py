"""Online feature reads for serving: a user's history and think-ahead prefixes, item titles and SIDs."""

from __future__ import annotations

from components.config import Config
from components.features.repo import get_store


class UnknownUserError(KeyError):
    """The online store has no history for this user."""


class OnlineFeatures:
    def __init__(self, cfg: Config) -> None:
        self.store = get_store(cfg)

    def user_history(self, user_id: str) -> list[str]:
        row = self.store.get_online_features(
            features=["user_history:history"], entity_rows=[{"user_id": str(user_id)}]
        ).to_dict()
        history = row["history"][0]
        if not history:
            raise UnknownUserError(f"unknown user {user_id!r}: no history in the online store")
        return [str(i) for i in history]

    def user_prefixes(self, user_id: str) -> list[tuple[int, int]] | None:
        row = self.store.get_online_features(
            features=["user_prefixes:prefixes"], entity_rows=[{"user_id": str(user_id)}]
        ).to_dict()
        values = row["prefixes"][0]
        return [tuple(int(c) for c in v.split("_")) for v in values] if values else None

    def item_info(self, item_ids: list[str]) -> dict[str, dict]:
        rows = self.store.get_online_features(
            features=["item_features:title", "item_features:sid", "item_features:popularity"],
            entity_rows=[{"item_id": str(i)} for i in item_ids],
        ).to_dict()
        return {
            str(i): {"title": rows["title"][n], "sid": rows["sid"][n], "popularity": rows["popularity"][n]}
            for n, i in enumerate(item_ids)
            if rows["sid"][n] is not None
        }
