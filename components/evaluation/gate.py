"""The promotion gate: a candidate model against the production model and the baselines, on one holdout.

Everything is scored in item space on the same holdout rows, so the production model is compared whatever its
SID version (after a SID rebuild it decodes with its own map; items it does not know are simply never in its
lists). The bar: the candidate must be no worse than production by more than `tolerance` on the gate metric, and
better than the strongest baseline (most-popular, last-item Markov, fit on the training rows), with no invalid
item. The holdout must not be the rows that picked the candidate's epochs (the pipeline's examples step keeps
them apart), or the candidate would be scored on rows it was selected on.
"""

from __future__ import annotations

import logging

import pandas as pd

from components.evaluation.baselines import LastItemMarkov, MostPopular
from components.evaluation.evaluate import list_metrics, score_recommender
from components.runtime.recommender import Recommender

log = logging.getLogger(__name__)


def gate(
    candidate: Recommender,
    production: Recommender | None,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    ks: list[int],
    metric: str = "NDCG@10",
    tolerance: float = 0.0,
    batch_size: int = 16,
) -> dict:
    """Score candidate, production and baselines on `holdout`; decide. Returns plain types (XCom-ready):
    {"promoted", "metric", "candidate", "production", "bar", "reasons", "scores", "rows"}."""
    if metric.split("@")[0] not in ("HR", "NDCG") or int(metric.split("@")[1]) not in ks:
        raise ValueError(f"gate metric {metric!r} must be HR@k or NDCG@k with k in {ks}")
    scores = {"candidate": score_recommender(candidate, holdout, ks, batch_size)}
    if production is not None:
        scores["production"] = score_recommender(production, holdout, ks, batch_size)
    histories = [list(h) for h in holdout["history"]]
    targets = holdout["target"].astype(str).tolist()
    for baseline in (MostPopular(), LastItemMarkov()):
        baseline.fit(train)
        scores[baseline.name] = list_metrics(baseline.recommend(histories, max(ks)), targets, ks)
    value = scores["candidate"][metric]
    baseline_bar = max(scores[name][metric] for name in ("most-popular", "last-item Markov"))
    reasons = []
    if value <= baseline_bar:
        reasons.append(f"candidate {metric} {value:.4f} <= best baseline {baseline_bar:.4f}")
    production_value = scores["production"][metric] if production is not None else None
    if production_value is not None and value < production_value - tolerance:
        reasons.append(
            f"candidate {metric} {value:.4f} < production {production_value:.4f} - tolerance {tolerance:.4f}"
        )
    if scores["candidate"]["invalid_rate"] > 0:
        reasons.append(f"candidate returned invalid items ({scores['candidate']['invalid_rate']:.3f} of them)")
    result = {
        "promoted": not reasons,
        "metric": metric,
        "candidate": value,
        "production": production_value,
        "bar": max(baseline_bar, (production_value - tolerance) if production_value is not None else baseline_bar),
        "tolerance": tolerance,
        "reasons": reasons,
        "rows": len(holdout),
        "candidate_sid_version": candidate.sid_version,
        "production_sid_version": production.sid_version if production is not None else None,
        "scores": scores,
    }
    log.info(
        "gate: %s (%s candidate %.4f, production %s, baselines %.4f)%s",
        "PROMOTE" if result["promoted"] else "REFUSE",
        metric,
        value,
        "none" if production_value is None else f"{production_value:.4f}",
        baseline_bar,
        "" if not reasons else ": " + "; ".join(reasons),
    )
    return result
