"""`sidrec demo`: the production pipeline end to end on the bundled data, in one process.

The same step functions the Airflow DAGs run, in DAG order, each handed the versions the step before it produced:
ingest + validation -> SIDs -> Feast -> examples -> training -> gate -> export to Triton -> offline think-ahead ->
online store; then a real Triton server answers a few recommendation requests through the thin client, and is
stopped.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from components.config import PROJECT_ROOT, load_config
from components.local.triton import start_triton
from components.logs import quiet_third_party
from components.pipeline import steps
from components.serving.client import RecommenderClient

console = Console()


def run_demo(config: str | None = None, quick: bool = False) -> dict:
    logging.basicConfig(level=logging.WARNING)
    quiet_third_party()
    config = config or str(PROJECT_ROOT / "configs" / "demo.yaml")
    overrides = {"train": {"max_steps": 60}, "reasoning": {"max_users": 20}} if quick else None
    cfg = load_config(config, overrides)
    report: dict[str, dict] = {}

    def stage(name: str, fn, **kwargs) -> dict:
        t0 = time.perf_counter()
        with console.status(f"[bold]{name}[/bold] ..."):
            result = fn(config, overrides, **kwargs)
        result = {**result, "seconds": round(time.perf_counter() - t0, 1)}
        report[name] = result
        console.print(f"[green]✓[/green] {name} ({result['seconds']} s)")
        return result

    curated = stage("ingest + validate", steps.ingest)["curated_version"]
    sids = stage("SID build/refresh", steps.sid_refresh, curated_version=curated)["sid_version"]
    stage("Feast apply + materialize", steps.features_materialize, curated_version=curated, sid_version=sids)
    examples = stage("point-in-time examples", steps.build_examples, curated_version=curated, sid_version=sids)
    trained = stage(
        "train", steps.train, examples_version=examples["examples_version"], sid_version=sids, curated_version=curated
    )
    gate = stage(
        "evaluate + gate",
        steps.evaluate_and_gate,
        candidate_version=trained["candidate_version"],
        examples_version=examples["examples_version"],
    )
    model_version = gate.get("model_version")
    if not gate["promoted"]:
        console.print(
            f"[yellow]gate refused the candidate ({'; '.join(gate['reasons'])}); promoting it anyway "
            "for the demo (ops action `sidrec pipeline promote`)[/yellow]"
        )
        model_version = stage(
            "promote (manual)", steps.promote, candidate_version=trained["candidate_version"], reason="demo"
        )["model_version"]
    stage("export to Triton", steps.export, model_version=model_version)
    examples_version = examples["examples_version"]
    reasoner = stage(
        "reasoning model",
        steps.train_reasoner,
        model_version=model_version,
        examples_version=examples_version,
        curated_version=curated,
    )
    reasoning_gate = stage(
        "reasoning gate",
        steps.gate_reasoner,
        reasoning_version=reasoner["reasoning_version"],
        model_version=model_version,
        examples_version=examples_version,
    )
    if reasoning_gate["passed"]:
        shard = stage(
            "think-ahead",
            steps.think_ahead,
            reasoning_version=reasoner["reasoning_version"],
            curated_version=curated,
            examples_version=examples_version,
        )
        stage(
            "publish prefixes",
            steps.publish_prefixes,
            shard_versions=[shard["shard_version"]],
            reasoning_version=reasoner["reasoning_version"],
            curated_version=curated,
            sid_version=sids,
        )
    else:
        stage(
            "clear prefixes",
            steps.clear_prefixes,
            curated_version=curated,
            sid_version=sids,
            reason=reasoning_gate["reason"],
        )
    report["recommendations"] = _serve_and_ask(cfg)
    out = Path(cfg.path(cfg.run_root)) / "demo_report.json"
    out.write_text(json.dumps(report, indent=2, default=str))
    _print_summary(report, gate, trained.get("ranker_cross_validated"), reasoning_gate, reasoner.get("coverage"))
    console.print(f"report: {out}")
    return report


def _serve_and_ask(cfg) -> dict:
    import pandas as pd

    curated = Path(cfg.path(cfg.run_root)) / "curated" / "events.parquet"
    events = pd.read_parquet(curated).sort_values("event_timestamp")
    users = events["user_id"].drop_duplicates(keep="last").iloc[::-1].reset_index(drop=True)  # most recent first
    answers = {}
    with console.status("[bold]Triton[/bold] starting ..."):
        server = start_triton(cfg.path(cfg.serving.model_repository), Path(cfg.path(cfg.run_root)) / "triton")
    try:
        client = RecommenderClient(cfg, url=server.grpc_url, protocol="grpc")
        client.recommend(users.iloc[0], k=5)  # the first request loads the model's kernels: not a user's
        for user in users.head(3):
            t0 = time.perf_counter()
            recs = client.recommend(user, k=5)
            answers[user] = {"ms": round(1000 * (time.perf_counter() - t0), 1), "items": [asdict(r) for r in recs]}
        client.close()
    finally:
        server.stop()
    return answers


def _print_summary(
    report: dict, gate: dict, ranker: dict | None = None, reasoning: dict | None = None, coverage: dict | None = None
) -> None:
    table = Table(
        title=f"sidrec demo: the gate's holdout ({gate['rows']} users' last purchases), HR@10 / NDCG@10",
        caption="SIDs from all events (a deployment's map), not the benchmark's protocol: see docs/benchmark.md",
    )
    table.add_column("model")
    table.add_column("HR@10")
    table.add_column("NDCG@10")
    for name, m in gate["scores"].items():
        table.add_row(name, f"{m['HR@10']:.4f}", f"{m['NDCG@10']:.4f}")
    if ranker:  # served (serving.ranker); learnt on the select rows, so scored by cross-validation on them
        table.add_row(
            "candidate + ranker (5-fold CV, select rows)", f"{ranker['HR@10']:.4f}", f"{ranker['NDCG@10']:.4f}"
        )
    console.print(table)
    if coverage:
        console.print(f"rationales: {coverage['coverage']:.0%} with a concrete reason, e.g. {coverage['samples'][0]}")
    if reasoning:
        think, full = reasoning["think_ahead"], reasoning["full_decoding"]
        console.print(
            f"reasoning gate ({'passed' if reasoning['passed'] else 'refused'}): think-ahead HR@10 "
            f"{think['HR@10']:.4f} at {think['online_ms_per_request']:.1f} ms vs full decoding {full['HR@10']:.4f} at "
            f"{full['online_ms_per_request']:.1f} ms per request; {think['offline_ms_per_user']:.0f} ms/user offline"
        )
    for user, answer in report["recommendations"].items():
        first = answer["items"][0] if answer["items"] else {"source": "none"}
        console.print(f"[bold]{user}[/bold] ({answer['ms']} ms, {first['source']}):")
        for item in answer["items"]:
            console.print(f"   {item['item_id']:>6}  {item['sid']}  {item['title'][:70]}")
        if first.get("reason"):
            console.print(f"   why: {first['reason'][:150]}")
