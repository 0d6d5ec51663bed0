"""HR@K and NDCG@K with one target per row, over full rankings (as the published protocol)."""

from __future__ import annotations

import math


def hit_rate_ndcg(ranked: list[list[str]], targets: list[str], ks: list[int]) -> dict[str, float]:
    """{"HR@k", "NDCG@k"} averaged over rows; a row whose list misses the target scores 0."""
    if len(ranked) != len(targets):
        raise ValueError("one ranked list per target")
    out = {}
    n = max(len(targets), 1)
    for k in ks:
        hits, gains = 0, 0.0
        for items, target in zip(ranked, targets, strict=True):
            top = items[:k]
            if target in top:
                hits += 1
                gains += 1.0 / math.log2(top.index(target) + 2)
        out[f"HR@{k}"] = hits / n
        out[f"NDCG@{k}"] = gains / n
    return out
