"""`sidrec demo`: the production pipeline end to end on the bundled data, in one process.

The same step functions the Airflow DAGs run, in DAG order: ingest + validation -> SIDs -> Feast -> training ->
gate -> export to Triton -> offline think-ahead -> online store; then a real Triton server answers a few
recommendation requests through the thin client, and is stopped.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from components.config import PROJECT_ROOT, load_config
from components.orchestration import steps

console = Console()


def run_demo(config: str | None = None, quick: bool = False) -> dict:
    logging.basicConfig(level=logging.WARNING)
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

    stage("ingest + validate", steps.ingest)
    stage("SID build/refresh", steps.sid_refresh)
    stage("Feast apply + materialize", steps.features_materialize)
    trained = stage("train", steps.train)
    gate = stage("evaluate + gate", steps.evaluate_and_gate, model_uri=trained["model_uri"])
    if not gate["promoted"]:
        console.print(
            f"[yellow]gate refused the candidate ({gate['candidate']:.4f} <= {gate['bar']:.4f}); "
            "promoting it anyway for the demo (ops action `promote`)[/yellow]"
        )
        stage("promote (manual)", steps.promote, reason="demo")
    stage("export to Triton", steps.export)
    stage("think-ahead", steps.think_ahead)
    stage("publish prefixes", steps.publish_prefixes)
    report["recommendations"] = _serve_and_ask(cfg)
    out = Path(cfg.path(cfg.run_root)) / "demo_report.json"
    out.write_text(json.dumps(report, indent=2, default=str))
    _print_summary(report, gate, trained.get("ranker_cross_validated"))
    console.print(f"report: {out}")
    return report


def _serve_and_ask(cfg) -> dict:
    from dataclasses import asdict

    import pandas as pd

    from components.serving.client import RecommenderClient
    from components.serving.triton_launcher import start_triton

    prefixes_dir = Path(cfg.path(cfg.run_root)) / "prefixes"
    users = pd.concat([pd.read_parquet(p) for p in sorted(prefixes_dir.glob("prefixes-*.parquet"))])["user_id"]
    answers = {}
    with console.status("[bold]Triton[/bold] starting ..."):
        server = start_triton(cfg.path(cfg.serving.model_repository), Path(cfg.path(cfg.run_root)) / "triton")
    try:
        client = RecommenderClient(cfg, url=server.grpc_url, protocol="grpc")
        for user in users.head(3):
            t0 = time.perf_counter()
            recs = client.recommend(user, k=5)
            answers[user] = {"ms": round(1000 * (time.perf_counter() - t0), 1), "items": [asdict(r) for r in recs]}
    finally:
        server.stop()
    return answers


def _print_summary(report: dict, gate: dict, ranker: dict | None = None) -> None:
    table = Table(
        title="sidrec demo: holdout (valid sample) NDCG@10 / HR@10",
        caption="SIDs from all events (a deployment's map), not the benchmark's protocol: README 'Quality' has that",
    )
    table.add_column("model")
    table.add_column("HR@10")
    table.add_column("NDCG@10")
    for name, m in gate["scores"].items():
        table.add_row(name, f"{m['HR@10']:.4f}", f"{m['NDCG@10']:.4f}")
    if ranker:  # served (serving.ranker); learnt on the valid rows, so scored by cross-validation on all of them
        name = "candidate + ranker (5-fold CV, all valid rows)"
        table.add_row(name, f"{ranker['HR@10']:.4f}", f"{ranker['NDCG@10']:.4f}")
    console.print(table)
    for user, answer in report["recommendations"].items():
        console.print(f"[bold]{user}[/bold] ({answer['ms']} ms, {answer['items'][0]['source']}):")
        for item in answer["items"]:
            console.print(f"   {item['item_id']:>6}  {item['sid']}  {item['title'][:70]}")
