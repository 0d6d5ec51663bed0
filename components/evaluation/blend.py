"""The generative model's items blended with last-item transition probabilities: a hybrid row of the benchmark.

Why: on valid the generative model and the last-item Markov chain hit different rows (README "Training options
tried on valid": 357 both, 153 model only, 141 Markov only), and Markov ranks the items it knows well near the
top. A mixture of the two distributions, p = (1 - alpha) p_model(item | history) + alpha P(item | last item),
keeps both. The weight is chosen on valid and applied unchanged to test; the blend is reported beside the
generative model, never in its place.
"""

from __future__ import annotations

import math

from components.evaluation.baselines import LastItemMarkov
from components.evaluation.metrics import hit_rate_ndcg

BLEND_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7)


def blend_with_transitions(
    recs: list[list[tuple[str, float]]],
    histories: list[list[str]],
    markov: LastItemMarkov,
    alpha: float,
    k: int,
) -> list[list[str]]:
    """Top-k items by (1 - alpha) exp(model log-prob) + alpha P(item | last item) per row.

    Candidates: the model's beam items and the last item's observed successors. A row whose last item has no
    recorded transition keeps the model's order (the chain has nothing to add).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"the blend weight must lie in [0, 1], not {alpha}")
    if len(recs) != len(histories):
        raise ValueError("one list of model recommendations per history")
    out = []
    for row, history in zip(recs, histories, strict=True):
        scores = {item: (1.0 - alpha) * math.exp(logp) for item, logp in row}
        successors = markov.transitions.get(history[-1]) if history else None
        if successors and alpha > 0:
            total = sum(successors.values())
            for item, count in successors.items():
                scores[item] = scores.get(item, 0.0) + alpha * count / total
        out.append(sorted(scores, key=lambda item: -scores[item])[:k])
    return out


def select_blend_weight(
    recs: list[list[tuple[str, float]]],
    histories: list[list[str]],
    targets: list[str],
    markov: LastItemMarkov,
    k: int = 10,
    weights: tuple[float, ...] = BLEND_WEIGHTS,
) -> tuple[float, dict[float, dict[str, float]]]:
    """The weight with the best mean of HR@k and NDCG@k on these (valid) rows, and every weight's metrics.

    Both metrics count: HR alone favours the model's wide recall, NDCG alone the chain's sharp top ranks.
    """
    scored = {
        alpha: hit_rate_ndcg(blend_with_transitions(recs, histories, markov, alpha, k), targets, [k])
        for alpha in weights
    }
    best = max(weights, key=lambda a: (scored[a][f"HR@{k}"] + scored[a][f"NDCG@{k}"], -a))
    return best, scored
