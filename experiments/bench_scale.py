"""Per-unit costs for docs/scale.md: what one worker, replica or lookup costs on this machine, measured with the
pipeline's own code, so that the projection to 10M items and 100M users rests on numbers and not on guesses.

    python -m experiments.bench_scale prepare --root runs/bench_scale          # a served model through the steps
    python -m experiments.bench_scale thinkahead --root runs/bench_scale       # users per hour per worker
    python -m experiments.bench_scale train --root runs/bench_scale --backbone tiny|smollm2-135m
    python -m experiments.bench_scale feast --root runs/bench_scale [--redis]  # online lookups per second
    python -m experiments.bench_serving --repo runs/bench_scale/triton_repo   # Triton requests per second

`prepare` runs the real pipeline steps (components.pipeline.steps: ingest, sid_refresh, features_materialize,
build_examples, train, promote, export, train_reasoner) on a synthetic catalog with the demo's model shape (a
2-layer Llama of width 128 with SmolLM2's 49k-token vocabulary, 3 x 256 SID codes), a few training steps (speed
does not depend on what the weights learnt) and times each step. The other commands read what it published.
Every measurement is repeated (--repeats) and reported as the median with the spread: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

DEFAULT_ROOT = "runs/bench_scale"


def _median(values: list[float]) -> dict:
    """Median, min and max of repeated measurements: the machine is shared, single runs are noise."""
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2), "max": round(max(values), 2)}


def _timed(fn: Callable[[], object]) -> tuple[object, float]:
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


def write_deployment(root: Path, items: int, users: int, train_steps: int) -> Path:
    """A synthetic deployment with the demo's model shape and the production SID shape (3 levels x 256 codes)."""
    from components.data.readers import write_table
    from components.data.synthetic import generate_synthetic

    catalog, events = generate_synthetic(n_items=items, n_users=users, seed=0)
    write_table(catalog, root / "raw" / "catalog.jsonl.gz")
    write_table(events, root / "raw" / "events.csv.gz")
    config = {
        "run_root": str(root / "runs"),
        "data": {
            "catalog_uri": str(root / "raw" / "catalog.jsonl.gz"),
            "events_uri": str(root / "raw" / "events.csv.gz"),
            "splits_dir": None,
        },
        "store": {"root": str(root / "artifacts")},
        "sids": {"codebook_size": 256, "content_encoder": "hashing", "collab_dim": 32},
        "model": {"backbone": "tiny", "tiny_hidden_size": 128, "tiny_layers": 2, "tiny_heads": 4},
        "train": {"batch_size": 32, "lr": 0.002, "max_steps": train_steps, "sid_softmax": True, "torch_threads": 1},
        "eval": {"max_examples": 64, "batch_size": 32},
        "reasoning": {
            "paths_per_user": 2,
            "prefixes_per_path": 5,
            "max_rationale_tokens": 16,
            "rationale_examples": 200,  # the reasoning model's fine-tuning is timed, not judged, here
            "epochs": 1.0,
        },
        "serving": {"beam_size": 20, "model_repository": str(root / "triton_repo"), "ranker": False, "kind": "cpu"},
    }
    (root / "deploy.yaml").write_text(yaml.safe_dump(config))
    return root / "deploy.yaml"


def prepare(root: Path, items: int, users: int, train_steps: int) -> dict:
    """Run the steps once, in DAG order, handing versions on as the DAGs do; record each step's seconds."""
    from components.pipeline import steps

    root.mkdir(parents=True, exist_ok=True)
    config = str(write_deployment(root, items, users, train_steps))
    seconds: dict[str, float] = {}

    def step(name: str, fn: Callable[[], dict]) -> dict:
        result, took = _timed(fn)
        seconds[name] = round(took, 1)
        print(f"{name}: {took:.1f} s", flush=True)
        return result

    curated = step("ingest", lambda: steps.ingest(config))["curated_version"]
    sid = step("sid_refresh", lambda: steps.sid_refresh(config, None, curated))["sid_version"]
    step("features_materialize", lambda: steps.features_materialize(config, None, curated, sid))
    examples = step("build_examples", lambda: steps.build_examples(config, None, curated, sid))
    trained = step("train", lambda: steps.train(config, None, examples["examples_version"], sid, curated))
    model = step("promote", lambda: steps.promote(config, None, trained["candidate_version"], "bench_scale"))
    step("export", lambda: steps.export(config, None, model["model_version"]))
    reasoner = step(
        "train_reasoner",
        lambda: steps.train_reasoner(config, None, model["model_version"], examples["examples_version"], curated),
    )
    out = {
        "items": items,
        "users": users,
        "examples": examples["rows"],
        "seconds": seconds,
        "versions": {
            "curated": curated,
            "sid_map": sid,
            "examples": examples["examples_version"],
            "model": model["model_version"],
            "reasoning_model": reasoner["reasoning_version"],
        },
    }
    (root / "prepare.json").write_text(json.dumps(out, indent=2))
    return out


