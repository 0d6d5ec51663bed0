"""Benchmark: think-ahead prefixes + runtime completion vs full decoding, online cost and HR@10, side by side.

The served model and its reasoning model are the ones a pipeline run published (by default `sidrec demo`'s:
runs/demo/artifacts, the latest `model` and `reasoning_model` versions). The reasoning model writes each held-out
row's prefixes offline (reasoning.thinkahead.think_ahead, timed as offline cost); then, in the same rounds and
interleaved, the served recommender answers every row by full decoding and by completing the row's prefixes:
- "decode": the constrained beam alone (Recommender.generate), where think-ahead saves its steps;
- "served": Recommender.recommend with the served stages (the ranking stage when served), what a request costs.
Online cost is ms per request at --batch-size rows per call (batch 1 = one request at a time, as at concurrency 1),
one torch thread (as a Triton stub gets). Ratios are per round (full / completion), median over rounds. HR@10 of
both modes on the same rows, and the relative loss.

Usage: python -m experiments.bench_thinkahead [--store runs/demo/artifacts] [--rows 200] [--rounds 3]
       [--batch-size 1] [--split valid] [--config configs/demo.yaml]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch

from components.config import load_config
from components.data.splits import load_splits
from components.metrics import hit_rate_ndcg
from components.reasoning.thinkahead import prefixes_by_user, think_ahead
from components.runtime.recommender import Recommender
from components.store.artifacts import ArtifactStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--store", default="runs/demo/artifacts")
    parser.add_argument("--model-version", default="latest")
    parser.add_argument("--reasoning-version", default="latest")
    parser.add_argument("--split", default="valid")
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    store = ArtifactStore(args.store)
    served = Recommender.from_pretrained(
        store.fetch("model", args.model_version), beam_size=cfg.serving.beam_size, ranker=cfg.serving.ranker
    )
    reasoner = Recommender.from_pretrained(
        store.fetch("reasoning_model", args.reasoning_version), beam_size=cfg.serving.beam_size
    )
    rows = load_splits(cfg.path(cfg.data.splits_dir))[args.split].head(args.rows)
    histories = [list(h) for h in rows["history"]]
    targets = rows["target"].astype(str).tolist()
    users = pd.DataFrame({"user_id": [f"row{i}" for i in range(len(rows))], "history": histories})
    t0 = time.perf_counter()
    by_user = prefixes_by_user(think_ahead(reasoner, users, cfg.reasoning))
    offline_ms = 1000 * (time.perf_counter() - t0) / max(len(rows), 1)
    prefixes = [by_user.get(u) or None for u in users["user_id"]]
    n_prefixes = [len(p) for p in prefixes if p]
    bs = args.batch_size

    def decode(with_prefixes: bool):
        out = []
        for s in range(0, len(histories), bs):
            batch_prefixes = prefixes[s : s + bs] if with_prefixes else None
            out += served.generate(histories[s : s + bs], max(served.beam_size, 10), batch_prefixes)
        return out

    def serve(with_prefixes: bool):
        out = []
        for s in range(0, len(histories), bs):
            batch_prefixes = prefixes[s : s + bs] if with_prefixes else None
            out += served.recommend(histories[s : s + bs], 10, batch_prefixes, batch_size=bs)
        return out

    times: dict[str, list[float]] = {k: [] for k in ("decode_full", "decode_think", "served_full", "served_think")}
    results = {}
    for round_ in range(args.rounds):
        for name, fn, flag in (
            ("decode_full", decode, False),
            ("decode_think", decode, True),
            ("served_full", serve, False),
            ("served_think", serve, True),
        ):
            t0 = time.perf_counter()
            got = fn(flag)
            times[name].append(1000 * (time.perf_counter() - t0) / len(rows))
            if round_ == 0:
                results[name] = hit_rate_ndcg([[i for i, _ in r][:10] for r in got], targets, [10])["HR@10"]

    def ratio(full: str, think: str) -> float:
        return float(np.median([f / t for f, t in zip(times[full], times[think], strict=True)]))

    print(
        f"{len(rows)} {args.split} rows, batch {bs}, {args.threads} thread(s), {args.rounds} rounds; prefixes for "
        f"{len(n_prefixes)} rows ({np.mean(n_prefixes):.1f} per row); reasoning offline {offline_ms:.0f} ms/user; "
        f"served stages: {'ranker' if served.ranker is not None else 'beam only'}"
    )
    print(
        "| what | full decoding ms/request | completion ms/request | full / completion | HR@10 full | "
        "HR@10 completion | relative HR@10 loss |"
    )
    print("|---|---|---|---|---|---|---|")
    for what in ("decode", "served"):
        full, think = results[f"{what}_full"], results[f"{what}_think"]
        loss = (full - think) / full if full else float("nan")
        print(
            f"| {what} | {np.median(times[f'{what}_full']):.2f} | {np.median(times[f'{what}_think']):.2f} "
            f"| {ratio(f'{what}_full', f'{what}_think'):.2f}x | {full:.4f} | {think:.4f} | {100 * loss:+.1f}% |"
        )


if __name__ == "__main__":
    main()
