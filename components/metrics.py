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


def hit_overlap(
    ranked: list[list[str]],
    baseline: list[list[str]],
    targets: list[str],
    k: int,
    first_code: dict[str, int] | None = None,
) -> dict[str, int]:
    """How many rows the model and a baseline hit within their top k: both, model only, baseline only, neither.

    Why: two models with the same HR can hit different rows; the rows only the baseline hits say what the model
    fails to learn. With `first_code` (item -> first SID code), "baseline_only_first_code_missed" counts those
    rows where no model item even shares the target's first code (a coarse miss, not a near one).
    """
    if not len(ranked) == len(baseline) == len(targets):
        raise ValueError("one model list, one baseline list and one target per row")
    out = {"both": 0, "model_only": 0, "baseline_only": 0, "neither": 0}
    names = {(True, True): "both", (True, False): "model_only", (False, True): "baseline_only"}
    coarse = 0
    for items, base, target in zip(ranked, baseline, targets, strict=True):
        model_hit, base_hit = target in items[:k], target in base[:k]
        out[names.get((model_hit, base_hit), "neither")] += 1
        if first_code is not None and base_hit and not model_hit:
            coarse += all(first_code.get(i) != first_code.get(target) for i in items[:k])
    if first_code is not None:
        out["baseline_only_first_code_missed"] = coarse
    return out
