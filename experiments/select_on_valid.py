"""Compare generative-model settings on valid (fit on train only): how configs/benchmark.yaml was chosen.

    python -m experiments.select_on_valid NAME '{"train": {"dropout": 0.1}}' [--config configs/benchmark.yaml]

Builds (or reuses) the config's SID map from the train-period events, trains with the overrides while picking
the best epoch on a valid sample (eval.max_examples rows), scores that checkpoint on the whole valid split and
writes runs/select/NAME/result.json. Test is never touched.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from components.config import PROJECT_ROOT, load_config
from components.data.ingest import read_catalog_for
from components.data.splits import load_splits
from components.errors import SidrecError
from components.evaluation.evaluate import score_recommender
from components.runtime.recommender import Recommender
from components.sids.sidmap import SidMap
from components.training.train import train_model
from experiments.benchmark import KS, cached_sid_map


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name")
    parser.add_argument("overrides", nargs="?", default="{}", help="JSON merged into the config")
    parser.add_argument("--config", default=str(PROJECT_ROOT / "configs" / "benchmark.yaml"))
    parser.add_argument("--out", default=str(PROJECT_ROOT / "runs" / "select"))
    parser.add_argument("--valid-limit", type=int, default=None, help="score only the first N valid rows")
    parser.add_argument(
        "--sid-map",
        type=Path,
        default=None,
        help="train on this prebuilt map (e.g. docs/results/benchmark/sid_maps/train, the headline's) instead of "
        "the one this machine builds: maps differ across machines",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    try:
        select(args)
    except json.JSONDecodeError as e:  # expected errors are one line, not a traceback
        raise SystemExit(f"select_on_valid: the overrides are not JSON ({e}): {args.overrides!r}") from None
    except SidrecError as e:
        raise SystemExit(f"select_on_valid: {e}") from None


def select(args: argparse.Namespace) -> None:
    """One selection run (main's arguments): train with the overrides, score the kept epoch on valid."""
    overrides = json.loads(args.overrides)
    cfg = load_config(args.config, overrides)
    root = Path(args.out)
    sid_dir = cached_sid_map(cfg, root, args.sid_map)  # shared by every run with the same SID settings
    splits = load_splits(cfg.path(cfg.data.splits_dir))
    catalog = read_catalog_for(cfg)
    t0 = time.perf_counter()
    sidmap = SidMap.load(sid_dir)
    model_dir = train_model(cfg, sidmap, catalog, splits["train"], splits["valid"], root / args.name)
    seconds = time.perf_counter() - t0
    history = json.loads((model_dir / "history.json").read_text())
    curve = [(h["step"], h["valid"]) for h in history if "valid" in h]
    valid = splits["valid"].head(args.valid_limit) if args.valid_limit else splits["valid"]
    best = max(curve, key=lambda c: c[1]) if curve else (None, None)
    recommender = Recommender.from_pretrained(model_dir, device=cfg.train.device, beam_size=cfg.serving.beam_size)
    result = {
        "name": args.name,
        "overrides": overrides,
        "sample_curve": curve,
        "best_epoch": curve.index(best) + 1 if curve else None,
        "sample_best_hr10": best[1],
        "train_seconds": round(seconds, 1),
        "steps": max((h["step"] for h in history), default=0),
        "sid_version": sidmap.version,  # SID maps differ across machines: compare only runs on the same map
        "valid": score_recommender(recommender, valid, KS, cfg.eval.batch_size),
    }
    (model_dir / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
