"""Unit tests of the thin client's guards, with fake dependencies (no Feast, no Triton): the circuit breaker's
states, the time budget, the bulkhead, k / user id validation, and the cold-start and popularity answers."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from components.config import load_config
from components.features.online import UserFeatures
from components.runtime.context import RequestContext
from components.serving.client import (
    FALLBACK_SHARE,
    BadRequest,
    CircuitBreaker,
    Dependency,
    RecommenderClient,
    Unavailable,
)

POPULAR = [f"i{n}" for n in range(20)]  # most popular first
CATALOG = (POPULAR, {i: (f"title {i}", f"<a_{n}><b_0><c_0>") for n, i in enumerate(POPULAR)})
HISTORY = ["i0", "i2"]


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeStore:
    """An online store whose answer (or failure, or delay) the test sets; counts its reads."""

    def __init__(self, history: list[str] | None = None, delay: float = 0.0, error: Exception | None = None):
        self.history, self.delay, self.error, self.reads = history or [], delay, error, 0

    def user(self, user_id: str) -> UserFeatures:
        self.reads += 1
        time.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return UserFeatures(user_id, list(self.history))


class PrefixStore(FakeStore):
    """A store whose user has think-ahead prefixes (well-formed or not)."""

    def __init__(self, prefixes: list[str]):
        super().__init__(HISTORY)
        self.prefixes = prefixes

    def user(self, user_id: str) -> UserFeatures:
        return UserFeatures(user_id, list(HISTORY), list(self.prefixes), "sid-v1", "m1", "because")


class FakeTriton:
    """A Triton call that answers the items after the history's, sleeps, or fails the first `fail` times."""

    def __init__(self, delay: float = 0.0, fail: int = 0):
        self.delay, self.fail, self.calls, self.timeouts = delay, fail, 0, []

    def __call__(self, user: UserFeatures, k: int, timeout: float, context=None):
        self.calls += 1
        self.context = context
        self.timeouts.append(timeout)
        time.sleep(self.delay)
        if self.calls <= self.fail:
            raise ConnectionError("connection refused")
        self.prefixes = list(user.prefixes)
        ids = [i for i in POPULAR if i not in user.history][-k:]
        return ids, [CATALOG[1][i][1] for i in ids], [1.0] * len(ids), False


def client(store: FakeStore, triton: FakeTriton, **serving) -> RecommenderClient:
    cfg = load_config(None, overrides={"serving": serving})
    return RecommenderClient(cfg, features=lambda: store, infer=triton, catalog=CATALOG)


# -- the circuit breaker --------------------------------------------------------------------------------------
def test_breaker_opens_after_n_consecutive_failures_only():
    clock = Clock()
    breaker = CircuitBreaker("dep", failures=3, reset_s=5.0, clock=clock)
    breaker.failure()
    breaker.failure()
    breaker.success()  # a success in between: the count starts again
    breaker.failure()
    breaker.failure()
    assert breaker.state == "closed" and breaker.allow()
    breaker.failure()
    assert breaker.state == "open" and not breaker.allow()


def test_breaker_lets_one_trial_through_after_the_reset_and_closes_on_its_success():
    clock = Clock()
    breaker = CircuitBreaker("dep", failures=2, reset_s=5.0, clock=clock)
    breaker.failure()
    breaker.failure()
    clock.now += 4.9
    assert not breaker.allow()
    clock.now += 0.1
    assert breaker.allow() and breaker.state == "half-open"
    assert not breaker.allow()  # one trial at a time: the others still fall back
    breaker.success()
    assert breaker.state == "closed" and breaker.allow() and breaker.allow()


def test_a_failed_trial_opens_the_breaker_for_a_full_reset_again():
    clock = Clock()
    breaker = CircuitBreaker("dep", failures=2, reset_s=5.0, clock=clock)
    breaker.failure()
    breaker.failure()
    clock.now += 5.0
    assert breaker.allow()
    breaker.failure()  # the trial failed: open again, from now
    assert breaker.state == "open"
    clock.now += 4.9
    assert not breaker.allow()
    clock.now += 0.1
    assert breaker.allow()


def test_the_client_stops_calling_a_dead_dependency_and_tries_it_again_after_the_reset():
    store, triton = FakeStore(HISTORY), FakeTriton(fail=10**6)
    c = client(store, triton, breaker_failures=3, breaker_reset_s=0.2, retries=1)
    for _ in range(2):  # one try and one retry each: 3 failures open the breaker during the second request
        assert {r.source for r in c.recommend("u", 5)} == {"popularity"}
    calls = triton.calls
    assert calls == 3 and c.breakers["triton"].state == "open"
    c.recommend("u", 5)
    assert triton.calls == calls  # open: not called at all
    time.sleep(0.25)
    triton.fail = 0
    assert {r.source for r in c.recommend("u", 5)} == {"triton"}  # the trial went through and closed it
    assert c.breakers["triton"].state == "closed"
    c.close()


