"""Choosing the hybrid's blend weight on valid: the generative candidates mixed with last-item transitions.

The blend itself lives in decoding.transitions (serving applies it too); this module only scores it. The
weight is chosen on valid and applied unchanged to test; the hybrid is reported beside the generative model,
never in its place.
"""

from __future__ import annotations

from components.metrics import hit_rate_ndcg
from components.runtime.transitions import TransitionTable, blend

BLEND_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7)


def blended_items(
    recs: list[list[tuple[str, float]]], histories: list[list[str]], table: TransitionTable, weight: float, k: int
) -> list[list[str]]:
    """Each row's top-k item ids after the blend (decoding.transitions.blend), for the metrics."""
    return [[item for item, _ in row] for row in blend(recs, histories, table, weight, k)]


def select_blend_weight(
    recs: list[list[tuple[str, float]]],
    histories: list[list[str]],
    targets: list[str],
    table: TransitionTable,
    k: int = 10,
    weights: tuple[float, ...] = BLEND_WEIGHTS,
) -> tuple[float, dict[float, dict[str, float]]]:
    """The weight with the best mean of HR@k and NDCG@k on these (valid) rows, and every weight's metrics.

    Both metrics count: HR alone favours the model's wide recall, NDCG alone the chain's sharp top ranks.
    """
    scored = {w: hit_rate_ndcg(blended_items(recs, histories, table, w, k), targets, [k]) for w in weights}
    best = max(weights, key=lambda w: (scored[w][f"HR@{k}"] + scored[w][f"NDCG@{k}"], -w))
    return best, scored
