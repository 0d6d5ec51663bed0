"""The thin recommendation client: online features -> Triton -> items, within one time budget.

recommend(user_id, k) reads the user's history, think-ahead prefixes and their versions from the Feast online
store in one feature-service round trip, asks Triton (gRPC or HTTP), and maps the answer to items. It never fails
because a dependency is down, hung, restarted or empty (docs/faults.md measures each case):
- every request has a total budget (serving.budget_s, fallback included): the online store gets at most half of
  it, Triton what is left less FALLBACK_SHARE of the budget, kept so the fallback answer still lands in time;
- each dependency call runs in that dependency's own small pool of workers (a bulkhead): a hung online store
  never takes the workers Triton calls need, and when all of a dependency's workers are stuck the call fails at
  once instead of queueing behind them;
- a circuit breaker per dependency opens after serving.breaker_failures consecutive failures, so a dead one is
  not waited for on every request; after serving.breaker_reset_s one trial request goes through;
- a Triton call that failed by itself is tried again (serving.retries, after serving.backoff_s) while the budget
  lasts; one refused by its open breaker, or that ran out of time, is not;
- the gRPC channel has its own connection and reconnects within a second (GRPC_CHANNEL_ARGS), so a Triton
  restarted on the same port answers the breaker's first trial; the online store reconnects after an error
  (features.online.OnlineFeatures);
- an unknown user, or an online store that came back empty, gets a cold-start answer (the most popular items);
  Triton down: the most popular items the user does not have yet. `source` says which answer a list is.
k is validated against serving.max_k with a clear message.
"""

from __future__ import annotations

import logging
import numbers
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from components.config import Config
from components.errors import SidrecError
from components.features.online import OnlineFeatures, UserFeatures
from components.features.repo import repo_dir
from components.runtime.context import RequestContext
from components.runtime.language import decode_prefix

log = logging.getLogger(__name__)

ONLINE_SHARE = 0.5  # at most this share of the budget for the online store: Triton needs the rest
FALLBACK_SHARE = 0.15  # kept back from Triton's share: the fallback answer and a loaded machine's thread wake-ups
WORKERS = 16  # per dependency: the most calls to one dependency in flight at once (the bulkhead)
# Triton's gRPC channel: its own subchannel (gRPC otherwise shares one connection, and its reconnect back-off,
# between every channel of the process to the same address) and a reconnect back-off of 0.1 s growing to 1 s
# instead of gRPC's 1 s growing to 120 s, under which a Triton restarted on the same port stays unreachable for
# minutes. Message sizes as tritonclient's own defaults.
GRPC_CHANNEL_ARGS = [
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.max_send_message_length", 2**31 - 1),
    ("grpc.max_receive_message_length", 2**31 - 1),
]


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
    """A dependency failed, timed out, is saturated, or its breaker is open. `retryable`: only a call that failed
    by itself is worth another try; with the breaker open, no time left or every worker busy, a retry would only
    sleep its back-off before falling back."""

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class Features(Protocol):
    """What the client needs of an online store (features.online.OnlineFeatures; a fake in unit tests)."""

    def user(self, user_id: str) -> UserFeatures: ...


# (item ids, SIDs, scores, prefixes used) of one Triton answer, from (user, k, timeout in s, request context)
InferFn = Callable[[UserFeatures, int, float, RequestContext | None], tuple[list[str], list[str], list[float], bool]]