# -- the time budget ------------------------------------------------------------------------------------------
def test_a_hung_triton_costs_at_most_the_budget_and_the_fallback_excludes_the_history():
    c = client(FakeStore(HISTORY), FakeTriton(delay=2.0), budget_s=0.3)
    t0 = time.monotonic()
    recs = c.recommend("u", 5)
    elapsed = time.monotonic() - t0
    assert elapsed < 0.3 + 0.1, elapsed  # the budget and a little scheduling, never Triton's 2 s
    assert [r.item_id for r in recs] == [i for i in POPULAR if i not in HISTORY][:5]
    assert {r.source for r in recs} == {"popularity"} and all(r.title for r in recs)
    c.close()


def test_triton_is_given_the_budget_less_what_the_store_took_and_the_fallback_share():
    triton = FakeTriton()
    c = client(FakeStore(HISTORY, delay=0.05), triton, budget_s=0.3)
    c.recommend("u", 5)
    assert 0.3 * (1 - FALLBACK_SHARE) - 0.05 - 0.05 < triton.timeouts[0] <= 0.3 * (1 - FALLBACK_SHARE) - 0.05
    c.close()


def test_a_hung_online_store_costs_at_most_its_share_then_its_breaker_answers_at_once():
    store, triton = FakeStore(HISTORY, delay=2.0), FakeTriton()
    c = client(store, triton, budget_s=0.3, breaker_failures=2)
    for _ in range(2):
        t0 = time.monotonic()
        recs = c.recommend("u", 5)
        assert time.monotonic() - t0 < 0.3 * 0.5 + 0.1
        assert [r.item_id for r in recs] == POPULAR[:5] and {r.source for r in recs} == {"popularity"}
    t0 = time.monotonic()
    c.recommend("u", 5)
    assert time.monotonic() - t0 < 0.05 and store.reads == 2 and triton.calls == 0
    c.close()


def test_a_failed_triton_call_is_retried_within_the_budget():
    triton = FakeTriton(fail=1)
    c = client(FakeStore(HISTORY), triton, retries=1, backoff_s=0.01)
    assert {r.source for r in c.recommend("u", 5)} == {"triton"} and triton.calls == 2
    c.close()


def test_a_call_refused_by_its_open_breaker_is_not_retried():
    """Retrying would only sleep the back-off before the same fallback."""
    triton = FakeTriton()
    c = client(FakeStore(HISTORY), triton, retries=3, backoff_s=0.2, breaker_failures=1, breaker_reset_s=60)
    c.breakers["triton"].failure()
    t0 = time.monotonic()
    assert {r.source for r in c.recommend("u", 5)} == {"popularity"}
    assert time.monotonic() - t0 < 0.1 and triton.calls == 0
    c.close()


def test_a_dependency_whose_workers_are_all_stuck_fails_at_once():
    """The bulkhead: calls that would queue behind stuck ones fail at once; the workers come back when the stuck
    calls return."""
    dependency = Dependency(CircuitBreaker("dep", failures=100, reset_s=5.0), workers=2)
    release = threading.Event()
    for _ in range(2):
        with pytest.raises(Unavailable, match="no answer within"):
            dependency.call(release.wait, 0.05)
    t0 = time.monotonic()
    with pytest.raises(Unavailable, match="all workers busy"):
        dependency.call(lambda: "never run", 5.0)
    assert time.monotonic() - t0 < 0.05
    release.set()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            assert dependency.call(lambda: "answered", 1.0) == "answered"
            break
        except Unavailable:  # the released workers are finishing
            time.sleep(0.01)
    else:
        pytest.fail("the dependency's workers never came back")
    dependency.close()


def test_no_time_left_is_not_counted_against_the_dependency():
    dependency = Dependency(CircuitBreaker("dep", failures=1, reset_s=5.0), workers=1)
    with pytest.raises(Unavailable, match="no time left"):
        dependency.call(lambda: None, 0.0)
    assert dependency.breaker.state == "closed"
    dependency.close()


# -- validation and the fallback answers ---------------------------------------------------------------------
@pytest.mark.parametrize("k", [0, -1, 51, 2.5, "10", True, None])
def test_k_outside_one_to_max_k_is_refused_with_one_line(k):
    store, triton = FakeStore(HISTORY), FakeTriton()
    c = client(store, triton)
    with pytest.raises(BadRequest) as info:
        c.recommend("u", k)
    assert str(info.value) == f"k must be an integer in [1, 50] (serving.max_k), not {k!r}"
    assert store.reads == 0 and triton.calls == 0  # refused before anything was called
    c.close()


