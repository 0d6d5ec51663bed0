"""Online feature reads for serving: everything one request needs, in one feature-service round trip."""

from __future__ import annotations

from dataclasses import dataclass, field

from components.config import Config
from components.features.repo import SERVICE, get_store


@dataclass
class UserFeatures:
    """What the online store holds for one user; an unknown user (or an empty store) has an empty history."""

    user_id: str
    history: list[str] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)  # runtime.language.encode_prefix text, passed on as is
    prefix_sid_version: str | None = None
    prefix_model_version: str | None = None
    rationale: str | None = None

    @property
    def known(self) -> bool:
        return bool(self.history)


class OnlineFeatures:
    def __init__(self, cfg: Config) -> None:
        self.store = get_store(cfg)
        self._service = None

    def service(self):
        """The recommendation feature service (read from the registry once)."""
        if self._service is None:
            self._service = self.store.get_feature_service(SERVICE)
        return self._service

    def user(self, user_id: str) -> UserFeatures:
        """History, think-ahead prefixes (with the versions they were made for) and the rationale of one user,
        read through the recommendation feature service: one online-store round trip."""
        row = self.store.get_online_features(features=self.service(), entity_rows=[{"user_id": str(user_id)}]).to_dict()
        value = {name: values[0] for name, values in row.items()}
        return UserFeatures(
            user_id=str(user_id),
            history=[str(i) for i in value.get("history") or []],
            prefixes=[str(p) for p in value.get("prefixes") or []],
            prefix_sid_version=value.get("sid_version"),
            prefix_model_version=value.get("model_version"),
            rationale=value.get("rationale"),
        )
