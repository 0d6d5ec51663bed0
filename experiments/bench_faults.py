"""Fault benchmark: what each failing part costs a request through the thin client (issue #19, serving half).

Builds a small deployment under --out: a tiny random model exported with export_triton_repository (SIDs of 3
levels of 32 codes, so adding the SID tokens takes seconds), the bundled data's features materialized by Feast
into a real Redis and into SQLite, a real Triton on stable ports. Then, for each fault, paced requests (one every
--interval-ms) go through ONE RecommenderClient per online store, built once with the default serving settings
(0.3 s budget, breakers of 3 failures / 5 s) and never rebuilt, while the fault is injected and repaired:

    inject -> requests (at least --requests, and for at least the breaker's reset + 1 s) -> repair
           -> requests until the client answers from Triton again

Per fault it records: requests sent, failed (an exception out of recommend() or an empty list), answered by a
fallback (source not triton*), p50 / p99 / max latency in ms, requests over the budget, and how long after the
repair the client was back to `triton` answers. Faults and repairs:
- none, with each online store;
- Triton killed (SIGKILL by PID), repaired by a new server on the same ports;
- Triton hung (SIGSTOP by PID), repaired by SIGCONT;
- Triton restarted: SIGTERM (graceful), nothing on the ports for --requests requests, a new server on the same ports;
- Redis killed (SIGKILL), repaired by a redis-server on the same port restored from a snapshot of the features;
- Redis hung (SIGSTOP by PID), repaired by SIGCONT;
- Redis restarted empty on its port (a fresh redis-server, no data), repaired the same way;
- SQLite online.db overwritten in place with garbage, repaired by a good copy moved into place;
- SQLite online.db deleted, for the running client and for a client started while it is missing; repaired by
  writing it back;
- malformed raw Triton requests (K=0, K=999, bad prefixes) released together with good client requests, so that
  Triton batches them together.
Triton is warmed after every start, outside the measured requests, as a service warms it before taking traffic;
after start-up the process freezes what it has built out of the garbage collector's way (gc.freeze), as a
service would (a full collection here stops every thread for ~0.6 s); GC pauses while measuring are recorded.
Writes faults.md and faults.json under --out and prints the table.

Usage: python -m experiments.bench_faults [--requests 200] [--interval-ms 20] [--repeat 1] [--out runs/bench_faults]
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stdout, suppress
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from redis import Redis

from components.config import Config, ModelConfig, ServingConfig, SidConfig, load_config
from components.data.readers import read_catalog, read_events
from components.features.repo import apply, materialize, repo_dir, write_sources
from components.local.procs import free_port
from components.local.redis import RedisServer, start_redis
from components.local.triton import TritonServer, start_triton
from components.logs import quiet_third_party
from components.runtime.backbone import load_backbone
from components.runtime.recommender import Recommender
from components.serving.client import RecommenderClient
from components.serving.export import export_triton_repository
from components.sids.build import build_sids
from components.training.vocab import add_sid_tokens

K = 10
TRITON_SOURCES = ("triton", "triton+prefixes")


def fill(cfg: Config) -> None:
    """Materialize the features into the deployment's online store (Feast's progress lines kept off stdout)."""
    with redirect_stdout(io.StringIO()):
        materialize(cfg)


class GcPauses:
    """Garbage-collector pauses in this process (they stop every thread, the client's included)."""

    def __init__(self) -> None:
        self.pauses_ms: list[float] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses_ms.append((time.perf_counter() - self._started) * 1000)

    def summary(self) -> dict:
        pauses = self.pauses_ms or [0.0]
        return {"collections": len(self.pauses_ms), "max_ms": round(max(pauses), 1)}


# -- the deployment -------------------------------------------------------------------------------------------
@dataclass
class Deployment:
    """Everything the faults act on; servers are stopped by PID in close()."""

    root: Path
    repo: Path
    ports: tuple[int, int, int]  # Triton http, grpc, metrics: stable, so a restarted server is found again
    triton: TritonServer | None
    redis: RedisServer | None
    redis_port: int
    users: list[str]  # users with a history in both online stores
    histories: dict[str, list[str]]  # each user's history as the online store holds it (the last max_history)
    model_name: str = "sidrec"
    generation: int = 0  # Redis data dirs: each restart gets a fresh (empty) one

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.ports[1]}"

    def config(self, store: str, **serving) -> Config:
        """The deployment config reading `store` ("redis" or "sqlite"), default serving settings unless given."""
        features = {"online_store": store, "redis_connection": f"127.0.0.1:{self.redis_port}"}
        return load_config(
            None,
            overrides={
                "run_root": str(self.root / f"run_{store}"),
                "features": features,
                "serving": {"triton_url": self.grpc_url, **serving},
            },
        )

    @property
    def online_db(self) -> Path:
        return repo_dir(self.config("sqlite")) / "data" / "online.db"

    def start_triton(self) -> None:
        """Triton on the deployment's ports, then warmed: the first inference of a fresh model is slow, and a
        service warms it before taking traffic."""
        self.triton = start_triton(self.repo, self.root / "triton", ports=self.ports)
        warm_triton(self.grpc_url, self.model_name, self.histories[self.users[0]])

    def kill_triton(self) -> None:
        """SIGKILL the tritonserver PID (the fault), then clear what it left: its python-backend stub (same process
        group, ours) and shared-memory regions."""
        assert self.triton is not None
        pid = self.triton.pid
        os.kill(pid, signal.SIGKILL)
        self.triton.process.wait(timeout=30)
        with suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)  # the group we started the server in: its orphaned stub
        self.triton.stop()  # the leader is gone: only removes the shared-memory regions it left

    def start_redis(self, filled: bool) -> None:
        """A new redis-server on the deployment's port: restored from the snapshot taken after the features were
        materialized (`filled`, an operator's repair), or empty."""
        self.generation += 1
        workdir = self.root / f"redis_{self.generation}"
        workdir.mkdir(parents=True, exist_ok=True)
        if filled:
            shutil.copyfile(self.root / "redis_snapshot.rdb", workdir / "dump.rdb")  # read by Redis at start
        self.redis = start_redis(workdir, port=self.redis_port)

    def snapshot_redis(self) -> None:
        """Redis's own SAVE of the materialized features, for the repairs (a re-materialization takes ~20 s here)."""
        assert self.redis is not None
        Redis(port=self.redis_port).save()
        shutil.copyfile(self.root / f"redis_{self.generation}" / "dump.rdb", self.root / "redis_snapshot.rdb")

    def kill_redis(self) -> None:
        assert self.redis is not None
        os.kill(self.redis.process.pid, signal.SIGKILL)
        self.redis.process.wait(timeout=30)
        self.redis = None

    def close(self) -> None:
        for server in (self.triton, self.redis):  # a hung server must wake up to stop
            if server is not None:
                with suppress(ProcessLookupError):
                    os.kill(server.process.pid, signal.SIGCONT)
        if self.triton is not None and self.triton.process.poll() is None:
            self.kill_triton()  # nothing to finish gracefully: SIGTERM would wait ~5 s for Triton's shutdown
        if self.redis is not None:
            self.redis.stop()


