"""Score a recommender on examples exactly as it is served: the same Recommender.recommend, the same metrics."""

from __future__ import annotations

import time

import pandas as pd

from components.metrics import hit_overlap, hit_rate_ndcg
from components.runtime.context import contexts_of
from components.runtime.recommender import Recommender


def score_recommender(
    recommender: Recommender,
    examples: pd.DataFrame,
    ks: list[int],
    batch_size: int = 16,
    prefixes=None,
    baseline: list[list[str]] | None = None,
) -> dict:
    """HR/NDCG@ks of the served lists, the invalid / duplicate share, short lists and the cost per request.

    With a baseline's ranked lists for the same rows, also which rows each of them hits (metrics.hit_overlap at
    the largest k): two models with the same HR can hit different rows."""
    k = max(ks)
    contexts = contexts_of(examples) if recommender.uses_context else None  # as each row's request would send
    t0 = time.perf_counter()
    recs = recommender.recommend(
        [list(h) for h in examples["history"]], k, prefixes, contexts=contexts, batch_size=batch_size
    )
    seconds = time.perf_counter() - t0
    ranked = [[item for item, _ in row][:k] for row in recs]
    metrics = list_metrics(ranked, examples["target"].astype(str).tolist(), ks, recommender.sidmap)
    metrics["ms_per_request"] = 1000 * seconds / max(len(examples), 1)
    if baseline is not None:
        sidmap = recommender.sidmap
        first_code = {item: int(sidmap.codes_of(item)[0]) for item in sidmap.item_ids}
        targets = examples["target"].astype(str).tolist()
        metrics[f"overlap@{k}"] = hit_overlap(ranked, baseline, targets, k, first_code)
    return metrics


def list_metrics(ranked: list[list[str]], targets: list[str], ks: list[int], catalog=None) -> dict:
    """HR/NDCG@ks of ranked item lists, with the share of items outside `catalog` (invalid), duplicates and the
    rows shorter than the largest k."""
    k = max(ks)
    returned = sum(len(r[:k]) for r in ranked)
    metrics = hit_rate_ndcg(ranked, targets, ks)
    metrics.update(
        {
            "invalid_rate": sum(1 for r in ranked for i in r[:k] if catalog is not None and i not in catalog)
            / max(returned, 1),
            "duplicate_rate": sum(len(r[:k]) - len(set(r[:k])) for r in ranked) / max(returned, 1),
            "short_lists": sum(1 for r in ranked if len(r) < k),
            "rows": len(ranked),
        }
    )
    return metrics
