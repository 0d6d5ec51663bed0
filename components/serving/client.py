"""The thin recommendation client: online features -> Triton -> item ids and titles.

recommend(user_id, k) reads the user's history and think-ahead prefixes from the Feast online store, calls the
Triton model (gRPC or HTTP) with a timeout and retries with exponential backoff, and maps the result to items.
When Triton or the online store cannot be reached it degrades instead of failing: the answer comes from the
popularity ranking (minus what the user already has), and says so in `source`. An unknown user is an error.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from components.config import Config
from components.features.online import OnlineFeatures, UnknownUserError

log = logging.getLogger(__name__)


@dataclass
class Recommendation:
    item_id: str
    title: str
    score: float
    sid: str
    source: str  # "triton" | "triton+prefixes" | "popularity"


class ServingUnavailable(RuntimeError):
    """Triton did not answer within the retries."""


class RecommenderClient:
    def __init__(self, cfg: Config, url: str | None = None, protocol: str | None = None) -> None:
        self.cfg = cfg
        self.url = url or cfg.serving.triton_url
        self.protocol = protocol or cfg.serving.protocol
        self.features = OnlineFeatures(cfg)
        self._client = None
        self._popular, self._titles = self._load_catalog_view(cfg)

    @staticmethod
    def _load_catalog_view(cfg: Config) -> tuple[list[str], dict[str, tuple[str, str]]]:
        """Popularity ranking and titles from the materialized item features (the fallback's source)."""
        from components.features.repo import repo_dir

        path = Path(repo_dir(cfg)) / "data" / "item_features.parquet"
        if not path.exists():
            return [], {}
        frame = pd.read_parquet(path).sort_values("popularity", ascending=False, kind="stable")
        return frame["item_id"].astype(str).tolist(), dict(
            zip(frame["item_id"].astype(str), zip(frame["title"], frame["sid"], strict=True), strict=True)
        )

    def _triton(self):
        if self._client is None:
            if self.protocol == "grpc":
                import tritonclient.grpc as tc
            else:
                import tritonclient.http as tc
            self._client = (tc, tc.InferenceServerClient(self.url))
        return self._client

    def _infer(self, history: list[str], k: int, prefixes: list[tuple[int, int]] | None):
        tc, client = self._triton()
        inputs = [tc.InferInput("HISTORY", [1, len(history)], "BYTES"), tc.InferInput("K", [1, 1], "INT32")]
        inputs[0].set_data_from_numpy(np.array([[h.encode() for h in history]], dtype=np.object_))
        inputs[1].set_data_from_numpy(np.array([[k]], dtype=np.int32))
        if prefixes:
            inputs.append(tc.InferInput("PREFIXES", [1, len(prefixes)], "BYTES"))
            inputs[2].set_data_from_numpy(np.array([[f"{a}_{b}".encode() for a, b in prefixes]], dtype=np.object_))
        kwargs = {"client_timeout": self.cfg.serving.timeout_s} if self.protocol == "grpc" else {}
        result = client.infer(self.cfg.serving.model_name, inputs, **kwargs)
        ids = [v.decode() for v in result.as_numpy("ITEM_IDS").reshape(-1)]
        sids = [v.decode() for v in result.as_numpy("SIDS").reshape(-1)]
        return ids, sids, result.as_numpy("SCORES").reshape(-1).tolist()

    def _call_with_retries(self, history, k, prefixes):
        delay = self.cfg.serving.backoff_s
        for attempt in range(self.cfg.serving.retries + 1):
            try:
                return self._infer(history, k, prefixes)
            except Exception as exc:  # tritonclient raises its own exception types per protocol
                log.warning("triton attempt %d failed: %s", attempt + 1, exc)
                self._client = None  # reconnect on the next attempt
                if attempt == self.cfg.serving.retries:
                    raise ServingUnavailable(f"Triton at {self.url} unavailable: {exc}") from exc
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def popularity(self, k: int, exclude: set[str] | None = None) -> list[Recommendation]:
        exclude = exclude or set()
        items = [i for i in self._popular if i not in exclude][:k]
        return [Recommendation(i, self._titles[i][0], 0.0, self._titles[i][1], "popularity") for i in items]

    def recommend(self, user_id: str, k: int = 10) -> list[Recommendation]:
        """Top-k items for a known user (UnknownUserError otherwise), never failing on a server outage."""
        if k < 1:
            raise ValueError("k must be >= 1")
        try:
            history = self.features.user_history(user_id)
            prefixes = self.features.user_prefixes(user_id)
        except UnknownUserError:
            raise
        except Exception as exc:  # online store down: no history, degrade to popularity
            log.warning("online store unavailable (%s): popularity fallback", exc)
            return self.popularity(k)
        try:
            ids, sids, scores = self._call_with_retries(history, k, prefixes)
        except ServingUnavailable as exc:
            log.warning("%s: popularity fallback", exc)
            return self.popularity(k, set(history))
        source = "triton+prefixes" if prefixes else "triton"
        return [
            Recommendation(i, self._titles.get(i, ("", ""))[0], float(s), sid, source)
            for i, sid, s in zip(ids, sids, scores, strict=True)
        ]