def _prepared(root: Path) -> tuple[str, dict]:
    path = root / "prepare.json"
    if not path.exists():
        raise SystemExit(f"{path} missing: run `python -m experiments.bench_scale prepare --root {root}` first")
    return str(root / "deploy.yaml"), json.loads(path.read_text())


def _curated(store, version: str):
    """(catalog, events) of a curated version, read as the steps read them."""
    import pandas as pd

    folder = store.fetch("curated", version)
    return pd.read_parquet(folder / "catalog.parquet"), pd.read_parquet(folder / "events.parquet")


def bench_thinkahead(root: Path, users_per_shard: int, repeats: int, threads: int) -> dict:
    """The reasoning step itself (steps.think_ahead: read the curated events, load the reasoning model, think ahead
    for one shard of the active users, publish the shard) on a shard of about `users_per_shard` users: users per
    hour for one worker process of `threads` threads, its fixed costs (loading, publishing) included."""
    import math

    import torch

    from components.config import load_config
    from components.pipeline import steps

    torch.set_num_threads(threads)
    config, prepared = _prepared(root)
    versions = prepared["versions"]
    active = steps.active_users(config, None, versions["curated"])["users"]
    n_shards = max(1, math.ceil(active / users_per_shard))
    rates, users = [], 0
    for r in range(repeats):  # a different shard each time: a shard version is published once (immutable)
        result, took = _timed(
            lambda r=r: steps.think_ahead(
                config, None, versions["reasoning_model"], versions["curated"], r, n_shards, versions["examples"]
            )
        )
        users = result["users"]
        rates.append(users / took * 3600)
        print(f"think-ahead step: {users} users in {took:.1f} s", flush=True)
    cfg = load_config(config)
    return {
        "active_users": active,
        "users_per_shard": users,
        "threads": threads,
        "paths_per_user": cfg.reasoning.paths_per_user,
        "max_rationale_tokens": cfg.reasoning.max_rationale_tokens,
        "prefixes_per_path": cfg.reasoning.prefixes_per_path,
        "users_per_hour": _median(rates),
    }


def bench_train(root: Path, backbone: str, steps_n: int, repeats: int, batch_size: int, threads: int) -> dict:
    """Training tokens per second (training.train.train_causal_lm, the trainer every run uses) on the prepared
    examples' train rows with the deployment's task mix and SID-level softmax, for this backbone."""
    import pandas as pd
    import torch

    from components.config import load_config
    from components.pipeline import steps
    from components.runtime.backbone import load_backbone
    from components.runtime.language import sid_token_ids
    from components.sids.sidmap import SidMap
    from components.store.artifacts import ArtifactStore
    from components.training.examples import build_training_texts
    from components.training.train import train_causal_lm
    from components.training.vocab import add_sid_tokens

    torch.set_num_threads(threads)
    config, prepared = _prepared(root)
    cfg = load_config(config, {"model": {"backbone": backbone}})
    store = ArtifactStore.from_config(cfg.store)
    catalog, _ = _curated(store, prepared["versions"]["curated"])
    sidmap = SidMap.load(store.fetch("sid_map", prepared["versions"]["sid_map"]))
    examples = pd.read_parquet(store.fetch("examples", prepared["versions"]["examples"]) / steps.EXAMPLES_FILE)
    train_rows = examples[examples[steps.SPLIT_COLUMN] == "train"].reset_index(drop=True)
    train_rows["history"] = train_rows["history"].map(list)
    train_cfg = cfg.train.model_copy(
        update={"max_steps": steps_n, "batch_size": batch_size, "checkpoint_every": 0, "warmup_epochs": 0.0}
    )
    rates, params, per_example = [], 0, 0.0
    for r in range(repeats):
        (model, tokenizer), load_s = _timed(lambda: load_backbone(cfg.model))
        params = sum(p.numel() for p in model.parameters())
        new_ids = add_sid_tokens(model, tokenizer, sidmap, seed=r)
        texts = build_training_texts(train_rows, sidmap, catalog, train_cfg)
        table = sid_token_ids(tokenizer, sidmap)  # the SID-level softmax's table when train_cfg.sid_softmax
        with tempfile.TemporaryDirectory() as out:
            stats = train_causal_lm(model, tokenizer, texts, train_cfg, Path(out), None, new_ids, 256, table)
        rates.append(stats["tokens_per_second"])
        per_example = stats["tokens"] / (stats["steps"] * batch_size)
        print(f"train {backbone}: {stats['tokens_per_second']} tokens/s (load {load_s:.1f} s)", flush=True)
    return {
        "backbone": backbone,
        "parameters": params,
        "steps": steps_n,
        "batch_size": batch_size,
        "threads": threads,
        "sid_softmax": train_cfg.sid_softmax,
        "tokens_per_example": round(per_example, 1),  # prompt + completion, all three task kinds mixed
        "tokens_per_second": _median(rates),
    }


