"""Train a servable ranker (ranking.artifact) from split files: the benchmark's protocol outside the benchmark.

The ranker learns from `rank` rows (valid) whose features come from counts over `fit` examples (train) and, when
model directories are given, from those models' beams: the models must have been trained on `fit` only, so
the rows' targets are as unseen to them as a served request's. The served counts are refit on `serve` examples
(train + valid, what the served models are retrained on), as the benchmark's test rows are.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from components.evaluation.metrics import hit_rate_ndcg
from components.ranking.artifact import RankerArtifact
from components.ranking.candidates import ItemStats, candidate_rows, sid_codes
from components.ranking.ranker import PARAMS, ROUNDS, cross_validated, train_ranker


def learn_ranker(
    fit: pd.DataFrame,
    rank: pd.DataFrame,
    beams: list | None = None,
    codes: dict[str, tuple[int, ...]] | None = None,
    ks: tuple[int, ...] = (3, 5, 10),
) -> tuple[object, dict]:
    """(LightGBM booster, meta) learnt on the `rank` rows' candidates, counted from `fit` examples (and the rows'
    beams / SID codes when given); meta holds the rows' 5-fold cross-validated metrics ("cross_validated"), the
    candidates' recall and the fit's seconds. The benchmark and fit_ranker both learn through here."""
    stats = ItemStats.from_examples(fit["history"], fit["target"])
    targets = rank["target"].astype(str).tolist()
    rows = candidate_rows([list(h) for h in rank["history"]], stats, beams, codes)
    cv = cross_validated(rows, targets, max(ks))
    t0 = time.perf_counter()
    booster = train_ranker(rows, targets)
    return booster, {
        "train_seconds": round(time.perf_counter() - t0, 1),
        "rank_rows": len(rows),
        "fit_examples": len(fit),
        "recall": sum(t in items for (items, _), t in zip(rows, targets, strict=True)) / max(len(rows), 1),
        "cross_validated": hit_rate_ndcg([[i for i, _ in row] for row in cv], targets, list(ks)),
    }


def fit_ranker(
    fit: pd.DataFrame,
    rank: pd.DataFrame,
    serve: pd.DataFrame | None = None,
    model_dirs: list[Path] | None = None,
    beam_size: int = 20,
    batch_size: int = 16,
    device: str = "cpu",
    ks: tuple[int, ...] = (3, 5, 10),
) -> RankerArtifact:
    """A ranker trained on `rank` rows (see the module docstring; learn_ranker), serving counts from `serve`
    examples (default: fit + rank). Without model_dirs it ranks co-occurrence candidates only and reads no SID
    codes."""
    serve = pd.concat([fit, rank], ignore_index=True) if serve is None else serve
    beams, codes = None, None
    if model_dirs:
        from components.decoding.recommend import recommend_items
        from components.evaluation.evaluate import load_for_decoding

        model, tokenizer, trie, sidmap = load_for_decoding([Path(d) for d in model_dirs], device)
        histories = [list(h) for h in rank["history"]]
        beams = recommend_items(model, tokenizer, trie, sidmap, histories, beam_size, beam_size, None, batch_size)
        codes = sid_codes(sidmap)
    booster, meta = learn_ranker(fit, rank, beams, codes, ks)
    meta.update(
        {
            "serve_examples": len(serve),
            "models": [str(d) for d in model_dirs or []],
            "beam_size": beam_size,
            "rounds": ROUNDS,
            "params": PARAMS,
        }
    )
    served = ItemStats.from_examples(serve["history"], serve["target"])
    return RankerArtifact(booster, served, with_model=beams is not None, with_sids=codes is not None, meta=meta)
