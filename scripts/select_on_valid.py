"""Compare generative-model settings on valid (fit on train only): how configs/benchmark.yaml was chosen.

    python scripts/select_on_valid.py NAME '{"train": {"dropout": 0.1}}' [--config configs/benchmark.yaml]

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
from components.data.readers import read_catalog
from components.evaluation.benchmark import KS, _splits, cached_sid_map
from components.evaluation.evaluate import evaluate_model_dir
from components.model.train import train_model
from components.sids.sidmap import SidMap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name")
    parser.add_argument("overrides", nargs="?", default="{}", help="JSON merged into the config")
    parser.add_argument("--config", default=str(PROJECT_ROOT / "configs" / "benchmark.yaml"))
    parser.add_argument("--out", default=str(PROJECT_ROOT / "runs" / "select"))
    parser.add_argument("--valid-limit", type=int, default=None, help="score only the first N valid rows")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)

    overrides = json.loads(args.overrides)
    cfg = load_config(args.config, overrides)
    root = Path(args.out)
    splits = _splits(cfg)
    catalog = read_catalog(cfg.path(cfg.data.catalog_uri))
    sid_dir = cached_sid_map(cfg, root)  # shared by every run with the same SID settings
    t0 = time.perf_counter()
    model_dir = train_model(cfg, SidMap.load(sid_dir), catalog, splits["train"], splits["valid"], root / args.name)
    seconds = time.perf_counter() - t0
    curve = [(h["step"], h["valid"]) for h in json.loads((model_dir / "history.json").read_text()) if "valid" in h]
    valid = splits["valid"].head(args.valid_limit) if args.valid_limit else splits["valid"]
    best = max(curve, key=lambda c: c[1]) if curve else (None, None)
    result = {
        "name": args.name,
        "overrides": overrides,
        "sample_curve": curve,
        "best_epoch": curve.index(best) + 1 if curve else None,
        "sample_best_hr10": best[1],
        "train_seconds": round(seconds, 1),
        "valid": evaluate_model_dir(model_dir, valid, KS, cfg.eval.beam_size, cfg.eval.batch_size, cfg.train.device),
    }
    (model_dir / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