def bench_feast(root: Path, lookups: int, repeats: int, redis: bool) -> dict:
    """Online lookups per second through the serving client's path (features.online.OnlineFeatures.user: the
    feature service, one round trip per user), one thread; with --redis the store is a real redis-server
    (materialized by steps.features_materialize), else SQLite. Also times the materialization itself."""
    from components.config import load_config
    from components.features.online import OnlineFeatures
    from components.features.repo import user_history_frame
    from components.pipeline import steps
    from components.store.artifacts import ArtifactStore

    config, prepared = _prepared(root)
    versions = prepared["versions"]
    server = None
    overrides: dict = {"run_root": str(root / ("runs_redis" if redis else "runs"))}
    if redis:
        from components.local.redis import start_redis

        server = start_redis(root / "redis")
        overrides["features"] = {"online_store": "redis", "redis_connection": server.connection}
    try:
        cfg = load_config(config, overrides)
        _, materialize_s = _timed(
            lambda: steps.features_materialize(config, overrides, versions["curated"], versions["sid_map"])
        )
        _, events = _curated(ArtifactStore.from_config(cfg.store), versions["curated"])
        history, history_s = _timed(lambda: user_history_frame(events, cfg.data.max_history))
        online = OnlineFeatures(cfg)
        users = sorted(events["user_id"].astype(str).unique())
        online.user(users[0])  # the registry read, once
        rates = []
        for _ in range(repeats):
            _, took = _timed(lambda: [online.user(users[i % len(users)]) for i in range(lookups)])
            rates.append(lookups / took)
            print(f"feast {'redis' if redis else 'sqlite'}: {lookups / took:.0f} lookups/s", flush=True)
    finally:
        if server is not None:
            server.stop()
    return {
        "online_store": "redis" if redis else "sqlite",
        "lookups": lookups,
        "lookups_per_second": _median(rates),
        "materialize_seconds": round(materialize_s, 1),
        "events": int(len(events)),
        "user_history_rows_per_second": round(len(history) / history_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--items", type=int, default=3000)
    p.add_argument("--users", type=int, default=3000)
    p.add_argument("--train-steps", type=int, default=20)
    t = sub.add_parser("thinkahead")
    t.add_argument("--users", type=int, default=200, help="users per shard (the active users are cut in shards)")
    t.add_argument("--threads", type=int, default=1)
    r = sub.add_parser("train")
    r.add_argument("--backbone", default="tiny")
    r.add_argument("--steps", type=int, default=20)
    r.add_argument("--batch-size", type=int, default=16)
    r.add_argument("--threads", type=int, default=1)
    f = sub.add_parser("feast")
    f.add_argument("--lookups", type=int, default=1000)
    f.add_argument("--redis", action="store_true")
    for p in (t, r, f):
        p.add_argument("--repeats", type=int, default=3)
    for p in sub.choices.values():
        p.add_argument("--root", default=DEFAULT_ROOT)
    args = parser.parse_args()
    root = Path(args.root).resolve()
    if args.command == "prepare":
        result = prepare(root, args.items, args.users, args.train_steps)
    elif args.command == "thinkahead":
        result = bench_thinkahead(root, args.users, args.repeats, args.threads)
    elif args.command == "train":
        result = bench_train(root, args.backbone, args.steps, args.repeats, args.batch_size, args.threads)
    else:
        result = bench_feast(root, args.lookups, args.repeats, args.redis)
    name = args.command if args.command != "train" else f"train_{args.backbone}"
    (root / f"{name}{'_redis' if getattr(args, 'redis', False) else ''}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
