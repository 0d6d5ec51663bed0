"""The thin client while parts of a real deployment fail (issue #19): the fault benchmark's faults with a few
requests each (experiments/bench_faults.py builds the deployment and injects them; docs/faults.md has the numbers).

One client per online store is built once and kept through every fault, as a running service keeps it: after
each repair it must come back to Triton answers by itself, Triton included after a restart on the same ports.
Every request must be answered (no exception, no empty list) by the path the fault leaves, within BOUND_S.

BOUND_S is 1.5 s although the budget is 0.3 s: CI is a loaded 2-core machine, where Triton starting next to the
requests (the repair of a kill) or other jobs delay a thread's wake-up by tens to hundreds of ms. The budget itself
is checked tightly by the unit tests (test_serving_client.py, fake dependencies); this bound still fails on what the
faults used to cost: redis-py's 1-4 s reconnect back-offs, a hung call without a deadline, gRPC's reconnect
back-off after a restart (seconds to minutes), a queue behind stuck workers.
"""

from __future__ import annotations

import pytest

from components.serving.client import RecommenderClient
from experiments.bench_faults import (
    Clients,
    FaultResult,
    build_deployment,
    fault_malformed_batch,
    fault_none,
    fault_redis_down,
    fault_redis_empty,
    fault_redis_hung,
    fault_sqlite_garbage,
    fault_sqlite_missing,
    fault_triton_hung,
    fault_triton_killed,
    send,
)

pytestmark = pytest.mark.integration

BOUND_S = 1.5
RESET_S = 1.0  # the breakers' reset, shorter than the default 5 s so that each fault lasts ~2 s
N = 6  # requests per fault (each fault also lasts at least RESET_S + 1 s: a breaker trial is among them)
INTERVAL_S = 0.02
RECOVERY_S = RESET_S + 5  # from the end of a repair to the first Triton answer


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """A tiny model in a real Triton on stable ports, the 800 most bought items' features in Redis and SQLite
    (SIDs of 3 x 12 codes: fewer tokens to add to the tokenizer, the slowest step of the set-up)."""
    dep = build_deployment(tmp_path_factory.mktemp("faults"), n_users=60, n_items=800, codebook_size=12)
    clients = Clients(
        RecommenderClient(dep.config("redis", breaker_reset_s=RESET_S), url=dep.grpc_url),
        RecommenderClient(dep.config("sqlite", breaker_reset_s=RESET_S), url=dep.grpc_url),
    )
    try:
        for client in (clients.redis, clients.sqlite):  # Feast's lazy set-up, outside the measured requests
            for user in dep.users[:3]:
                client.recommend(user, 10)
        yield dep, clients
    finally:
        clients.redis.close()
        clients.sqlite.close()
        dep.close()


def answered_in_time(result: FaultResult) -> set[str]:
    """Every request answered within BOUND_S; the sources answered while the fault was fully in place."""
    assert result.outcomes, result.name
    failed = [o.error for o in result.outcomes if o.source is None]
    assert not failed, f"{result.name}: {len(failed)} failed: {failed[:3]}"
    slow = [round(o.ms) for o in result.outcomes if o.ms > BOUND_S * 1000]
    assert not slow, f"{result.name}: requests over {BOUND_S} s: {slow} ms"
    return {o.source for o in result.steady}


def describe(result: FaultResult) -> str:
    """The fault's requests, for a failing assertion: (seconds after the first, ms, source) each."""
    first = result.outcomes[0].at if result.outcomes else 0.0
    rows = [(round(o.at - first, 2), round(o.ms), o.source) for o in result.outcomes]
    return f"{result.name}: recovered after {result.recovered_s} s, notes {result.notes}, requests {rows}"


def back_to_triton(result: FaultResult, clients: Clients, store: str, dep) -> None:
    assert result.recovered_s is not None and result.recovered_s <= RECOVERY_S, describe(result)
    for user in dep.users[:3]:  # and it stays back
        assert send(clients.of(store), user).source == "triton"


