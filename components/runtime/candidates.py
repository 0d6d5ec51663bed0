"""Candidates for the ranking stage and their features: the generative beam pooled with co-occurrence sources.

Sources, per row (user history h, most recent last):
- the generative model's beam (item, log-prob), when there is one;
- the last item's 30 most frequent successors;
- successors of the last `window` items, each item's counts divided by its distance from the end (top 30);
- "nearby": items bought two to `window` purchases after one of the last `window` items (counted from training
  examples whose history holds that item 2..window places before the target), weighted by distance (top 20);
- two-step successors: sum over the last item's successors j of P(j | last) P(i | j) (top 20);
- the 20 most bought items, and the last `window` items of the history itself (repeat purchases);
- with a runtime.content.ContentIndex: the 20 items nearest in content to the history (the rows no count reaches
  get candidates that read like what the user bought), and every candidate's content similarity as features.
Counts come from training examples only (ItemStats.from_examples), so features of valid rows are fit on train
and features of test rows on train + valid, as every baseline is.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from components.runtime.content import ContentIndex

MODEL_FEATURES = ("model_logp", "model_logp_gap", "model_rank")
COUNT_FEATURES = (
    "last_p",
    "last_count",
    "last_total",
    "second_last_p",
    "recent_successors",
    "recent_nearby",
    "two_step",
    "popularity",
    "popularity_rank",
    "history_length",
    "in_history",
    "history_position",
    "last_rank",
)
SID_FEATURES = ("same_first_code_as_last", "same_prefix_as_last", "first_code_share_of_history")
CONTENT_FEATURES = ("content_history", "content_last")
CONTENT_CANDIDATES = 20
NOT_IN_BEAM_RANK = 60  # model_rank of a candidate the beam did not produce
ABSENT_POSITION = 100  # history_position / last_rank of an item that is not there


def feature_names(with_model: bool, with_sids: bool, with_content: bool = False) -> list[str]:
    """Column names of candidate_features' matrix for these switches, in order."""
    return [
        *(MODEL_FEATURES if with_model else ()),
        *COUNT_FEATURES,
        *(SID_FEATURES if with_sids else ()),
        *(CONTENT_FEATURES if with_content else ()),
    ]


@dataclass
class ItemStats:
    """Counts from training examples (history -> target): what the count features and sources read."""

    successors: dict[str, Counter] = field(default_factory=dict)  # last item -> next item counts
    nearby: dict[str, Counter] = field(default_factory=dict)  # item up to `window` before a target -> target
    popularity: Counter = field(default_factory=Counter)  # target counts
    window: int = 5
    _ranks: dict[str, int] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_examples(cls, histories: Iterable[Sequence[str]], targets: Iterable[str], window: int = 5) -> ItemStats:
        """One example counts its own last transition and the items before it: its history's inner transitions
        are the targets of the same user's earlier examples, counted there."""
        stats = cls(window=window)
        for history, target in zip(histories, targets, strict=True):
            stats._count(history, str(target), 1)
        return stats

    def _count(self, history: Sequence[str], target: str, n: int) -> None:
        """Add one example's contribution `n` times (-1 takes it out again; a count that reaches 0 is removed, so
        the item no longer joins a row's candidates from that source)."""
        counters = [self.popularity]
        if len(history):
            counters.append(self.successors.setdefault(str(history[-1]), Counter()))
        counters += [self.nearby.setdefault(str(item), Counter()) for item in list(history)[-self.window : -1]]
        for counter in counters:
            counter[target] += n
            if counter[target] <= 0:
                del counter[target]
        self._ranks = None

    @contextmanager
    def leave_out(self, history: Sequence[str], target: str) -> Iterator[ItemStats]:
        """These counts without one of their own examples, restored on exit: the features a training row would
        have if it were unseen (a ranker fit or applied on the rows the counts come from would otherwise read its
        own transition in its target's features)."""
        self._count(history, str(target), -1)
        try:
            yield self
        finally:
            self._count(history, str(target), 1)

    def _popularity_ranks(self) -> dict[str, int]:
        """item -> rank by purchases, best first (computed once: every request reads it)."""
        if self._ranks is None:
            self._ranks = {i: r for r, (i, _) in enumerate(self.popularity.most_common())}
        return self._ranks

    def popularity_rank(self, item: str) -> int:
        """0 for the most bought item; items never bought rank after all others."""
        ranks = self._popularity_ranks()
        return ranks.get(item, len(ranks))

    def most_bought(self, n: int) -> list[str]:
        return list(itertools.islice(self._popularity_ranks(), n))


def sid_codes(sidmap) -> dict[str, tuple[int, ...]]:
    """item -> SID codes of a sids.sidmap.SidMap's recommendable items: the `codes` argument below (an item
    outside it never joins the candidates)."""
    active = sidmap.active()
    return {item: tuple(int(c) for c in row) for item, row in zip(active.item_ids, active.codes, strict=True)}


def _top(counter: Counter, n: int) -> list[str]:
    return [item for item, _ in counter.most_common(n)]


