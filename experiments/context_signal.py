"""Runtime context on data that carries a real context signal: one model trained without and with the context line.

    python -m experiments.context_signal --out runs/context_signal [--users 800 --items 300 --epochs 8 --seeds 0 1]

The data: data.synthetic with context_signal=True, where the clock decides the next step (by day a user continues
the current cluster's order, at night hops to the cluster's successor). Examples come from the events
(data.splits.examples_from_events: leave-last-out, each row with its event time and the user's last event time
before it, as Feast's user_history serves them); the SID map is fit on the train-period events. Each arm trains
the tiny model on train with the product's training step (training.train.train_model: the context line is the
only difference, train.context), picks its epoch on valid, and is scored on valid and test by
evaluation.score_recommender, which builds every prompt as serving does (runtime.Recommender with each row's
request context). The bundled amazon-industrial clocks are synthetic: no context gain is claimed there.

Writes OUT/metrics.json: per arm the mean, standard error over seeds and per-seed HR/NDCG@1,5,10 on valid and test.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

import pandas as pd

from components.config import PROJECT_ROOT, SidConfig, load_config
from components.data.splits import examples_from_events
from components.data.synthetic import generate_synthetic
from components.evaluation.evaluate import score_recommender
from components.runtime.recommender import Recommender
from components.sids.build import build_sids
from components.training.train import train_model

KS = [1, 5, 10]
SPLITS = ("valid", "test")


def train_period_events(events: pd.DataFrame) -> pd.DataFrame:
    """Each user's events but the last two (leave-last-out puts those in valid and test)."""
    ordered = events.sort_values(["user_id", "event_timestamp"], kind="stable")
    from_end = ordered.groupby("user_id").cumcount(ascending=False)
    return ordered[from_end >= 2]


def summary(runs: list[dict]) -> dict:
    """Mean and standard error over seeds of every metric, per split, with the per-seed values."""
    out = {}
    for split in SPLITS:
        keys = [k for k in runs[0][split] if k.startswith(("HR@", "NDCG@"))]
        out[split] = {
            k: {
                "mean": statistics.fmean(r[split][k] for r in runs),
                "se": statistics.stdev(r[split][k] for r in runs) / len(runs) ** 0.5 if len(runs) > 1 else None,
                "per_seed": [r[split][k] for r in runs],
            }
            for k in keys
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(PROJECT_ROOT / "runs" / "context_signal"))
    parser.add_argument("--users", type=int, default=800)
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--epochs", type=float, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--data-seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    catalog, events = generate_synthetic(args.items, args.users, seed=args.data_seed, context_signal=True)
    splits = examples_from_events(events, max_history=10)
    sid_cfg = SidConfig(codebook_size=16, content_encoder="hashing", collab_dim=16)
    sidmap = build_sids(catalog, train_period_events(events), sid_cfg, out / "sids")
    arms: dict[str, list[dict]] = {}
    for context in (False, True):
        name = "with context" if context else "without context"
        for seed in args.seeds:
            cfg = load_config(
                None,
                overrides={
                    "model": {"backbone": "tiny", "tiny_hidden_size": 64, "tiny_layers": 2, "tiny_heads": 2},
                    "train": {
                        "epochs": args.epochs,
                        "batch_size": 32,
                        "lr": 0.003,
                        "seed": seed,
                        "context": context,
                        "weight_sid_title": 0.0,
                        "weight_behaviour": 0.0,
                        "torch_threads": 1,
                    },
                    "eval": {"max_examples": 400, "batch_size": 32},
                    "serving": {"beam_size": 20},
                },
            )
            path = train_model(
                cfg, sidmap, catalog, splits["train"], splits["valid"], out / f"ctx{int(context)}_s{seed}"
            )
            recommender = Recommender.from_pretrained(path)
            assert recommender.uses_context == context  # the model directory records how its prompts were built
            run = {"seed": seed, **{s: score_recommender(recommender, splits[s], KS, batch_size=32) for s in SPLITS}}
            logging.info("%s seed %d: valid %s test %s", name, seed, run["valid"]["HR@10"], run["test"]["HR@10"])
            arms.setdefault(name, []).append(run)
    result = {
        "data": {
            "generator": "data.synthetic.generate_synthetic(context_signal=True)",
            "items": args.items,
            "users": args.users,
            "data_seed": args.data_seed,
            "rows": {s: len(f) for s, f in splits.items()},
        },
        "epochs": args.epochs,
        "seeds": args.seeds,
        "arms": {name: summary(runs) for name, runs in arms.items()},
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    for name, arm in result["arms"].items():
        for split in SPLITS:
            m = arm[split]
            print(
                f"{name:16s} {split:5s} HR@10 {m['HR@10']['mean']:.4f} ± {m['HR@10']['se'] or 0:.4f}  "
                f"NDCG@10 {m['NDCG@10']['mean']:.4f} ± {m['NDCG@10']['se'] or 0:.4f}"
            )


if __name__ == "__main__":
    main()
