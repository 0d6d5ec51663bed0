"""Two models on the same valid rows, compared row by row: the mean difference of HR@10 / NDCG@10 and its paired
standard error.

    python -m experiments.paired_on_valid runs/align/e_s0 runs/select/ref_s0 [--config configs/benchmark.yaml]

Why: a lever's gain of +0.002 is inside the standard error of either model's score on 4.5k rows (~0.0047 HR@10),
but both models are scored on the same rows, so most of that spread is shared; the standard error of the per-row
difference says whether the gain is more than decoding noise. Each model's served top 10 per row is cached under
OUT/cache (keyed by the model directory and split), so a reference is decoded once for every lever compared with it.
Prints and writes OUT/<a>_vs_<b>.json. Test is never touched by default (--split valid).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
from pathlib import Path

import torch

from components.config import PROJECT_ROOT, load_config
from components.data.splits import load_split_examples
from components.metrics import hit_rate_ndcg
from components.runtime.recommender import Recommender

K = 10


def ranked_lists(model_dir: Path, examples, cfg, cache: Path, split: str) -> list[list[str]]:
    """The model's served top K for each row, decoded once and cached."""
    key = hashlib.sha256(f"{model_dir.resolve()}|{split}|{len(examples)}|{cfg.serving.beam_size}".encode()).hexdigest()
    path = cache / f"{model_dir.name}_{split}_{key[:10]}.json"
    if path.exists():
        return json.loads(path.read_text())
    recommender = Recommender.from_pretrained(model_dir, device=cfg.train.device, beam_size=cfg.serving.beam_size)
    rows = recommender.recommend([list(h) for h in examples["history"]], K, batch_size=cfg.eval.batch_size)
    ranked = [[item for item, _ in row][:K] for row in rows]
    cache.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(ranked))
    return ranked


def per_row(ranked: list[list[str]], targets: list[str]) -> tuple[list[float], list[float]]:
    """Per row: HR@K and NDCG@K, each row scored alone by the project's metric (components.metrics)."""
    scores = [hit_rate_ndcg([row], [target], [K]) for row, target in zip(ranked, targets, strict=True)]
    return [s[f"HR@{K}"] for s in scores], [s[f"NDCG@{K}"] for s in scores]


def paired(a: list[float], b: list[float]) -> dict[str, float]:
    """Mean of a, of b, of a - b and the standard error of that mean difference."""
    diff = torch.tensor(a, dtype=torch.float64) - torch.tensor(b, dtype=torch.float64)
    n = len(diff)
    return {
        "a": sum(a) / n,
        "b": sum(b) / n,
        "diff": float(diff.mean()),
        "se": float(diff.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", help="the model directory with the lever")
    parser.add_argument("b", help="the reference model directory")
    parser.add_argument("--config", default=str(PROJECT_ROOT / "configs" / "benchmark.yaml"))
    parser.add_argument("--split", default="valid")
    parser.add_argument("--out", default=str(PROJECT_ROOT / "runs" / "paired"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    cfg = load_config(args.config)
    torch.set_num_threads(cfg.train.torch_threads or 1)
    examples = load_split_examples(str(cfg.path(cfg.data.splits_dir)), args.split)
    targets = examples["target"].astype(str).tolist()
    out = Path(args.out)
    a, b = Path(args.a), Path(args.b)
    ranked_a = ranked_lists(a, examples, cfg, out / "cache", args.split)
    ranked_b = ranked_lists(b, examples, cfg, out / "cache", args.split)
    (hit_a, ndcg_a), (hit_b, ndcg_b) = per_row(ranked_a, targets), per_row(ranked_b, targets)
    result = {
        "a": str(a),
        "b": str(b),
        "split": args.split,
        "rows": len(targets),
        f"HR@{K}": paired(hit_a, hit_b),
        f"NDCG@{K}": paired(ndcg_a, ndcg_b),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{a.name}_vs_{b.name}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