def candidate_features(
    history: Sequence[str],
    stats: ItemStats,
    beam: Sequence[tuple[str, float]] | None = None,
    codes: dict[str, tuple[int, ...]] | None = None,
    eligible: Callable[[str], bool] | None = None,
    include: Sequence[str] = (),
    content: ContentIndex | None = None,
) -> tuple[list[str], np.ndarray]:
    """One row's candidates and their feature matrix [n_candidates, len(feature_names(...))].

    beam: the generative model's (item, log-prob) candidates, best first (None: no model features or source).
    codes: item -> SID codes (None: no SID features). Only items in `codes` (the servable catalog) and accepted
    by `eligible` (e.g. inside the row's think-ahead prefixes) join from the count sources; beam items, already
    decoded under those rules, are always kept, and so are the `include` items (after the beam's, in their order):
    items another stage asks the features of, whatever the sources say about them.
    content: the catalog's content embeddings (None: no content source or features).
    """
    history = [str(item) for item in history]
    last = history[-1] if history else None
    window = stats.window
    successors = stats.successors.get(last, Counter()) if last is not None else Counter()
    n_last = sum(successors.values())
    second = stats.successors.get(history[-2], Counter()) if len(history) > 1 else Counter()
    n_second = sum(second.values())
    recent_successors: Counter = Counter()
    recent_nearby: Counter = Counter()
    for distance, item in enumerate(reversed(history[-window:])):
        for nxt, count in stats.successors.get(item, {}).items():
            recent_successors[nxt] += count / (distance + 1)
        for nxt, count in stats.nearby.get(item, {}).items():
            recent_nearby[nxt] += count / (distance + 1)
    two_step: Counter = Counter()
    for mid, count in successors.items():
        row = stats.successors.get(mid, {})
        total = sum(row.values())
        for nxt, c in row.items():
            two_step[nxt] += (count / n_last) * (c / total)

    logps = dict(beam or [])
    beam_rank = {item: r for r, (item, _) in enumerate(beam or [])}
    items = list(logps)
    seen = set(items)
    for item in map(str, include):
        if item not in seen:
            seen.add(item)
            items.append(item)
    pooled = [
        *_top(successors, 30),
        *_top(recent_successors, 30),
        *_top(recent_nearby, 20),
        *_top(two_step, 20),
        *stats.most_bought(20),
        *reversed(history[-window:]),
        *(item for item, _ in (content.neighbours(history, CONTENT_CANDIDATES) if content is not None else ())),
    ]
    for item in pooled:
        if item not in seen and (codes is None or item in codes) and (eligible is None or eligible(item)):
            seen.add(item)
            items.append(item)

    best = max(logps.values()) if logps else 0.0
    floor = min(logps.values()) - 1.0 if logps else 0.0
    last_rank = {item: r for r, (item, _) in enumerate(successors.most_common())}
    position = {item: d for d, item in enumerate(reversed(history))}
    last_codes = codes.get(last) if codes and last is not None else None
    first_codes = Counter(codes[item][0] for item in history if item in codes) if codes else Counter()
    rows = []
    for item in items:
        row = []
        if beam is not None:
            logp = logps.get(item, floor)
            row += [logp, logp - best, math.log1p(beam_rank.get(item, NOT_IN_BEAM_RANK))]
        row += [
            successors.get(item, 0) / n_last if n_last else 0.0,
            math.log1p(successors.get(item, 0)),
            math.log1p(n_last),
            second.get(item, 0) / n_second if n_second else 0.0,
            math.log1p(recent_successors.get(item, 0.0)),
            math.log1p(recent_nearby.get(item, 0.0)),
            two_step.get(item, 0.0),
            math.log1p(stats.popularity.get(item, 0)),
            math.log1p(stats.popularity_rank(item)),
            math.log1p(len(history)),
            float(item in position),
            math.log1p(position.get(item, ABSENT_POSITION)),
            math.log1p(last_rank.get(item, ABSENT_POSITION)),
        ]
        if codes is not None:
            code = codes.get(item)
            row += [
                float(code is not None and last_codes is not None and code[0] == last_codes[0]),
                float(code is not None and last_codes is not None and code[:2] == last_codes[:2]),
                first_codes.get(code[0], 0) / len(history) if code is not None and history else 0.0,
            ]
        rows.append(row)
    width = len(feature_names(beam is not None, codes is not None))  # the content columns are added below
    matrix = np.asarray(rows, dtype=np.float32).reshape(len(items), width)
    if content is not None:
        similar = [content.similarity(content.query(h), items) for h in (history, history[-1:])]
        matrix = np.column_stack([matrix, *similar]).astype(np.float32)
    return items, matrix


def candidate_rows(
    histories: Iterable[Sequence[str]],
    stats: ItemStats,
    beams: Sequence[Sequence[tuple[str, float]]] | None = None,
    codes: dict[str, tuple[int, ...]] | None = None,
    eligible: Sequence[Callable[[str], bool] | None] | None = None,
    content: ContentIndex | None = None,
) -> list[tuple[list[str], np.ndarray]]:
    """candidate_features for every history (with its row of `beams` and its `eligible` rule when given)."""
    histories = list(histories)
    if beams is not None and len(beams) != len(histories):
        raise ValueError(f"{len(beams)} beams for {len(histories)} histories")
    if eligible is not None and len(eligible) != len(histories):
        raise ValueError(f"{len(eligible)} eligibility rules for {len(histories)} histories")
    return [
        candidate_features(
            history,
            stats,
            beams[r] if beams is not None else None,
            codes,
            eligible[r] if eligible is not None else None,
            content=content,
        )
        for r, history in enumerate(histories)
    ]