def test_without_faults_triton_answers_within_the_budget(deployment):
    dep, clients = deployment
    for store in ("redis", "sqlite"):
        result = fault_none(dep, clients, N, INTERVAL_S, store)
        assert answered_in_time(result) == {"triton"}, describe(result)


def test_triton_killed_falls_back_and_a_server_restarted_on_its_ports_is_used_again(deployment):
    dep, clients = deployment
    old_pid = dep.triton.pid
    result = fault_triton_killed(dep, clients, N, INTERVAL_S)  # the repair starts Triton on the same ports
    assert dep.triton.pid != old_pid and dep.triton.grpc_url == dep.grpc_url
    assert answered_in_time(result) == {"popularity"}, describe(result)
    back_to_triton(result, clients, "redis", dep)


def test_a_hung_triton_costs_at_most_the_budget_and_is_used_again_when_it_wakes(deployment):
    dep, clients = deployment
    result = fault_triton_hung(dep, clients, N, INTERVAL_S)
    assert answered_in_time(result) == {"popularity"}, describe(result)
    budget_ms = clients.redis.serving.budget_s * 1000
    waited = max(o.ms for o in result.steady)
    assert budget_ms / 2 < waited < BOUND_S * 1000, describe(result)  # it waited for the hung server, then fell back
    slow = sum(o.ms > budget_ms / 2 for o in result.steady)  # the breaker's opening failures and its trials only
    assert slow <= clients.redis.serving.breaker_failures + 2, describe(result)
    back_to_triton(result, clients, "redis", dep)


def test_redis_killed_hung_and_restarted_empty_on_its_port(deployment):
    dep, clients = deployment
    down = fault_redis_down(dep, clients, N, INTERVAL_S)  # repaired: Redis restarted from its snapshot
    assert answered_in_time(down) == {"popularity"}, describe(down)
    back_to_triton(down, clients, "redis", dep)
    hung = fault_redis_hung(dep, clients, N, INTERVAL_S)  # repaired: SIGCONT
    assert answered_in_time(hung) == {"popularity"}, describe(hung)
    assert max(o.ms for o in hung.steady) > 0.3 * 1000 / 4, describe(hung)  # it waited for the store's share
    back_to_triton(hung, clients, "redis", dep)
    empty = fault_redis_empty(dep, clients, N, INTERVAL_S)  # repaired: restarted from the snapshot
    sources = answered_in_time(empty)
    assert "cold-start" in sources and sources <= {"popularity", "cold-start"}, describe(empty)  # gap: popularity
    back_to_triton(empty, clients, "redis", dep)


def test_a_broken_or_missing_sqlite_file_falls_back_and_a_restored_one_is_read_again(deployment):
    dep, clients = deployment
    garbage = fault_sqlite_garbage(dep, clients, N, INTERVAL_S)  # repaired by a new file moved into place
    assert answered_in_time(garbage) == {"popularity"}, describe(garbage)
    back_to_triton(garbage, clients, "sqlite", dep)
    deleted = fault_sqlite_missing(dep, clients, N, INTERVAL_S, fresh_client=False)
    assert answered_in_time(deleted) == {"triton"}, describe(deleted)  # the running client reads its open file
    assert deleted.notes["file_created_while_missing"] is False
    back_to_triton(deleted, clients, "sqlite", dep)
    new = fault_sqlite_missing(dep, clients, N, INTERVAL_S, fresh_client=True)
    assert answered_in_time(new) == {"popularity"}, describe(new)
    assert new.notes["file_created_while_missing"] is False
    assert new.recovered_s is not None and new.recovered_s <= RECOVERY_S


def test_malformed_requests_in_a_batch_fail_alone(deployment):
    dep, clients = deployment
    result = fault_malformed_batch(dep, clients, 4 * N, INTERVAL_S)
    assert answered_in_time(result) == {"triton"}, describe(result)  # every good request of the batches served
    assert result.notes["bad_sent"] == result.notes["bad_rejected"] > 0
    assert result.notes["mean_batch"] > 1  # they did share batches
