"""Teachers for preference alignment (training.align): a soft preference over each mined row's candidates.

A teacher takes the mined rows (histories, candidates with the target first, targets) and returns [N, C]: each
row's preference over its candidates, summing to 1, or a zero row where it knows nothing. Both teachers are fit
on the model's own training rows with each row's own example left out, so a mined row looks to the teacher as an
unseen request would (the teacher never just repeats the label):

- "transitions": P(candidate | last item) from the transition chain of the training rows.
- "ranker": a LightGBM lambdarank over the ranking stage's count and SID features (runtime.candidates, no model
  features), fit on other training rows with leave-one-out counts; its scores become probabilities through a
  temperature fit on held-out fit rows (the likelihood of the target among each row's candidates). Why: the
  count-only ranking stage ranks better than the generator on NDCG@10 (the co-occurrence + LightGBM baseline),
  and it reads the whole recent history, two-step and nearby co-purchases and popularity, where the transition
  chain sees the last item only and is silent when it has not seen it. Why no model features: on its own
  training rows the model's log-probabilities come from a model that fit those targets, so a ranker reading them
  would teach the model its own overconfidence.

Measured on amazon-industrial valid (docs/benchmark.md, levers tried): the transition teacher is the selected one;
the ranker teacher, although it ranks better alone, spreads most of its mass off the target on every row and
aligned the served pair to below the transition teacher at every weight tried.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from components.errors import SidrecError
from components.runtime.candidates import ItemStats, candidate_features, sid_codes
from components.runtime.transitions import TransitionTable
from components.sids.sidmap import SidMap
from components.training.ranker import train_ranker

log = logging.getLogger(__name__)

# (histories, candidates (target first), targets) -> [N, C] preference
Teacher = Callable[[list[list[str]], list[list[str]], list[str]], torch.Tensor]
TEMPERATURES = tuple(float(t) for t in np.geomspace(0.1, 10.0, 41))


class TeacherError(SidrecError):
    """An alignment teacher that cannot be fit on the model's training rows."""


# -- transitions ---------------------------------------------------------------------------------------------
def teacher_table(train_examples: pd.DataFrame) -> TransitionTable:
    """The count teacher: the transition chain of the model's training rows."""
    return TransitionTable.from_examples(train_examples["history"], train_examples["target"])


def teacher_preferences(
    histories: list[list[str]], candidates: list[list[str]], targets: list[str], table: TransitionTable
) -> torch.Tensor:
    """[N, C] P(candidate | last item) from the transition chain, each row's own transition (last -> target) left
    out, normalised over the row's candidates (zero rows stay zero): the count teacher's preference."""
    width = max(len(c) for c in candidates)
    out = torch.zeros((len(candidates), width))
    for r, (history, items, target) in enumerate(zip(histories, candidates, targets, strict=True)):
        others = table.other_successors(history[-1] if history else None, target)
        counts = [others.get(item, 0) for item in items]
        total = sum(counts)
        if total > 0:
            out[r, : len(items)] = torch.tensor([c / total for c in counts])
    return out


# -- ranker --------------------------------------------------------------------------------------------------
def _left_out_rows(
    stats: ItemStats,
    histories: Sequence[Sequence[str]],
    targets: Sequence[str],
    codes: dict[str, tuple[int, ...]],
    include: Sequence[Sequence[str]] | None = None,
) -> list[tuple[list[str], np.ndarray]]:
    """candidate_features of each training row with its own example taken out of the counts."""
    rows = []
    for r, (history, target) in enumerate(zip(histories, targets, strict=True)):
        history = [str(i) for i in history]
        with stats.leave_out(history, str(target)):
            rows.append(candidate_features(history, stats, None, codes, None, include[r] if include else ()))
    return rows


def _log_likelihood(scores: list[np.ndarray], gold: list[int], temperature: float) -> float:
    """Mean log softmax(scores / T) of each row's target."""
    logps = [torch.log_softmax(torch.from_numpy(s / temperature), 0)[g] for s, g in zip(scores, gold, strict=True)]
    return float(sum(logps)) / len(logps)


class RankerTeacher:
    """The count-feature ranker as a teacher (see the module docstring); call it as a Teacher."""

    def __init__(self, stats: ItemStats, codes: dict[str, tuple[int, ...]], booster, temperature: float):
        self.stats, self.codes, self.booster, self.temperature = stats, codes, booster, temperature

    @classmethod
    def fit(
        cls,
        train_examples: pd.DataFrame,
        sidmap: SidMap,
        rows: int,
        seed: int = 0,
        exclude: pd.Index | None = None,
    ) -> RankerTeacher:
        """Fit on `rows` training rows outside `exclude` (the mined rows): the ranker on four fifths of them, the
        temperature on the other fifth. The counts are those of all `train_examples`, each row's own left out."""
        stats = ItemStats.from_examples(train_examples["history"], train_examples["target"].astype(str))
        codes = sid_codes(sidmap)
        pool = train_examples.drop(index=exclude, errors="ignore") if exclude is not None else train_examples
        pool = pool[pool["target"].astype(str).map(lambda t: t in codes)]
        fit = pool.sample(n=rows, random_state=seed) if len(pool) > rows else pool
        histories, targets = list(fit["history"]), fit["target"].astype(str).tolist()
        features = _left_out_rows(stats, histories, targets, codes)
        cut = max(1, len(features) * 4 // 5)
        if not any(t in items for (items, _), t in zip(features[:cut], targets[:cut], strict=True)):
            raise TeacherError(
                f"align.teacher ranker: none of the {cut} training rows it would learn from has its target among its "
                "count candidates, so there is no ranking to learn; use align.teacher: transitions, or align "
                "on more training rows"
            )
        booster = train_ranker(features[:cut], targets[:cut])
        scores, gold = [], []
        for (items, x), target in zip(features[cut:], targets[cut:], strict=True):
            if target in items:
                scores.append(booster.predict(x))
                gold.append(items.index(target))
        if scores:
            temperature = max(TEMPERATURES, key=lambda t: _log_likelihood(scores, gold, t))
        else:
            temperature = 1.0
        log.info(
            "ranker teacher: fit on %d rows, temperature %.3f from %d held-out rows with the target pooled",
            cut,
            temperature,
            len(scores),
        )
        return cls(stats, codes, booster, temperature)

    def __call__(self, histories: list[list[str]], candidates: list[list[str]], targets: list[str]) -> torch.Tensor:
        """[N, C] softmax(score / temperature) over each row's candidates."""
        width = max(len(c) for c in candidates)
        out = torch.zeros((len(candidates), width))
        rows = _left_out_rows(self.stats, histories, targets, self.codes, candidates)
        for r, ((_, x), items) in enumerate(zip(rows, candidates, strict=True)):
            scores = self.booster.predict(x[: len(items)]) / self.temperature  # `include` items come first
            out[r, : len(items)] = torch.softmax(torch.from_numpy(scores), 0).float()
        return out


def build_teacher(
    kind: str, train_examples: pd.DataFrame, sidmap: SidMap, rows: int, seed: int, exclude: pd.Index | None
) -> Teacher:
    """The configured teacher (align.teacher) fit on the model's training rows."""
    if kind == "transitions":
        table = teacher_table(train_examples)
        return lambda histories, candidates, targets: teacher_preferences(histories, candidates, targets, table)
    if kind == "ranker":
        return RankerTeacher.fit(train_examples, sidmap, rows, seed, exclude)
    raise ValueError(f"unknown align.teacher {kind!r}: use 'transitions' or 'ranker'")
