"""Scoring the ranking stage (components.ranking) under the benchmark protocol.

The ranker is trained on valid rows whose features are fit on train (counts, and the generative model when it
takes part); its valid score is 5-fold cross-validated. Test rows get features fit on train + valid and are
ranked by the ranker trained on all valid rows. Nothing is chosen on test.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import pandas as pd

from components.evaluation.metrics import hit_rate_ndcg
from components.ranking.candidates import ItemStats, candidate_rows
from components.ranking.ranker import cross_validated, rerank, train_ranker

Beams = Sequence[Sequence[tuple[str, float]]]


def score_ranker(
    fits: dict[str, pd.DataFrame],
    scored: dict[str, pd.DataFrame],
    ks: list[int],
    beams: dict[str, Beams] | None = None,
    codes: dict[str, dict[str, tuple[int, ...]]] | None = None,
) -> dict[str, dict]:
    """{"valid": cross-validated metrics, "test": metrics of the ranker trained on valid} (each with
    train_seconds: the ranker's training on all valid rows).

    fits: split -> the examples its features are counted from (valid: train; test: train + valid).
    scored: split -> the examples scored. beams / codes: split -> the generative candidates / the SID codes of
    the map that split's model uses; leave them out for the ranker without a generative model.
    """
    k = max(ks)
    rows = {}
    for split in ("valid", "test"):
        stats = ItemStats.from_examples(fits[split]["history"], fits[split]["target"])
        rows[split] = candidate_rows(
            scored[split]["history"],
            stats,
            beams[split] if beams else None,
            codes[split] if codes else None,
        )
    targets = {split: scored[split]["target"].astype(str).tolist() for split in rows}
    out: dict[str, dict] = {}
    cv = cross_validated(rows["valid"], targets["valid"], k)
    out["valid"] = hit_rate_ndcg([[item for item, _ in row] for row in cv], targets["valid"], ks)
    t0 = time.perf_counter()
    booster = train_ranker(rows["valid"], targets["valid"])
    seconds = round(time.perf_counter() - t0, 1)
    ranked = rerank(booster, rows["test"], k)
    out["test"] = hit_rate_ndcg([[item for item, _ in row] for row in ranked], targets["test"], ks)
    for split in out:
        out[split].update({"invalid_rate": 0.0, "train_seconds": seconds})
    return out