@pytest.mark.parametrize("user_id", ["", "   ", None])
def test_an_empty_user_id_is_refused(user_id):
    c = client(FakeStore(HISTORY), FakeTriton())
    with pytest.raises(BadRequest, match="user_id must be a non-empty string"):
        c.recommend(user_id, 5)
    c.close()


def test_k_at_the_bounds_and_a_numpy_integer_are_served():
    import numpy as np

    c = client(FakeStore([]), FakeTriton())
    assert len(c.recommend("u", 1)) == 1 and len(c.recommend("u", np.int64(3))) == 3
    assert len(c.recommend("u", 50)) == len(POPULAR)  # the catalog is smaller than k: all of it
    c.close()


def test_a_user_without_history_gets_the_most_popular_items_without_asking_triton():
    store, triton = FakeStore([]), FakeTriton()
    c = client(store, triton)
    recs = c.recommend("new-user", 5)
    assert [r.item_id for r in recs] == POPULAR[:5] and {r.source for r in recs} == {"cold-start"}
    assert store.reads == 1 and triton.calls == 0
    c.close()


def test_an_online_store_error_falls_back_to_popularity_and_a_reader_that_failed_to_build_is_built_later():
    store = FakeStore(HISTORY)
    attempts = []

    def factory():
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("registry not reachable")
        return store

    c = RecommenderClient(load_config(None), features=factory, infer=FakeTriton(), catalog=CATALOG)
    recs = c.recommend("u", 5)  # built now, inside the request
    assert {r.source for r in recs} == {"triton"} and len(attempts) == 2
    store.error = ConnectionError("redis down")
    recs = c.recommend("u", 5)
    assert [r.item_id for r in recs] == POPULAR[:5] and {r.source for r in recs} == {"popularity"}
    c.close()


@pytest.mark.parametrize("prefixes", [["x_y"], ["1_2", "3"], ["1_2_3"], [""]])
def test_malformed_prefixes_are_dropped_before_triton_instead_of_failing_the_request(prefixes):
    """Triton would refuse the request on every try (counting against its breaker): decode without them."""
    triton = FakeTriton()
    c = client(PrefixStore(prefixes), triton)
    recs = c.recommend("u", 5)
    assert {r.source for r in recs} == {"triton"} and triton.prefixes == [] and triton.calls == 1
    assert all(r.reason is None for r in recs)
    c.close()


def test_well_formed_prefixes_are_sent_as_stored():
    triton = FakeTriton()
    c = client(PrefixStore(["1_2", "3_4"]), triton)
    c.recommend("u", 5)
    assert triton.prefixes == ["1_2", "3_4"]
    c.close()


def test_each_request_sends_its_time_and_the_users_last_event_time_as_context():
    class ClockedStore(FakeStore):
        def user(self, user_id: str) -> UserFeatures:
            return replace(super().user(user_id), last_event_unix=1_700_000_000)

    triton = FakeTriton()
    cfg = load_config(None)
    c = RecommenderClient(
        cfg, features=lambda: ClockedStore(HISTORY), infer=triton, catalog=CATALOG, wall_clock=lambda: 1_700_086_400.7
    )
    c.recommend("u", k=3)
    assert triton.context == RequestContext(1_700_086_400, 1_700_000_000)  # now, and the gap's start from Feast
    c.recommend("u", k=3, at_unix=1_800_000_000)  # a replayed request keeps its own time
    assert triton.context == RequestContext(1_800_000_000, 1_700_000_000)


def test_recommend_by_hand_with_nothing_set_up_is_one_line_naming_the_fix(tmp_path, capsys, monkeypatch, free_port):
    """The CLI: a service may answer [], a person at the shell gets an error that says what to run first."""
    import yaml

    from components.cli import app

    monkeypatch.delenv("SIDREC_DEBUG", raising=False)
    config = tmp_path / "deploy.yaml"
    settings = {"run_root": str(tmp_path / "runs"), "serving": {"triton_url": f"127.0.0.1:{free_port()}"}}
    config.write_text(yaml.safe_dump(settings))
    with pytest.raises(SystemExit) as exit_:
        app(["serving", "recommend", "u1", "--k", "5", "--config", str(config)], prog_name="sidrec")
    assert exit_.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert lines[-1].startswith("error: no recommendations for 'u1'") and "make demo" in lines[-1], lines
    assert captured.out == ""
