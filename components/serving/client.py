"""The thin recommendation client: online features -> Triton -> items, within one time budget.

recommend(user_id, k) reads the user's history, think-ahead prefixes and their versions from the Feast online
store in one feature-service round trip, asks Triton (gRPC or HTTP), and maps the answer to items. It never fails
because a dependency is down, hung or empty:
- every request has a total budget (serving.budget_s, fallback included); each dependency call gets what is left
  of it and runs in a worker thread, so a hung store or server costs at most the budget, never its socket timeout;
- a circuit breaker per dependency opens after serving.breaker_failures consecutive failures, so a dead one is
  not waited for on every request; after serving.breaker_reset_s one trial request goes through;
- an unknown user, or an online store that came back empty, gets a cold-start answer (the most popular items);
  Triton down: the most popular items the user does not have yet. `source` says which answer a list is.
k is validated against serving.max_k with a clear message.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from components.config import Config
from components.errors import SidrecError
from components.features.online import OnlineFeatures, UserFeatures
from components.features.repo import repo_dir

log = logging.getLogger(__name__)


@dataclass
class Recommendation:
    item_id: str
    title: str
    score: float
    sid: str
    source: str  # "triton" | "triton+prefixes" | "popularity" (Triton unavailable) | "cold-start"
    reason: str | None = None  # the think-ahead rationale behind the prefixes that shaped this list


class BadRequest(SidrecError):
    """A request the client refuses before calling anything (k out of range, empty user id)."""


class Unavailable(RuntimeError):
    """A dependency failed, timed out, or its breaker is open."""


class CircuitBreaker:
    """closed -> open after `failures` consecutive failures -> one trial after `reset_s` (half-open) -> closed on
    success, open again on failure. Thread-safe."""

    def __init__(self, name: str, failures: int, reset_s: float) -> None:
        self.name, self.failures, self.reset_s = name, failures, reset_s
        self._count, self._opened_at, self._trial = 0, None, False
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            if self._opened_at is None:
                return True
            if not self._trial and time.monotonic() - self._opened_at >= self.reset_s:
                self._trial = True  # half-open: this caller is the trial
                return True
            return False

    def success(self) -> None:
        with self._lock:
            self._count, self._opened_at, self._trial = 0, None, False

    def failure(self) -> None:
        with self._lock:
            self._count += 1
            if self._trial or self._count >= self.failures:
                if self._opened_at is None or self._trial:
                    log.warning("%s: circuit open after %d failure(s)", self.name, self._count)
                self._opened_at, self._trial = time.monotonic(), False

    @property
    def state(self) -> str:
        with self._lock:
            return "closed" if self._opened_at is None else ("half-open" if self._trial else "open")


class RecommenderClient:
    def __init__(self, cfg: Config, url: str | None = None, protocol: str | None = None) -> None:
        self.cfg = cfg
        self.serving = cfg.serving
        self.url = url or cfg.serving.triton_url
        self.protocol = protocol or cfg.serving.protocol
        self._features: OnlineFeatures | None = None
        self._client = None
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="sidrec-client")
        self.breakers = {
            name: CircuitBreaker(name, cfg.serving.breaker_failures, cfg.serving.breaker_reset_s)
            for name in ("online store", "triton")
        }
        self._popular, self._titles = self._load_catalog_view(cfg)
        try:  # registry and feature service loaded now, outside any request's budget
            self._features = OnlineFeatures(cfg)
            self._features.service()
        except Exception as exc:  # noqa: BLE001 - the store may be down now; requests will fall back
            log.warning("online store not ready at start (%s): requests fall back until it is", exc)

    @staticmethod
    def _load_catalog_view(cfg: Config) -> tuple[list[str], dict[str, tuple[str, str]]]:
        """Popularity ranking, titles and SIDs from the materialized item features: the fallbacks' source."""
        path = Path(repo_dir(cfg)) / "data" / "item_features.parquet"
        if not path.exists():
            log.warning("%s missing: fallbacks will be empty until features are materialized", path)
            return [], {}
        frame = pd.read_parquet(path).sort_values("popularity", ascending=False, kind="stable")
        ids = frame["item_id"].astype(str)
        return ids.tolist(), dict(zip(ids, zip(frame["title"], frame["sid"], strict=True), strict=True))

    # -- dependencies, each within the time left ---------------------------------------------------------------
    def _call(self, breaker: str, fn, timeout: float):
        """fn() in a worker thread, at most `timeout` seconds, through the dependency's breaker."""
        guard = self.breakers[breaker]
        if timeout <= 0 or not guard.allow():
            raise Unavailable(f"{breaker}: {'no time left' if timeout <= 0 else 'circuit open'}")
        future = self._pool.submit(fn)
        try:
            result = future.result(timeout=timeout)
        except FutureTimeout as exc:
            guard.failure()
            raise Unavailable(f"{breaker}: no answer within {timeout * 1000:.0f} ms") from exc
        except Exception as exc:  # any client library's own error types
            guard.failure()
            raise Unavailable(f"{breaker}: {type(exc).__name__}: {exc}") from exc
        guard.success()
        return result

    def _user(self, user_id: str) -> UserFeatures:
        if self._features is None:
            self._features = OnlineFeatures(self.cfg)
        return self._features.user(user_id)

    def _triton(self, timeout: float):
        if self._client is None:
            if self.protocol == "grpc":
                import tritonclient.grpc as tc

                self._client = (tc, tc.InferenceServerClient(self.url))
            else:
                import tritonclient.http as tc

                self._client = (
                    tc,
                    tc.InferenceServerClient(self.url, connection_timeout=timeout, network_timeout=timeout),
                )
        return self._client

    def _infer(self, user: UserFeatures, k: int, timeout: float):
        tc, client = self._triton(timeout)
        inputs = [tc.InferInput("HISTORY", [1, len(user.history)], "BYTES"), tc.InferInput("K", [1, 1], "INT32")]
        inputs[0].set_data_from_numpy(np.array([[h.encode() for h in user.history]], dtype=np.object_))
        inputs[1].set_data_from_numpy(np.array([[k]], dtype=np.int32))
        if user.prefixes:
            prefixes = tc.InferInput("PREFIXES", [1, len(user.prefixes)], "BYTES")
            prefixes.set_data_from_numpy(np.array([[p.encode() for p in user.prefixes]], dtype=np.object_))
            version = tc.InferInput("PREFIXES_VERSION", [1, 1], "BYTES")
            version.set_data_from_numpy(np.array([[(user.prefix_sid_version or "").encode()]], dtype=np.object_))
            inputs += [prefixes, version]
        kwargs = {"client_timeout": timeout} if self.protocol == "grpc" else {}
        result = client.infer(self.serving.model_name, inputs, **kwargs)
        ids = [v.decode() for v in result.as_numpy("ITEM_IDS").reshape(-1)]
        sids = [v.decode() for v in result.as_numpy("SIDS").reshape(-1)]
        used = bool(result.as_numpy("PREFIXES_USED").reshape(-1)[0])
        return ids, sids, result.as_numpy("SCORES").reshape(-1).tolist(), used

    # -- answers -----------------------------------------------------------------------------------------------
    def popularity(self, k: int, exclude: set[str] | None = None, source: str = "popularity") -> list[Recommendation]:
        exclude = exclude or set()
        items = [i for i in self._popular if i not in exclude][:k]
        return [Recommendation(i, self._titles[i][0], 0.0, self._titles[i][1], source) for i in items]

    def recommend(self, user_id: str, k: int = 10) -> list[Recommendation]:
        """Top-k items for a user, within serving.budget_s whatever is down (module docstring)."""
        if not isinstance(k, int) or not 1 <= k <= self.serving.max_k:
            raise BadRequest(f"k must be an integer in [1, {self.serving.max_k}] (serving.max_k), not {k!r}")
        if not str(user_id).strip():
            raise BadRequest("user_id must not be empty")
        deadline = time.monotonic() + self.serving.budget_s
        try:
            user = self._call("online store", lambda: self._user(str(user_id)), self._left(deadline, reserve=0.5))
        except Unavailable as exc:
            log.warning("%s: popularity fallback", exc)
            return self.popularity(k)
        if not user.known:  # unknown user, or an online store that came back empty
            return self.popularity(k, source="cold-start")
        delay = self.serving.backoff_s
        for attempt in range(self.serving.retries + 1):
            try:
                ids, sids, scores, used = self._call(
                    "triton", lambda: self._infer(user, k, self._left(deadline)), self._left(deadline)
                )
                break
            except Unavailable as exc:
                last = exc
                if attempt == self.serving.retries or self._left(deadline) <= delay:
                    log.warning("%s: popularity fallback", last)
                    return self.popularity(k, set(user.history))
                time.sleep(delay)
                delay *= 2
        source = "triton+prefixes" if used else "triton"
        reason = user.rationale if used else None
        return [
            Recommendation(i, self._titles.get(i, ("", ""))[0], float(s), sid, source, reason)
            for i, sid, s in zip(ids, sids, scores, strict=True)
        ]

    def _left(self, deadline: float, reserve: float = 0.0) -> float:
        """Seconds left of the budget, keeping `reserve` (a share of the budget) for the steps after."""
        return deadline - time.monotonic() - reserve * self.serving.budget_s

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
