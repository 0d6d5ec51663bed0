"""The README's headline quality table reads from the committed benchmark run, docs/results/benchmark/metrics.json:
every row is a row of that run's test split with its numbers, and the table shows the generative model alone
(its list is the final list) beside the rows that put a learnt ranker after it."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "docs" / "results" / "benchmark" / "metrics.json"


def readme_rows() -> dict[str, list[str]]:
    """{row name: its other cells} of the README table whose header starts with "| test |"."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| test |"))
    rows: dict[str, list[str]] = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[re.sub(r"\*\*", "", cells[0]).strip()] = [c.replace("*", "") for c in cells[1:]]
    return rows


def test_readme_table_is_the_committed_run():
    run = json.loads(RUN.read_text())
    rows = readme_rows()
    assert rows, "README has no '| test |' table"
    for name, cells in rows.items():
        assert name in run["test"], f"README row {name!r} is not a test row of {RUN.relative_to(ROOT)}"
        metrics = run["test"][name]
        for column, key in zip(cells[:3], ("HR@10", "NDCG@10", "SE(HR@10)"), strict=True):
            assert column == f"{metrics[key]:.4f}", f"{name}: README {key} {column} vs run {metrics[key]:.4f}"
    kinds = {run["meta"]["row_kinds"][name] for name in rows}
    assert {"generative only", "generative + learnt ranker", "baseline"} <= kinds
    assert len(run["meta"]["config"]["train"]) and not run["meta"]["valid_only"]


def test_the_committed_run_ships_its_sid_maps():
    """docs/results/benchmark/sid_maps holds the two maps the run trained and scored on (maps differ across
    machines; `sidrec benchmark --sid-maps docs/results/benchmark/sid_maps` reruns on them)."""
    from components.sids.sidmap import SidMap

    meta = json.loads(RUN.read_text())["meta"]
    maps = RUN.parent / "sid_maps"
    for stage, key in (("train", "sid_map"), ("final", "sid_map_test")):
        sidmap = SidMap.load(maps / stage)
        assert sidmap.version == meta[key]["version"], f"{maps / stage}: {sidmap.version} vs the run's {key}"
        assert sidmap.codebooks is not None  # train.sid_init: codebook starts the SID rows from them
        record = json.loads((maps / stage / "metrics.json").read_text())
        assert record["embedding_config_hash"] == meta[key]["embedding_config_hash"]