def build_deployment(root: Path, n_users: int = 200, n_items: int | None = None, codebook_size: int = 32) -> Deployment:
    """A tiny random model exported for Triton, features in Redis and SQLite, Triton warmed on stable ports.

    `n_items` keeps the most bought items only (and their events), and a smaller `codebook_size` means fewer SID
    tokens to add (the slowest step of the model's set-up): a smaller deployment for the CI test."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    base = load_config(None)
    catalog = read_catalog(base.path(base.data.catalog_uri))
    events = read_events(base.path(base.data.events_uri))
    if n_items is not None:
        keep = set(events.item_id.astype(str).value_counts().index[:n_items])
        catalog = catalog[catalog.item_id.astype(str).isin(keep)].reset_index(drop=True)
        events = events[events.item_id.astype(str).isin(keep)].reset_index(drop=True)
    sid_cfg = SidConfig(content_encoder="hashing", collab_dim=16, codebook_size=codebook_size)  # 3 x 32, not 3 x 256
    sidmap = build_sids(catalog, events, sid_cfg, root / "sids")
    model, tokenizer = load_backbone(ModelConfig(backbone="tiny", tiny_hidden_size=32, tiny_layers=1, tiny_heads=2))
    add_sid_tokens(model, tokenizer, sidmap)
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    sidmap.save(root / "model" / "sid_map")
    shutil.rmtree(root / "repo", ignore_errors=True)
    serving = ServingConfig(beam_size=20, kind="cpu")
    export_triton_repository(Recommender.from_pretrained(root / "model"), str(root / "repo"), serving)
    users = events.user_id.astype(str).drop_duplicates().head(n_users).tolist()
    ordered = events.sort_values("event_timestamp", kind="stable")
    by_user = ordered[ordered.user_id.astype(str).isin(set(users))].groupby(ordered.user_id.astype(str)).item_id
    histories = {u: [str(i) for i in items][-base.data.max_history :] for u, items in by_user}
    ports = (free_port(), free_port(), free_port())
    dep = Deployment(root, root / "repo", ports, None, None, free_port(), users, histories)
    triton_start = ThreadPoolExecutor(1, thread_name_prefix="bench-triton-start")
    started = triton_start.submit(dep.start_triton)  # its own process: starts while Feast fills the stores
    try:
        dep.start_redis(filled=False)
        for store in ("redis", "sqlite"):
            cfg = dep.config(store)
            write_sources(cfg, catalog, events, sidmap)
            apply(cfg)
            fill(cfg)
        dep.snapshot_redis()
        started.result()
    except BaseException:
        with suppress(Exception):
            started.result()  # so that close() stops a server still starting
        dep.close()
        raise
    finally:
        triton_start.shutdown()
    return dep


def triton_client(url: str):
    """A raw tritonclient with its own subchannel: gRPC otherwise shares a connection, and its reconnect back-off,
    between every channel of a process to one address (the client under test among them)."""
    import tritonclient.grpc as tc

    return tc.InferenceServerClient(url, channel_args=[("grpc.use_local_subchannel_pool", 1)])


def raw_request(client, model_name: str, history: list[str], k: int, prefixes: list[str] | None = None):
    """One tritonclient request as any caller could send it (no client-side checks): item ids, or the error."""
    import tritonclient.grpc as tc

    inputs = [tc.InferInput("HISTORY", [1, len(history)], "BYTES"), tc.InferInput("K", [1, 1], "INT32")]
    inputs[0].set_data_from_numpy(np.array([[h.encode() for h in history]], dtype=np.object_))
    inputs[1].set_data_from_numpy(np.array([[k]], dtype=np.int32))
    if prefixes:
        inputs.append(tc.InferInput("PREFIXES", [1, len(prefixes)], "BYTES"))
        inputs[2].set_data_from_numpy(np.array([[p.encode() for p in prefixes]], dtype=np.object_))
    try:
        out = client.infer(model_name, inputs, client_timeout=30)
        return [v.decode() for v in out.as_numpy("ITEM_IDS").reshape(-1)]
    except tc.InferenceServerException as exc:
        return exc


def batch_stats(url: str, model_name: str) -> tuple[int, int]:
    """(requests, model executions) Triton has counted for the model: their ratio is the mean batch size."""
    client = triton_client(url)
    try:
        stats = client.get_inference_statistics(model_name, as_json=True)["model_stats"][0]
        return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))
    finally:
        client.close()


def warm_triton(url: str, model_name: str, history: list[str], tries: int = 3, timeout: float = 60) -> None:
    """A few inferences straight to Triton so the model's first (slow) pass is not a user's request."""
    client = triton_client(url)
    deadline, answered = time.monotonic() + timeout, 0
    try:
        while answered < tries:
            answer = raw_request(client, model_name, history, K)
            if not isinstance(answer, Exception):
                answered += 1
            elif time.monotonic() > deadline:
                raise RuntimeError(f"Triton at {url} does not answer after start: {answer}")
            else:
                time.sleep(0.1)
    finally:
        client.close()


# -- traffic --------------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    at: float  # monotonic send time
    ms: float
    source: str | None  # None: failed
    error: str | None = None


def send(client: RecommenderClient, user: str) -> Outcome:
    """One recommend() call; an exception or an empty list is a failed request."""
    t0 = time.monotonic()
    try:
        recs = client.recommend(user, k=K)
    except Exception as exc:  # noqa: BLE001 - counted: the client promised never to raise for a dependency
        return Outcome(t0, (time.monotonic() - t0) * 1000, None, f"{type(exc).__name__}: {exc}")
    ms = (time.monotonic() - t0) * 1000
    if not recs:
        return Outcome(t0, ms, None, "empty list")
    return Outcome(t0, ms, recs[0].source)


class Traffic:
    """Requests through one client from a background thread, one every `interval_s` (what a service keeps
    receiving while a fault happens and is repaired)."""

    def __init__(self, client: RecommenderClient, users: list[str], interval_s: float) -> None:
        self.client, self.users, self.interval_s = client, users, interval_s
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="bench-traffic", daemon=True)

    def _run(self) -> None:
        i, next_at = 0, time.monotonic()
        while not self._stop.is_set():
            outcome = send(self.client, self.users[i % len(self.users)])
            with self._lock:
                self.outcomes.append(outcome)
            i += 1
            next_at += self.interval_s
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def count(self) -> int:
        with self._lock:
            return len(self.outcomes)

    def wait_for(self, n: int, timeout: float = 600) -> None:
        """Until `n` requests have been answered since the traffic started."""
        deadline = time.monotonic() + timeout
        while self.count() < n and time.monotonic() < deadline:
            time.sleep(0.005)

    def wait_for_source(self, source: str, since: float, timeout: float) -> float | None:
        """The send time of the first answer of `source` to a request sent after `since` (None: none in time)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                hits = [o.at for o in self.outcomes if o.at >= since and o.source == source]
            if hits:
                return hits[0]
            time.sleep(0.01)
        return None

    def wait_back_to_triton(self, since: float, timeout: float) -> float | None:
        """Seconds from `since` until the first Triton answer to a request sent after it (None: not within)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                back = [o for o in self.outcomes if o.at >= since and o.source in TRITON_SOURCES]
            if back:
                return back[0].at + back[0].ms / 1000 - since
            time.sleep(0.01)
        return None


# -- faults ---------------------------------------------------------------------------------------------------
@dataclass
class FaultResult:
    name: str
    store: str
    expected: list[str]  # the sources the client may answer with while the fault lasts
    during: list[Outcome]  # requests sent from the injection to the repair
    after: list[Outcome]  # requests sent from the repair until the client was back to Triton answers
    recovered_s: float | None  # from the end of the repair to the first Triton answer; None: not back
    notes: dict = field(default_factory=dict)
    injected: float = 0.0  # monotonic time the injection was complete (a kill had landed, a restart was up)
    repaired: float = float("inf")  # monotonic time the repair began

    @property
    def outcomes(self) -> list[Outcome]:
        return self.during + self.after

    @property
    def steady(self) -> list[Outcome]:
        """Requests sent and answered while the fault was fully in place: what the sources are checked on (a
        request still waiting when the repair begins may rightly be answered by the repaired part)."""
        return [o for o in self.during if o.at >= self.injected and o.at + o.ms / 1000 < self.repaired]


@dataclass
class Clients:
    """One long-lived client per online store: what a running service holds across every fault."""

    redis: RecommenderClient
    sqlite: RecommenderClient

    def of(self, store: str) -> RecommenderClient:
        return self.redis if store == "redis" else self.sqlite


def run_fault(
    name: str,
    store: str,
    expected: list[str],
    client: RecommenderClient,
    dep: Deployment,
    n: int,
    interval_s: float,
    inject: Callable[[], None],
    repair: Callable[[], None],
    settle_on: str | None = None,
) -> FaultResult:
    """inject -> requests (at least n, and for at least the breaker's reset time plus a second, so the breaker's
    trial requests during the fault are measured too) -> repair -> requests until the client answers from Triton
    again. `settle_on`: the fault's requests are counted from the first answer of that source (a restart's gap
    opens the breaker; what the restarted part answers shows once it has let a trial through)."""
    reset = client.serving.breaker_reset_s
    with Traffic(client, dep.users, interval_s) as traffic:
        injected_at = time.monotonic()
        inject()
        counted_from = inject_done = time.monotonic()
        if settle_on is not None:
            first = traffic.wait_for_source(settle_on, injected_at, 2 * reset + 30)
            counted_from = first if first is not None else time.monotonic()
        traffic.wait_for(traffic.count() + n)
        time.sleep(max(0.0, counted_from + reset + 1 - time.monotonic()))
        repaired_at = time.monotonic()
        repair()
        done_at = time.monotonic()
        back = traffic.wait_back_to_triton(done_at, 2 * reset + 30)
    outcomes = [o for o in traffic.outcomes if o.at >= injected_at]
    during = [o for o in outcomes if o.at < repaired_at]
    after = [o for o in outcomes if o.at >= repaired_at]
    notes = {"fault_s": round(repaired_at - injected_at, 2), "repair_s": round(done_at - repaired_at, 2)}
    recovered = None if back is None else round(back, 2)
    return FaultResult(name, store, expected, during, after, recovered, notes, inject_done, repaired_at)


def fault_none(dep: Deployment, clients: Clients, n: int, interval_s: float, store: str) -> FaultResult:
    with Traffic(clients.of(store), dep.users, interval_s) as traffic:
        traffic.wait_for(n)
    label = "Redis" if store == "redis" else "SQLite"
    return FaultResult(f"none ({label})", store, ["triton"], traffic.outcomes, [], 0.0)


def fault_triton_killed(dep: Deployment, clients: Clients, n: int, interval_s: float) -> FaultResult:
    """SIGKILL; the repair starts a new server on the same ports (and warms it), the client is not rebuilt."""
    return run_fault(
        "Triton killed (SIGKILL), restarted on its ports",
        "redis",
        ["popularity"],
        clients.redis,
        dep,
        n,
        interval_s,
        dep.kill_triton,
        dep.start_triton,
    )


def fault_triton_hung(dep: Deployment, clients: Clients, n: int, interval_s: float) -> FaultResult:
    assert dep.triton is not None
    pid = dep.triton.pid
    return run_fault(
        "Triton hung (SIGSTOP, then SIGCONT)",
        "redis",
        ["popularity"],
        clients.redis,
        dep,
        n,
        interval_s,
        lambda: os.kill(pid, signal.SIGSTOP),
        lambda: os.kill(pid, signal.SIGCONT),
    )


def fault_triton_restarted(dep: Deployment, clients: Clients, n: int, interval_s: float) -> FaultResult:
    """SIGTERM (a graceful stop: Triton finishes what it has, refuses the rest), nothing on the port for n
    requests, then a new server on the same ports; the client is not rebuilt. The fault lasts from the stop to the
    new server being ready and warm; the client must then come back by itself."""
    assert dep.triton is not None
    server = dep.triton

    def inject() -> None:
        server.stop()

    return run_fault(
        "Triton restarted (SIGTERM, started on its ports)",
        "redis",
        ["triton", "popularity"],
        clients.redis,
        dep,
        n,
        interval_s,
        inject,
        dep.start_triton,
    )


def fault_redis_down(dep: Deployment, clients: Clients, n: int, interval_s: float) -> FaultResult:
    return run_fault(
        "Redis killed (SIGKILL)",
        "redis",
        ["popularity"],
        clients.redis,
        dep,
        n,
        interval_s,
        dep.kill_redis,
        lambda: dep.start_redis(filled=True),
    )


def fault_redis_hung(dep: Deployment, clients: Clients, n: int, interval_s: float) -> FaultResult:
    """SIGSTOP: connections are accepted by the kernel, nothing answers (the online store's share of the budget
    runs out; redis-py's socket timeout frees the worker)."""
    assert dep.redis is not None
    pid = dep.redis.process.pid
    return run_fault(
        "Redis hung (SIGSTOP, then SIGCONT)",
        "redis",
        ["popularity"],
        clients.redis,
        dep,
        n,
        interval_s,
        lambda: os.kill(pid, signal.SIGSTOP),
        lambda: os.kill(pid, signal.SIGCONT),
    )


def fault_redis_empty(dep: Deployment, clients: Clients, n: int, interval_s: float) -> FaultResult:
    """A fresh redis-server on the same port with no data: the restart's gap opens the breaker (popularity), then
    the trial finds Redis up and empty (cold-start). The repair restarts it from the snapshot."""

    def restart(filled: bool) -> None:
        assert dep.redis is not None
        dep.redis.stop()
        dep.redis = None
        dep.start_redis(filled=filled)

    return run_fault(
        "Redis restarted empty (same port)",
        "redis",
        ["popularity", "cold-start"],
        clients.redis,
        dep,
        n,
        interval_s,
        lambda: restart(filled=False),
        lambda: restart(filled=True),
        settle_on="cold-start",
    )


def fault_sqlite_garbage(dep: Deployment, clients: Clients, n: int, interval_s: float) -> FaultResult:
    """online.db overwritten in place with garbage (what a corrupted file is to the open connection); the repair
    puts a good copy in its place as a new file (the reader notices the new file and connects to it)."""
    path = dep.online_db
    saved = path.read_bytes()

    def inject() -> None:
        with open(path, "r+b") as f:
            f.write(np.random.default_rng(0).bytes(len(saved)))

    def repair() -> None:
        tmp = path.with_suffix(".restore")
        tmp.write_bytes(saved)
        os.replace(tmp, path)

    return run_fault(
        "SQLite online.db overwritten with garbage",
        "sqlite",
        ["popularity"],
        clients.sqlite,
        dep,
        n,
        interval_s,
        inject,
        repair,
    )


def fault_sqlite_missing(
    dep: Deployment, clients: Clients, n: int, interval_s: float, fresh_client: bool
) -> FaultResult:
    """online.db deleted. The running client keeps reading the file it has open (stale features beat none) and
    connects to the new file once one is restored; a client started while it is missing (a new replica) falls
    back until the file is back. Neither may create an empty online.db meanwhile (recorded before the repair)."""
    path = dep.online_db
    saved = path.read_bytes()
    seen: dict[str, bool] = {}

    def repair() -> None:
        seen["file_created_while_missing"] = path.exists()
        path.write_bytes(saved)

    if not fresh_client:
        result = run_fault(
            "SQLite online.db deleted (running client)",
            "sqlite",
            ["triton"],
            clients.sqlite,
            dep,
            n,
            interval_s,
            path.unlink,
            repair,
        )
        result.notes.update(seen)
        return result
    path.unlink()
    client = RecommenderClient(clients.sqlite.cfg, url=dep.grpc_url)  # the running client's settings
    try:
        result = run_fault(
            "SQLite online.db deleted (client started after)",
            "sqlite",
            ["popularity"],
            client,
            dep,
            n,
            interval_s,
            lambda: None,
            repair,
        )
        result.notes.update(seen)
        return result
    finally:
        client.close()
        if not path.exists():
            path.write_bytes(saved)


BAD_REQUESTS = [(0, None), (999, None), (K, ["x_y"]), (K, ["1_2", "3"])]


def fault_malformed_batch(
    dep: Deployment, clients: Clients, n: int, interval_s: float, good: int = 2, bad: int = 2
) -> FaultResult:
    """Rounds of `good` client requests and `bad` malformed raw requests (K=0, K=999, a bad prefix, prefixes of
    mixed lengths) released together by a barrier, so that Triton's dynamic batcher puts them in the same batches
    (the mean batch size is recorded): each bad request must fail alone, every good one be answered by Triton.

    Triton batches only requests whose tensors have the same shapes (the exported config allows no ragged
    batches), so every request of a round carries a history of one length: the users with the most common one.
    Rounds are spaced so the offered load matches the other rows' (one request every `interval_s`)."""
    client = clients.redis
    length = Counter(len(dep.histories[u]) for u in dep.users).most_common(1)[0][0]
    same = [u for u in dep.users if len(dep.histories[u]) == length]
    bad_history = dep.histories[same[0]]
    rounds = max(1, n // good)
    barrier = threading.Barrier(good + bad)
    good_outcomes: list[Outcome] = []
    bad_answers: list[object] = []
    lock = threading.Lock()

    def good_sender(offset: int) -> None:
        for r in range(rounds):
            barrier.wait()
            outcome = send(client, same[(r * good + offset) % len(same)])
            with lock:
                good_outcomes.append(outcome)
            time.sleep(interval_s * good)

    def bad_sender(offset: int) -> None:
        raw = triton_client(dep.grpc_url)
        try:
            for r in range(rounds):
                k, prefixes = BAD_REQUESTS[(r * bad + offset) % len(BAD_REQUESTS)]
                barrier.wait()
                answer = raw_request(raw, dep.model_name, bad_history, k, prefixes)
                with lock:
                    bad_answers.append(answer)
                time.sleep(interval_s * good)
        finally:
            raw.close()

    before = batch_stats(dep.grpc_url, dep.model_name)
    threads = [threading.Thread(target=good_sender, args=(o,)) for o in range(good)]
    threads += [threading.Thread(target=bad_sender, args=(o,)) for o in range(bad)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = batch_stats(dep.grpc_url, dep.model_name)
    notes = {
        "bad_sent": len(bad_answers),
        "bad_rejected": sum(isinstance(a, Exception) for a in bad_answers),
        "bad_errors": sorted({str(a)[:100] for a in bad_answers if isinstance(a, Exception)}),
        "good_per_round": good,
        "bad_per_round": bad,
        "history_length": length,
        "mean_batch": round((after[0] - before[0]) / max(1, after[1] - before[1]), 2),
    }
    outcomes = sorted(good_outcomes, key=lambda o: o.at)
    return FaultResult("malformed requests in a concurrent batch", "redis", ["triton"], outcomes, [], 0.0, notes)


def settle(dep: Deployment, clients: Clients) -> bool:
    """Unmeasured requests until both clients answer from Triton again, so that each fault starts from a healthy
    deployment (the fault before may have left a breaker open). False when one never came back: a finding, noted
    on the next fault's row rather than ending the run."""
    for client in (clients.redis, clients.sqlite):
        deadline = time.monotonic() + 2 * client.serving.breaker_reset_s + 30
        while send(client, dep.users[0]).source not in TRITON_SOURCES:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
    return True


FAULTS: dict[str, Callable[[Deployment, Clients, int, float], FaultResult]] = {
    "none-redis": lambda d, c, n, i: fault_none(d, c, n, i, "redis"),
    "none-sqlite": lambda d, c, n, i: fault_none(d, c, n, i, "sqlite"),
    "triton-killed": fault_triton_killed,
    "triton-hung": fault_triton_hung,
    "triton-restarted": fault_triton_restarted,
    "redis-down": fault_redis_down,
    "redis-hung": fault_redis_hung,
    "redis-empty": fault_redis_empty,
    "sqlite-garbage": fault_sqlite_garbage,
    "sqlite-missing": lambda d, c, n, i: fault_sqlite_missing(d, c, n, i, fresh_client=False),
    "sqlite-missing-new-client": lambda d, c, n, i: fault_sqlite_missing(d, c, n, i, fresh_client=True),
    "malformed-batch": fault_malformed_batch,
}


# -- report ---------------------------------------------------------------------------------------------------
def summarize(result: FaultResult, budget_s: float) -> dict:
    """One row: counts over every request from the injection to the recovery, latency in ms."""
    outcomes = result.outcomes
    ms = np.array([o.ms for o in outcomes]) if outcomes else np.array([np.nan])
    sources = Counter(o.source or "failed" for o in outcomes)
    during_sources = sorted({o.source or "failed" for o in result.steady})
    return {
        "fault": result.name,
        "store": result.store,
        "sent": len(outcomes),
        "failed": sum(o.source is None for o in outcomes),
        "fallback": sum(o.source is not None and o.source not in TRITON_SOURCES for o in outcomes),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "max_ms": round(float(ms.max()), 1),
        "over_budget": int((ms > budget_s * 1000).sum()),
        "sources": dict(sources),
        "during_sources": during_sources,
        "expected_sources": result.expected,
        "as_expected": set(during_sources) <= set(result.expected),
        "recovered_s": result.recovered_s,
        "errors": sorted({o.error for o in outcomes if o.error})[:5],
        "slowest": [  # (seconds after the first request, ms, source): where the tail comes from
            (round(o.at - outcomes[0].at, 2), round(o.ms, 1), o.source)
            for o in sorted(outcomes, key=lambda o: -o.ms)[:3]
        ],
        **result.notes,
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| fault | answered by (during the fault) | sent | failed | fallback | p50 ms | p99 ms | max ms "
        "| > budget | back to triton after repair |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        back = "-" if r["recovered_s"] == 0 else ("never" if r["recovered_s"] is None else f"{r['recovered_s']} s")
        flag = "" if r["as_expected"] else " (unexpected)"
        lines.append(
            f"| {r['fault']} | {', '.join(r['during_sources'])}{flag} | {r['sent']} | {r['failed']} | {r['fallback']} "
            f"| {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} | {r['over_budget']} | {back} |"
        )
    return "\n".join(lines)


def aggregate(runs: list[dict]) -> dict:
    """One fault over several runs: counts summed, latencies and recovery as medians, the max as the max."""
    if len(runs) == 1:
        return runs[0]
    recovered = [r["recovered_s"] for r in runs]
    return {
        **runs[0],
        **{key: sum(r[key] for r in runs) for key in ("sent", "failed", "fallback", "over_budget")},
        **{key: round(float(np.median([r[key] for r in runs])), 1) for key in ("p50_ms", "p99_ms")},
        "max_ms": max(r["max_ms"] for r in runs),
        "during_sources": sorted({s for r in runs for s in r["during_sources"]}),
        "as_expected": all(r["as_expected"] for r in runs),
        "recovered_s": None if None in recovered else round(float(np.median(recovered)), 2),
        "runs": len(runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="requests per fault while it lasts")
    parser.add_argument("--interval-ms", type=float, default=20, help="one request every this many ms")
    parser.add_argument("--repeat", type=int, default=1, help="run the faults this many times (medians reported)")
    parser.add_argument("--out", default="runs/bench_faults")
    parser.add_argument("--faults", nargs="*", choices=sorted(FAULTS), help="a subset (default: all, in order)")
    args = parser.parse_args()
    quiet_third_party()
    out = Path(args.out).resolve()
    started = time.monotonic()
    load_before = os.getloadavg()
    dep = build_deployment(out / "deployment")
    built_s = time.monotonic() - started
    print(f"deployment built in {built_s:.0f} s: Triton gRPC {dep.grpc_url}, Redis port {dep.redis_port}", flush=True)
    clients = Clients(
        RecommenderClient(dep.config("redis"), url=dep.grpc_url),
        RecommenderClient(dep.config("sqlite"), url=dep.grpc_url),
    )
    serving = clients.redis.serving
    names = args.faults or list(FAULTS)
    runs: dict[str, list[dict]] = {}
    pauses = GcPauses()
    try:
        for client in (clients.redis, clients.sqlite):  # the clients' first requests (Feast's lazy set-up)
            for user in dep.users[:5]:
                client.recommend(user, K)
        # What a service does once started: everything built so far (here also the model, Feast's build) is
        # moved out of the collector's way; a full collection over it stops every thread for ~0.6 s here.
        gc.collect()
        gc.freeze()
        gc.callbacks.append(pauses)
        for run in range(args.repeat):
            for name in names:
                healthy = settle(dep, clients)
                result = FAULTS[name](dep, clients, args.requests, args.interval_ms / 1000)
                r = summarize(result, serving.budget_s)
                r["started_healthy"] = healthy  # False: a client had not come back from the fault before
                runs.setdefault(name, []).append(r)
                print(
                    f"[{run + 1}/{args.repeat}] {r['fault']}: {r['sent']} sent, {r['failed']} failed, "
                    f"{r['fallback']} fallback, p50 {r['p50_ms']} / p99 {r['p99_ms']} / max {r['max_ms']} ms, "
                    f"back after {r['recovered_s']} s",
                    flush=True,
                )
    finally:
        gc.callbacks[:] = [c for c in gc.callbacks if c is not pauses]
        clients.redis.close()
        clients.sqlite.close()
        dep.close()
    rows = [aggregate(runs[name]) for name in names if name in runs]
    command = (
        f"python -m experiments.bench_faults --requests {args.requests} --interval-ms {args.interval_ms:g} "
        f"--repeat {args.repeat} --out {args.out}" + (f" --faults {' '.join(args.faults)}" if args.faults else "")
    )
    report = {
        "command": command,
        "serving": {
            k: getattr(serving, k) for k in ("budget_s", "retries", "backoff_s", "breaker_failures", "breaker_reset_s")
        },
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "gc_pauses_while_measuring": pauses.summary(),
        "build_s": round(built_s, 1),
        "total_s": round(time.monotonic() - started, 1),
        "faults": rows,
        "runs": runs,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "faults.json").write_text(json.dumps(report, indent=2))
    text = table(rows)
    machine = report["machine"]
    (out / "faults.md").write_text(
        f"`{command}`; budget {serving.budget_s} s, breaker {serving.breaker_failures} failures / "
        f"{serving.breaker_reset_s} s; {machine['cpus']} CPUs, load average {machine['loadavg_before'][0]} -> "
        f"{machine['loadavg_after'][0]}; counts summed and latencies the median over {args.repeat} run(s)\n\n"
        f"{text}\n"
    )
    print(text)


if __name__ == "__main__":
    main()
