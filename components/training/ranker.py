"""Learning the ranking stage: LightGBM lambdarank over each row's pooled candidates (runtime.candidates).

The ranker learns from `rank` rows (valid) whose features come from counts over `fit` examples (train) and, when
a recommender is given, from its beams: its models must have been trained on `fit` only, so the rows' targets are
as unseen to them as a served request's. The served counts are refit on `serve` examples (train + valid, what
the served models are retrained on), as the benchmark's test rows are. The score of a ranker learnt on these
rows is measured by k-fold cross-validation, so no row is scored by a ranker that saw it. The result is a
runtime.ranker.RankerArtifact, which the Recommender serves.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import lightgbm as lgb
import numpy as np
import pandas as pd

from components.metrics import hit_rate_ndcg
from components.runtime.candidates import ItemStats, candidate_rows, sid_codes
from components.runtime.content import ContentIndex
from components.runtime.ranker import RankerArtifact, Row, rerank
from components.runtime.recommender import Recommender

# Settings from the exploration on valid (5-fold cross-validation, experiments/README.md "Ranking stage"): 100 and
# 300 rounds scored within 0.001 of each other; min_data_in_leaf keeps leaves at >= 50 candidates of ~4.5k rows.
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


def learn_ranker(
    fit: pd.DataFrame,
    rank: pd.DataFrame,
    beams: list | None = None,
    codes: dict[str, tuple[int, ...]] | None = None,
    ks: tuple[int, ...] = (3, 5, 10),
    content: ContentIndex | None = None,
) -> tuple[object, dict]:
    """(LightGBM booster, meta) learnt on the `rank` rows' candidates, counted from `fit` examples (and the rows'
    beams / SID codes / content embeddings when given); meta holds the rows' 5-fold cross-validated metrics
    ("cross_validated"), the candidates' recall and the fit's seconds. The benchmark and fit_ranker both learn
    through here."""
    stats = ItemStats.from_examples(fit["history"], fit["target"])
    targets = rank["target"].astype(str).tolist()
    rows = candidate_rows([list(h) for h in rank["history"]], stats, beams, codes, content=content)
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
    recommender: Recommender | None = None,
    beam_size: int = 20,
    batch_size: int = 16,
    ks: tuple[int, ...] = (3, 5, 10),
    content: ContentIndex | None = None,
) -> RankerArtifact:
    """A ranker learnt on `rank` rows (module docstring; learn_ranker), serving counts from `serve` examples
    (default: fit + rank). Without a recommender it ranks co-occurrence candidates only and reads no SID codes;
    with one, it reads the recommender's beam of `beam_size` (the served beam size: the Recommender refuses a
    ranker learnt with another). With `content` (the catalog's content embeddings) it pools the history's
    content neighbours and reads content similarities, and serves them from its directory."""
    serve = pd.concat([fit, rank], ignore_index=True) if serve is None else serve
    beams, codes = None, None
    if recommender is not None:
        histories = [list(h) for h in rank["history"]]
        beams = recommender.generate(histories, beam_size, batch_size=batch_size)
        codes = sid_codes(recommender.sidmap)
    booster, meta = learn_ranker(fit, rank, beams, codes, ks, content)
    meta.update(
        {
            "serve_examples": len(serve),
            "model_version": recommender.model_version if recommender is not None else None,
            "sid_version": recommender.sidmap.version if recommender is not None else None,
            "beam_size": beam_size,
            "content_items": len(content.item_ids) if content is not None else 0,
            "rounds": ROUNDS,
            "params": PARAMS,
        }
    )
    served = ItemStats.from_examples(serve["history"], serve["target"])
    return RankerArtifact(
        booster, served, with_model=beams is not None, with_sids=codes is not None, meta=meta, content=content
    )
