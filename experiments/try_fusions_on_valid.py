"""Other ways to fuse the generative candidates, scored on valid only (fit on train): why the hybrid stays
the plain two-way blend with last-item transitions (runtime.transitions).

    python -m experiments.try_fusions_on_valid runs/benchmark/model_train runs/benchmark/model_train_seed1 ... \
        [--other-map runs/select/sid28] [--out runs/fusions_on_valid.json]

Decodes valid once with the given models (an ensemble when several; beam serving.beam_size), then grid-scores:
- "transitions": p = (1 - w) p_model + w P(item | last item), the benchmark's blend (its weights);
- "transitions + SASRec": the same plus w_s times SASRec's full softmax (SASRec fit on train, epoch picked on
  valid as in the benchmark), candidates = beam + successors + SASRec's top 20;
- "transitions + second-last": plus w_2 P(item | second-last item);
- "temperature": the model's probabilities raised to 1/T (then the blend), T in 0.7..2;
- "other SID map" (with --other-map DIR[s]): item-level mixture with a model trained on another SID map.
Every row reports HR@10 and NDCG@10 of the best grid point by their sum (the benchmark's rule). Test is never read.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from components.config import PROJECT_ROOT, load_config
from components.data.ingest import read_catalog_for
from components.data.splits import load_splits
from components.evaluation.baselines import SASRec
from components.metrics import hit_rate_ndcg
from components.runtime.transitions import TransitionTable
from experiments.benchmark import KS, score_models
from experiments.blend import BLEND_WEIGHTS


def _rank(scores: dict[str, float], k: int = 10) -> list[str]:
    return sorted(scores, key=lambda item: -scores[item])[:k]


def _best(grid: dict[tuple, list[list[str]]], targets: list[str]) -> dict:
    scored = {key: hit_rate_ndcg(ranked, targets, KS) for key, ranked in grid.items()}
    key = max(scored, key=lambda g: scored[g]["HR@10"] + scored[g]["NDCG@10"])
    return {"setting": list(key), **{m: round(v, 4) for m, v in scored[key].items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dirs", nargs="+")
    parser.add_argument("--other-map", nargs="*", default=[], help="model dir(s) trained on another SID map")
    parser.add_argument("--config", default=str(PROJECT_ROOT / "configs" / "benchmark.yaml"))
    parser.add_argument("--out", default=str(PROJECT_ROOT / "runs" / "fusions_on_valid.json"))
    args = parser.parse_args()

    cfg = load_config(args.config)
    splits = load_splits(cfg.path(cfg.data.splits_dir))
    train, valid = splits["train"], splits["valid"]
    histories = [list(h) for h in valid["history"]]
    targets = valid["target"].astype(str).tolist()
    _, recs = score_models(cfg, [Path(d) for d in args.model_dirs], valid)
    p_model = [{item: math.exp(lp) for item, lp in row} for row in recs]
    table = TransitionTable.from_examples(train["history"], train["target"])
    last = [table.probabilities(h[-1] if h else None) for h in histories]
    second_counts: dict[str, Counter] = {}
    for history, target in zip(train["history"], train["target"], strict=True):
        if len(history) >= 2:
            second_counts.setdefault(history[-2], Counter())[target] += 1
    second = []
    for h in histories:
        row = second_counts.get(h[-2], Counter()) if len(h) >= 2 else Counter()
        total = sum(row.values()) or 1
        second.append({item: c / total for item, c in row.items()})

    catalog_ids = read_catalog_for(cfg)["item_id"].astype(str).tolist()
    sasrec = SASRec().fit(train, valid, catalog_ids)
    with torch.inference_mode():
        sasrec.net.eval()
        logits = torch.cat([sasrec.net(sasrec._encode(histories[s : s + 512])) for s in range(0, len(histories), 512)])
        logits[:, 0] = float("-inf")
        p_sas = torch.softmax(logits, -1).numpy()
    top_sas = np.argsort(-p_sas, axis=1)[:, :20]

    def mix(weights: list[tuple[float, list[dict[str, float]]]], r: int, extra=()) -> dict[str, float]:
        scores: dict[str, float] = {}
        for w, source in weights:
            for item, p in source[r].items():
                scores[item] = scores.get(item, 0.0) + w * p
        for item in extra:
            scores.setdefault(item, 0.0)
        return scores

    rows = range(len(histories))
    results: dict[str, dict] = {}
    results["model alone"] = _best({(): [_rank(p_model[r]) for r in rows]}, targets)
    results["transitions"] = _best(
        {(w,): [_rank(mix([(1 - w, p_model), (w, last)], r)) for r in rows] for w in BLEND_WEIGHTS}, targets
    )
    grid = {}
    for w, ws in itertools.product((0.05, 0.1, 0.2, 0.3), (0.05, 0.1, 0.2, 0.3, 0.5)):
        ranked = []
        for r in rows:
            scores = mix([(1 - w - ws, p_model), (w, last)], r, (sasrec.ids[j] for j in top_sas[r]))
            for item in scores:
                scores[item] += ws * float(p_sas[r, sasrec.index.get(item, 0)])
            ranked.append(_rank(scores))
        grid[(w, ws)] = ranked
    results["transitions + SASRec"] = {**_best(grid, targets), "sasrec_epochs": sasrec.best_epoch}
    results["transitions + second-last"] = _best(
        {
            (w, w2): [_rank(mix([(1 - w - w2, p_model), (w, last), (w2, second)], r)) for r in rows]
            for w, w2 in itertools.product((0.05, 0.1, 0.2, 0.3), (0.05, 0.1))
        },
        targets,
    )
    grid = {}
    for t, w in itertools.product((0.7, 1.5, 2.0), (0.1, 0.2, 0.3)):
        tempered = [{item: p ** (1 / t) for item, p in row.items()} for row in p_model]
        grid[(t, w)] = [_rank(mix([(1 - w, tempered), (w, last)], r)) for r in rows]
    results["temperature"] = _best(grid, targets)
    if args.other_map:
        _, other = score_models(cfg, [Path(d) for d in args.other_map], valid)
        p_other = [{item: math.exp(lp) for item, lp in row} for row in other]
        results["other SID map"] = _best(
            {(w,): [_rank(mix([(1 - w, p_model), (w, p_other)], r)) for r in rows] for w in (0.1, 0.2, 0.3, 0.5)},
            targets,
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"models": args.model_dirs, "other_map": args.other_map, "valid": results}, indent=2))
    for name, row in results.items():
        print(f"{name:28s} {row['setting']}  HR@10 {row['HR@10']:.4f}  NDCG@10 {row['NDCG@10']:.4f}")


if __name__ == "__main__":
    main()