class CircuitBreaker:
    """closed -> open after `failures` consecutive failures -> one trial after `reset_s` (half-open) -> closed on
    success, open again on failure. Thread-safe; `clock` is injectable so tests need not sleep.

    Every allow() that returns True must be followed by success() or failure(): a trial that is never resolved
    would keep the breaker half-open, refusing every call."""

    def __init__(self, name: str, failures: int, reset_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.name, self.failures, self.reset_s, self.clock = name, failures, reset_s, clock
        self._count, self._opened_at, self._trial = 0, None, False
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            if self._opened_at is None:
                return True
            if not self._trial and self.clock() - self._opened_at >= self.reset_s:
                self._trial = True  # half-open: this caller is the trial
                return True
            return False

    def success(self) -> None:
        with self._lock:
            if self._opened_at is not None:
                log.info("%s: circuit closed again", self.name)
            self._count, self._opened_at, self._trial = 0, None, False

    def failure(self) -> None:
        with self._lock:
            self._count += 1
            if self._trial or self._count >= self.failures:
                if self._opened_at is None:  # logged once per outage, not at every failed trial
                    log.warning("%s: circuit open after %d failure(s)", self.name, self._count)
                self._opened_at, self._trial = self.clock(), False

    @property
    def state(self) -> str:
        with self._lock:
            return "closed" if self._opened_at is None else ("half-open" if self._trial else "open")


class Dependency:
    """One dependency's breaker and workers (a bulkhead): calls run in its own pool, at most `workers` at once.

    A call that would have to queue behind `workers` stuck calls fails at once (and counts as a failure): a
    queued call would spend its budget waiting for a worker, not for the dependency."""

    def __init__(self, breaker: CircuitBreaker, workers: int = WORKERS) -> None:
        self.breaker = breaker
        self.name = breaker.name
        self._slots = threading.BoundedSemaphore(workers)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"sidrec-{self.name.replace(' ', '-')}")

    def call(self, fn: Callable[[], Any], timeout: float) -> Any:
        """fn() in a worker, at most `timeout` seconds, through the breaker; Unavailable when it cannot answer."""
        if timeout <= 0:  # not the dependency's fault: the budget went elsewhere
            raise Unavailable(f"{self.name}: no time left")
        if not self.breaker.allow():
            raise Unavailable(f"{self.name}: circuit open")
        if not self._slots.acquire(blocking=False):
            self.breaker.failure()
            raise Unavailable(f"{self.name}: all workers busy with calls that have not returned")

        def run() -> Any:
            try:
                return fn()
            finally:
                self._slots.release()  # when the call returns, not when its caller stopped waiting

        try:
            future = self._pool.submit(run)
        except RuntimeError as exc:  # the pool was shut down (client closed)
            self._slots.release()
            self.breaker.failure()
            raise Unavailable(f"{self.name}: {exc}") from exc
        try:
            result = future.result(timeout=timeout)
        except FutureTimeout as exc:
            self.breaker.failure()
            raise Unavailable(f"{self.name}: no answer within {timeout * 1000:.0f} ms") from exc
        except Exception as exc:  # any client library's own error types
            self.breaker.failure()
            raise Unavailable(f"{self.name}: {type(exc).__name__}: {exc}", retryable=True) from exc
        self.breaker.success()
        return result

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class RecommenderClient:
    def __init__(
        self,
        cfg: Config,
        url: str | None = None,
        protocol: str | None = None,
        *,
        features: Callable[[], Features] | None = None,
        infer: InferFn | None = None,
        catalog: tuple[list[str], dict[str, tuple[str, str]]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """`features` (a factory of the online store reader), `infer` (the Triton call) and `catalog` (popularity
        ranking, titles and SIDs) default to the deployment's own; unit tests pass fakes. `clock` times budgets,
        `wall_clock` (unix seconds) is a request's time in its runtime context."""
        self.cfg = cfg
        self.serving = cfg.serving
        self.url = url or cfg.serving.triton_url
        self.protocol = protocol or cfg.serving.protocol
        self._make_features = features or (lambda: OnlineFeatures(cfg))
        self._features: Features | None = None
        self._features_lock = threading.Lock()
        self._infer_fn = infer or self._infer
        self._client = None
        self._client_lock = threading.Lock()
        self.clock, self.wall_clock = clock, wall_clock
        self.dependencies = {
            name: Dependency(CircuitBreaker(name, cfg.serving.breaker_failures, cfg.serving.breaker_reset_s, clock))
            for name in ("online store", "triton")
        }
        self.breakers = {name: d.breaker for name, d in self.dependencies.items()}
        self._popular, self._titles = catalog or self._load_catalog_view(cfg)
        sids = [sid for _, sid in islice(self._titles.values(), 1)]
        self._levels = sids[0].count("<") if sids else None  # SID levels: a prefix must be shorter
        try:  # the reader (registry, feature service) built now, outside any request's budget
            self._features = self._make_features()
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
    def _user(self, user_id: str) -> UserFeatures:
        with self._features_lock:  # one reader built at a time, even when the first calls come together
            if self._features is None:
                self._features = self._make_features()
            features = self._features
        return features.user(user_id)

    def _triton(self, timeout: float):
        with self._client_lock:
            if self._client is None:
                if self.protocol == "grpc":
                    import tritonclient.grpc as tc

                    self._client = (tc, tc.InferenceServerClient(self.url, channel_args=GRPC_CHANNEL_ARGS))
                else:
                    import tritonclient.http as tc

                    budget = self.serving.budget_s  # fixed per client: the whole budget, never one request's rest
                    self._client = (
                        tc,
                        tc.InferenceServerClient(self.url, connection_timeout=budget, network_timeout=budget),
                    )
            return self._client

    def _infer(self, user: UserFeatures, k: int, timeout: float, context: RequestContext | None = None):
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
        if context is not None:  # the model adds its context line when it was trained with one (runtime.context)
            for name, value in (("REQUEST_UNIX", context.at_unix), ("LAST_EVENT_UNIX", context.last_event_unix or 0)):
                tensor = tc.InferInput(name, [1, 1], "INT64")
                tensor.set_data_from_numpy(np.array([[value]], dtype=np.int64))
                inputs.append(tensor)
        kwargs = {"client_timeout": timeout} if self.protocol == "grpc" else {}
        result = client.infer(self.serving.model_name, inputs, **kwargs)
        ids = [v.decode() for v in result.as_numpy("ITEM_IDS").reshape(-1)]
        sids = [v.decode() for v in result.as_numpy("SIDS").reshape(-1)]
        used = bool(result.as_numpy("PREFIXES_USED").reshape(-1)[0])
        return ids, sids, result.as_numpy("SCORES").reshape(-1).tolist(), used

    # -- answers -----------------------------------------------------------------------------------------------
    def popularity(self, k: int, exclude: set[str] | None = None, source: str = "popularity") -> list[Recommendation]:
        exclude = exclude or set()
        items = list(islice((i for i in self._popular if i not in exclude), k))
        return [Recommendation(i, self._titles[i][0], 0.0, self._titles[i][1], source) for i in items]

    def recommend(self, user_id: str, k: int = 10, at_unix: int | None = None) -> list[Recommendation]:
        """Top-k items for a user, within serving.budget_s whatever is down (module docstring). The request's
        runtime context is its time (`at_unix`, default now) and the user's last event time from the online store."""
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= self.serving.max_k:
            raise BadRequest(f"k must be an integer in [1, {self.serving.max_k}] (serving.max_k), not {k!r}")
        if user_id is None or not str(user_id).strip():
            raise BadRequest(f"user_id must be a non-empty string, not {user_id!r}")
        k, user_id = int(k), str(user_id)
        deadline = self.clock() + self.serving.budget_s
        online, triton = self.dependencies["online store"], self.dependencies["triton"]
        try:
            user = online.call(lambda: self._user(user_id), self._left(deadline, reserve=1 - ONLINE_SHARE))
        except Unavailable as exc:
            log.debug("%s: popularity fallback", exc)
            return self.popularity(k)
        if not user.known:  # unknown user, or an online store that came back empty
            return self.popularity(k, source="cold-start")
        user = self._without_bad_prefixes(user)
        context = RequestContext(int(self.wall_clock() if at_unix is None else at_unix), user.last_event_unix)
        delay = self.serving.backoff_s
        for attempt in range(self.serving.retries + 1):
            timeout = self._left(deadline, reserve=FALLBACK_SHARE)
            try:
                ids, sids, scores, used = triton.call(lambda t=timeout: self._infer_fn(user, k, t, context), timeout)
                break
            except Unavailable as exc:
                last_try = attempt == self.serving.retries or not exc.retryable
                if last_try or self._left(deadline, reserve=FALLBACK_SHARE) <= 2 * delay:
                    log.debug("%s: popularity fallback", exc)
                    return self.popularity(k, set(user.history))
                time.sleep(delay)
                delay *= 2
        source = "triton+prefixes" if used else "triton"
        reason = user.rationale if used else None
        return [
            Recommendation(i, self._titles.get(i, ("", ""))[0], float(s), sid, source, reason)
            for i, sid, s in zip(ids, sids, scores, strict=True)
        ]

    def _without_bad_prefixes(self, user: UserFeatures) -> UserFeatures:
        """The user with their think-ahead prefixes dropped when Triton would refuse them (not "12_7"-style codes,
        mixed lengths, as long as a whole SID): such a request would fail on every try, count against Triton's
        breaker and, repeated, open it for every user. Without prefixes it is fully decoded, as stale ones are."""
        if not user.prefixes:
            return user
        try:
            depths = {len(decode_prefix(p)) for p in user.prefixes}
        except ValueError:
            depths = set()
        if len(depths) == 1 and (self._levels is None or depths.pop() < self._levels):
            return user
        log.warning(
            "user %s: think-ahead prefixes %s are malformed: decoding without them", user.user_id, user.prefixes
        )
        return replace(user, prefixes=[], prefix_sid_version=None, rationale=None)

    def _left(self, deadline: float, reserve: float = 0.0) -> float:
        """Seconds left of the budget, keeping `reserve` (a share of the budget) for the steps after."""
        return deadline - self.clock() - reserve * self.serving.budget_s

    def close(self) -> None:
        for dependency in self.dependencies.values():
            dependency.close()
        with self._client_lock:
            if self._client is not None:
                self._client[1].close()
                self._client = None
