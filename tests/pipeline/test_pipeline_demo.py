"""`sidrec demo`, the README's main command, end to end on a tiny deployment: every stage in DAG order, a real
Triton server answering three users through the client, the printed table and the report file."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from pipeline_deployment import write_tiny_deployment

from components.demo import run_demo

pytestmark = pytest.mark.slow

STAGES = [
    "ingest + validate",
    "SID build/refresh",
    "Feast apply + materialize",
    "point-in-time examples",
    "train",
    "evaluate + gate",
]


def test_demo_runs_every_stage_and_serves_three_users_through_triton(tmp_path, capsys):
    config = write_tiny_deployment(tmp_path, seed=5, max_steps=30, eval_examples=30)
    report = run_demo(str(config))
    names = list(report)
    assert names[: len(STAGES)] == STAGES, names
    assert "export to Triton" in names and "reasoning gate" in names
    assert ("publish prefixes" in names) != ("clear prefixes" in names)  # the reasoning gate decides which
    assert all(report[name]["seconds"] >= 0 for name in names if name != "recommendations")
    answers = report["recommendations"]
    catalog = set(pd.read_json(tmp_path / "raw" / "catalog.jsonl.gz", lines=True, dtype={"item_id": str}).item_id)
    assert len(answers) == 3
    for user, answer in answers.items():
        items = [item["item_id"] for item in answer["items"]]
        assert len(items) == 5 and len(set(items)) == 5 and set(items) <= catalog, (user, answer)
        assert answer["items"][0]["source"].startswith("triton"), answer  # served by the model, not a fallback
    # the served ranking stage reads content neighbours (serving.ranker_content): their index went to Triton
    assert list((tmp_path / "triton_repo").glob("*/*/ranker/content.npz"))
    saved = json.loads((tmp_path / "runs" / "demo_report.json").read_text())
    assert list(saved) == names and saved["recommendations"].keys() == answers.keys()
    out = capsys.readouterr().out
    assert "sidrec demo: the gate's holdout" in out and "report:" in out
    assert all(user in out for user in answers)
