"""A second view of the same request, scored on valid only (fit on train): the served models decode the history
and the history cut to its last k items, and the two beams are mixed item by item.

    python -m experiments.try_views_on_valid runs/align/ls1_s0_i runs/align/ls1_s1_i \
        [--last 1 2 3] [--weights 0.1 0.2 0.3 0.5] [--beam-size 50] [--limit N] [--out runs/views.json]

Why: blending the generator with last-item transition counts adds about +0.01 NDCG@10 on valid (the benchmark's
"+ last-item transitions" row), so the full-history prompt under-weights what the last item says. A short prompt
asks the same LLM for its own last-item view, with no count table: if the mixture
p = (1 - w) p_full + w p_last_k gains, the gain is generative. An item outside a view's beam counts 0 in that
view. Every (k, w) pair is scored (w = 0 is the served list); the best by HR@10 + NDCG@10 (the benchmark's
rule) is reported beside the served one. Test is never read.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence

from components.config import PROJECT_ROOT
from components.metrics import hit_rate_ndcg
from components.runtime.recommender import Recommender
from components.runtime.transitions import mix_row
from experiments.try_decoding_on_valid import decoding_parser, valid_recommender

Beams = list[list[tuple[str, float]]]


def decode(recommender: Recommender, histories: Sequence[Sequence[str]], batch_size: int) -> Beams:
    """Each history's beam of (item, summed SID log-probability), best first."""
    return recommender.generate(histories, recommender.beam_size, batch_size=batch_size)


def mixed_lists(full: Beams, view: Beams, weight: float, k: int = 10) -> list[list[str]]:
    """Top k of (1 - weight) * p_full + weight * p_view per row (runtime.transitions.mix_row, the mixture the
    served blend uses); weight 0 is the full beam's own order."""
    return [
        [item for item, _ in mix_row(served, {item: math.exp(logp) for item, logp in other}, weight, k)]
        for served, other in zip(full, view, strict=True)
    ]


def score_views(
    recommender: Recommender,
    histories: list[list[str]],
    targets: list[str],
    lasts: Sequence[int],
    weights: Sequence[float],
    ks: list[int],
    batch_size: int,
) -> dict:
    """{"served": metrics, "grid": {"k=K w=W": metrics}, "best": {...}, "decode_seconds": {...}}."""
    seconds = {}
    t0 = time.perf_counter()
    full = decode(recommender, histories, batch_size)
    seconds["full"] = round(time.perf_counter() - t0, 1)
    served = hit_rate_ndcg(mixed_lists(full, full, 0.0), targets, ks)
    grid = {}
    for k in lasts:
        t0 = time.perf_counter()
        view = decode(recommender, [h[-k:] for h in histories], batch_size)
        seconds[f"last {k}"] = round(time.perf_counter() - t0, 1)
        for w in weights:
            grid[f"k={k} w={w}"] = hit_rate_ndcg(mixed_lists(full, view, w), targets, ks)
    best = max(grid, key=lambda key: grid[key]["HR@10"] + grid[key]["NDCG@10"]) if grid else None
    return {"served": served, "grid": grid, "best": best, "decode_seconds": seconds}


def main(argv: list[str] | None = None) -> None:
    parser = decoding_parser(__doc__, "runs/views.json")
    parser.add_argument("--last", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--weights", nargs="+", type=float, default=[0.1, 0.2, 0.3, 0.5])
    args = parser.parse_args(argv)
    cfg, examples, recommender = valid_recommender(args)
    dirs, beam_size = args.model_dirs, recommender.beam_size
    histories = [list(h) for h in examples["history"]]
    targets = examples["target"].astype(str).tolist()
    result = score_views(recommender, histories, targets, args.last, args.weights, cfg.eval.ks, cfg.eval.batch_size)
    record = {"models": dirs, "beam_size": beam_size, "rows": len(examples), **result}
    out = PROJECT_ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2))
    for name, metrics in [("served", result["served"]), *result["grid"].items()]:
        print(f"{name}: HR@10 {metrics['HR@10']:.4f} NDCG@10 {metrics['NDCG@10']:.4f}", flush=True)
    print("best:", result["best"])


if __name__ == "__main__":
    main()
