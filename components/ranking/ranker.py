"""LightGBM lambdarank over each row's pooled candidates (ranking.candidates).

The ranker learns from rows whose features were fit on earlier data than their targets: valid rows with counts
(and a generative model) fit on train. Test rows are then ranked with counts and models refit on train + valid,
as every baseline is; nothing is chosen on test. The valid score of a ranker trained on valid is measured by
k-fold cross-validation, so no row is scored by a ranker that saw it.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightgbm as lgb
import numpy as np

# Settings from the exploration on valid (5-fold cross-validation, README "Ranking stage"): 100 and 300 rounds
# scored within 0.001 of each other; min_data_in_leaf keeps leaves at >= 50 candidates of ~4.5k rows.
PARAMS: dict = {
    "objective": "lambdarank",
    "metric": "ndcg",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 50,
    "lambdarank_truncation_level": 20,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 2,
    "seed": 0,
    "verbosity": -1,
}
ROUNDS = 150

Row = tuple[list[str], np.ndarray]  # one history's candidate items and their feature matrix


def train_ranker(rows: Sequence[Row], targets: Sequence[str], rounds: int = ROUNDS, params: dict | None = None):
    """Fit lambdarank on these rows (label 1 for the row's target among its candidates). Rows whose candidates
    miss the target carry no ranking signal; LightGBM skips them."""
    if len(rows) != len(targets):
        raise ValueError(f"{len(rows)} candidate rows but {len(targets)} targets")
    kept = [(items, x, str(t)) for (items, x), t in zip(rows, targets, strict=True) if len(items)]
    if not kept:
        raise ValueError("no row has candidates: nothing to train the ranker on")
    features = np.concatenate([x for _, x, _ in kept])
    labels = np.concatenate([[float(item == t) for item in items] for items, _, t in kept])
    if not labels.any():
        raise ValueError("no row's candidates contain its target: nothing to learn")
    data = lgb.Dataset(features, labels, group=[len(items) for items, _, _ in kept])
    return lgb.train({**PARAMS, **(params or {})}, data, num_boost_round=rounds)


def rerank(booster, rows: Sequence[Row], k: int) -> list[list[tuple[str, float]]]:
    """Each row's top-k (item, ranker score), best first; ties keep the candidates' pooled order. One predict
    call for all rows: LightGBM's per-call cost would otherwise be paid per request."""
    sizes = [len(items) for items, _ in rows]
    if not sum(sizes):
        return [[] for _ in rows]
    scores = np.split(booster.predict(np.concatenate([x for _, x in rows])), np.cumsum(sizes)[:-1])
    out = []
    for (items, _), row_scores in zip(rows, scores, strict=True):
        order = np.argsort(-row_scores, kind="stable")[:k]
        out.append([(items[i], float(row_scores[i])) for i in order])
    return out


def cross_validated(
    rows: Sequence[Row], targets: Sequence[str], k: int, folds: int = 5, seed: int = 0, rounds: int = ROUNDS
) -> list[list[tuple[str, float]]]:
    """Every row ranked by a ranker trained on the other folds: an honest score of 'train on these rows'."""
    order = np.random.RandomState(seed).permutation(len(rows))
    ranked: list = [None] * len(rows)
    for part in np.array_split(order, folds):
        held = set(part.tolist())
        train_idx = [i for i in range(len(rows)) if i not in held]
        booster = train_ranker([rows[i] for i in train_idx], [targets[i] for i in train_idx], rounds)
        for i, row in zip(part, rerank(booster, [rows[i] for i in part], k), strict=True):
            ranked[i] = row
    return ranked
