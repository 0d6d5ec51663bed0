"""Ranking-stage variants scored on valid only (5-fold cross-validation, counts and models fit on train): why the
benchmark's ranker reads the generative beam, the SID codes and the content neighbours, and why it trains for
training.ranker.ROUNDS rounds.

    python -m experiments.try_rankers_on_valid runs/benchmark/model_train runs/benchmark/model_train_seed1 ... \
        [--out runs/rankers_on_valid.json]

Decodes valid once with the given models (an ensemble when several; beam serving.beam_size), then scores:
- the adopted ranker (beam + counts + SID codes, ROUNDS rounds) and the same with 100 / 300 rounds;
- each with and without the content source and features (runtime.content; the SIDs' content encoder);
- without the model (count candidates + SID codes), and without either (the benchmark's baseline row);
- the ensemble's beam alone, for reference.
Test is never read.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from components.config import PROJECT_ROOT, load_config
from components.data.ingest import read_catalog_for
from components.data.splits import load_splits
from components.metrics import hit_rate_ndcg
from components.runtime.candidates import ItemStats, candidate_rows, sid_codes
from components.runtime.content import ContentIndex
from components.runtime.recommender import SID_MAP_DIR
from components.sids.sidmap import SidMap
from components.training.ranker import ROUNDS, cross_validated
from experiments.benchmark import KS, score_models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dirs", nargs="+", type=Path)
    parser.add_argument("--config", default=str(PROJECT_ROOT / "configs" / "benchmark.yaml"))
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "runs" / "rankers_on_valid.json")
    args = parser.parse_args()

    cfg = load_config(args.config)
    train, valid = (load_splits(cfg.path(cfg.data.splits_dir))[name] for name in ("train", "valid"))
    model_metrics, beams = score_models(cfg, args.model_dirs, valid)  # one decode of valid, reused by every variant
    codes = sid_codes(SidMap.load(args.model_dirs[0] / SID_MAP_DIR))
    histories = [list(h) for h in valid["history"]]
    targets = valid["target"].astype(str).tolist()
    stats = ItemStats.from_examples(train["history"], train["target"])
    content = ContentIndex.from_catalog(read_catalog_for(cfg), cfg.sids.content_encoder)

    def cv(with_model: bool, with_sids: bool, rounds: int = ROUNDS, with_content: bool = False) -> dict:
        rows = candidate_rows(
            histories,
            stats,
            beams if with_model else None,
            codes if with_sids else None,
            content=content if with_content else None,
        )
        ranked = cross_validated(rows, targets, max(KS), rounds=rounds)
        recall = sum(t in items for (items, _), t in zip(rows, targets, strict=True)) / len(rows)
        metrics = hit_rate_ndcg([[i for i, _ in row] for row in ranked], targets, KS)
        return {"candidate_recall": round(recall, 4), **{m: round(v, 4) for m, v in metrics.items()}}

    results = {
        "the beam alone (no ranker)": {m: round(model_metrics[m], 4) for m in ("HR@10", "NDCG@10")},
        f"beam + counts + SID codes, {ROUNDS} rounds (adopted)": cv(True, True),
        "beam + counts + SID codes, 100 rounds": cv(True, True, 100),
        "beam + counts + SID codes, 300 rounds": cv(True, True, 300),
        "counts + SID codes (no model)": cv(False, True),
        "counts only (the baseline row)": cv(False, False),
        "beam + counts + SID codes + content": cv(True, True, with_content=True),
        "counts + SID codes + content (no model)": cv(False, True, with_content=True),
        "counts + content (no model)": cv(False, False, with_content=True),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"models": [str(d) for d in args.model_dirs], "valid_5fold": results}, indent=2))
    for name, row in results.items():
        recall = row.get("candidate_recall", "-")
        print(f"{name:48s} HR@10 {row['HR@10']:.4f}  NDCG@10 {row['NDCG@10']:.4f}  candidate recall {recall}")


if __name__ == "__main__":
    main()
