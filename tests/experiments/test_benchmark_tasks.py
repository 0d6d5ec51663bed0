"""The benchmark's task graph: each run starts once its own dependencies are done, and a free worker takes it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from experiments.benchmark import Task, in_stage_order, run_tasks


def _stamp(job: tuple) -> Path:
    """Sleep, then write when it started and ended (runs in a worker process)."""
    path, seconds = job
    start = time.time()
    time.sleep(seconds)
    Path(path).write_text(json.dumps({"start": start, "end": time.time()}))
    return Path(path)


def _fail(job: tuple) -> Path:
    raise RuntimeError(f"run {job[0]} failed")


def test_in_one_process_tasks_run_in_list_order_once_their_dependencies_are_done():
    order: list[str] = []

    def work(name: str, skip: bool = False):
        def start():
            order.append(name)
            return None if skip else (lambda job: order.append(f"{job[0]} ran"), (name,))

        return start

    tasks = [
        Task("retrain0", work("retrain0"), ("select0",)),  # listed first, ready only after select0
        Task("select0", work("select0")),
        Task("align0", work("align0", skip=True), ("select0",)),  # nothing to run (a kept model): still done
        Task("final_align0", work("final_align0"), ("retrain0", "align0")),
    ]
    run_tasks(tasks, parallel=1)
    assert order == [
        "select0",
        "select0 ran",
        "retrain0",
        "retrain0 ran",
        "align0",
        "final_align0",
        "final_align0 ran",
    ]


def test_a_seeds_next_run_fills_the_free_worker_while_another_seeds_run_goes_on(tmp_path):
    stamps = {name: tmp_path / f"{name}.json" for name in ("select0", "select1", "retrain1")}
    tasks = [
        Task("select0", lambda: (_stamp, (stamps["select0"], 6.0))),
        Task("select1", lambda: (_stamp, (stamps["select1"], 0.2))),
        Task("retrain1", lambda: (_stamp, (stamps["retrain1"], 0.2)), ("select1",)),
    ]
    run_tasks(tasks, parallel=2)
    times = {name: json.loads(path.read_text()) for name, path in stamps.items()}
    assert times["retrain1"]["start"] >= times["select1"]["end"]  # after its own dependency
    assert times["retrain1"]["end"] < times["select0"]["end"]  # not after the other seed's longer run


def test_a_failing_run_stops_the_graph_with_its_error_and_nothing_after_it_runs():
    ran: list[str] = []
    tasks = [
        Task("select0", lambda: (_fail, ("select0",))),
        Task("retrain0", lambda: ran.append("retrain0"), ("select0",)),
    ]
    with pytest.raises(RuntimeError, match="run select0 failed"):
        run_tasks(tasks, parallel=1)
    assert ran == []


def test_unknown_dependencies_and_cycles_are_refused():
    with pytest.raises(ValueError, match="unknown dependencies"):
        run_tasks([Task("retrain0", lambda: None, ("select9",))])
    with pytest.raises(ValueError, match="a cycle"):
        run_tasks([Task("a", lambda: None, ("b",)), Task("b", lambda: None, ("a",))])


def test_stage_order_puts_every_selection_run_before_any_alignment_or_retrain():
    names = ["select0", "align0", "retrain0", "final_align0", "select1", "align1", "retrain1", "final_align1"]
    tasks = [Task(name, lambda: None) for name in names]
    assert [t.name for t in in_stage_order(tasks)] == [
        "select0",
        "select1",
        "align0",
        "align1",
        "retrain0",
        "retrain1",
        "final_align0",
        "final_align1",
    ]
