"""Scoring the ranking stage (components.ranking) under the benchmark protocol.

The ranker is trained on valid rows whose features are fit on train (counts, and the generative model when it
takes part); its valid score is 5-fold cross-validated. Test rows get features fit on train + valid and are
ranked by the ranker trained on all valid rows. Nothing is chosen on test.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from components.metrics import hit_rate_ndcg
from components.runtime.candidates import ItemStats, candidate_rows
from components.runtime.content import ContentIndex
from components.runtime.ranker import rerank
from components.training.ranker import learn_ranker

Beams = Sequence[Sequence[tuple[str, float]]]


def score_ranker(
    fits: dict[str, pd.DataFrame],
    scored: dict[str, pd.DataFrame],
    ks: list[int],
    beams: dict[str, Beams] | None = None,
    codes: dict[str, dict[str, tuple[int, ...]]] | None = None,
    content: ContentIndex | None = None,
) -> dict[str, dict]:
    """{"valid": cross-validated metrics, "test": metrics of the ranker trained on valid} (each with
    train_seconds: the ranker's training on all valid rows); no "test" when `fits` has no test entry.

    fits: split -> the examples its features are counted from (valid: train; test: train + valid).
    scored: split -> the examples scored. beams / codes: split -> the generative candidates / the SID codes of
    the map that split's model uses; leave them out for the ranker without a generative model. content: the
    catalog's content embeddings (a candidate source and features; None: counts and the model only).
    """
    booster, meta = learn_ranker(
        fits["valid"],
        scored["valid"],
        beams["valid"] if beams else None,
        codes["valid"] if codes else None,
        tuple(ks),
        content,
    )
    extra = {"invalid_rate": 0.0, "train_seconds": meta["train_seconds"]}
    if "test" not in fits:
        return {"valid": {**meta["cross_validated"], **extra}}
    stats = ItemStats.from_examples(fits["test"]["history"], fits["test"]["target"])
    rows = candidate_rows(
        scored["test"]["history"],
        stats,
        beams["test"] if beams else None,
        codes["test"] if codes else None,
        content=content,
    )
    ranked = rerank(booster, rows, max(ks))
    test = hit_rate_ndcg(
        [[item for item, _ in row] for row in ranked], scored["test"]["target"].astype(str).tolist(), ks
    )
    return {"valid": {**meta["cross_validated"], **extra}, "test": {**test, **extra}}
