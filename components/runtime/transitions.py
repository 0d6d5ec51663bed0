"""Last-item transitions, and the generative candidates blended with them (the hybrid recommender).

Why: on amazon-industrial the generative model and the last-item transition chain hit different rows (README,
"Training options tried on valid": 357 both, 153 the model only, 141 the chain only), and the chain ranks the
successors it has seen often near the top. Mixing the two distributions,
p(item) = (1 - w) p_model(item | history) + w P(item | last item), keeps both; the benchmark picks w on valid
(evaluation.blend) and the hybrid is served by passing that w to `sidrec export triton --blend-weight`.

The table travels with the model: training writes it from the model's own training examples
(`transitions.json` in the model directory), so the served chain is fit on exactly the data the model saw.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from components.errors import SidrecError

FILE_NAME = "transitions.json"
FORMAT = "sidrec-transitions/1"


class TransitionsError(SidrecError):
    """A transition table that is missing or not sidrec's."""


@dataclass
class TransitionTable:
    """successors[last item][next item] = how many training examples went from one to the other."""

    successors: dict[str, dict[str, int]]
    examples: int = 0

    @classmethod
    def from_examples(cls, histories: Iterable[Sequence[str]], targets: Iterable[str]) -> TransitionTable:
        """Count each example's last transition only: an example's history is a prefix of the same user's later
        examples, so their inner transitions are counted when those examples are."""
        successors: dict[str, dict[str, int]] = {}
        examples = 0
        for history, target in zip(histories, targets, strict=True):
            examples += 1
            if len(history):
                row = successors.setdefault(str(history[-1]), {})
                row[str(target)] = row.get(str(target), 0) + 1
        return cls(successors, examples)

    def probabilities(self, last_item: str | None) -> dict[str, float]:
        """P(next | last item); empty for an unknown (or missing) last item."""
        row = self.successors.get(last_item) if last_item is not None else None
        if not row:
            return {}
        total = sum(row.values())
        return {item: count / total for item, count in row.items()}

    def other_successors(self, last_item: str | None, target: str) -> dict[str, int]:
        """The counts after `last_item` with one last -> target transition taken out (the row's own, when the
        row is among the counted examples) and items left without any count dropped: what a count teacher may
        tell a row beyond its own label."""
        row = self.successors.get(last_item) if last_item is not None else None
        counts = {item: n - (item == target) for item, n in (row or {}).items()}
        return {item: n for item, n in counts.items() if n > 0}

    def top_successors(
        self, history: Sequence[str], n: int, window: int = 1, leave_out: str | None = None
    ) -> list[str]:
        """The n most frequent successors of the history's last `window` items, each item's counts divided by
        its distance from the end (window 1: the last item's counts), best first, ties by item id (the same
        table always writes the same prompt). `leave_out`: one last item -> leave_out transition taken out
        first (other_successors), as for a training row whose own transition is among the counts."""
        if n <= 0 or not len(history):
            return []
        scores: dict[str, float] = {}
        for distance, item in enumerate(reversed(list(history)[-window:]), start=1):
            item = str(item)
            if distance == 1 and leave_out is not None:
                counts = self.other_successors(item, leave_out)
            else:
                counts = self.successors.get(item) or {}
            for successor, count in counts.items():
                scores[successor] = scores.get(successor, 0.0) + count / distance
        return [item for item, _ in sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))[:n]]

    def save(self, path: Path) -> Path:
        """Write atomically (temp file + rename): a reader sees the old table or the new one, never half."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w") as f:
            json.dump({"format": FORMAT, "examples": self.examples, "successors": self.successors}, f)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: Path) -> TransitionTable:
        path = Path(path)
        if not path.exists():
            raise TransitionsError(
                f"{path}: no transition table. Models trained by sidrec write one; for an older model dir run "
                f"`sidrec training transitions --model-dir DIR --split train [--split valid]` with the splits it "
                f"was trained on"
            )
        try:
            data = json.loads(path.read_text())
        except ValueError as exc:
            raise TransitionsError(f"{path}: not valid JSON ({exc}); write it again") from exc
        if data.get("format") != FORMAT or not isinstance(data.get("successors"), dict):
            raise TransitionsError(f"{path}: not a sidrec transition table (expected format {FORMAT!r})")
        return cls(
            {str(k): {str(i): int(c) for i, c in v.items()} for k, v in data["successors"].items()},
            int(data.get("examples", 0)),
        )


def mix_row(
    candidates: list[tuple[str, float]],
    other: Mapping[str, float],
    weight: float,
    k: int,
    eligible: Callable[[str], bool] | None = None,
) -> list[tuple[str, float]]:
    """Top-k (item, log mixed probability) of one row: the model's candidates (item, log-prob) and a second
    distribution over items (those `eligible` accepts, e.g. inside think-ahead prefixes), by
    (1 - weight) p_model + weight p_other; an item absent from one side counts 0 there. Weight 0 returns the
    candidates unchanged."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"the blend weight must lie in [0, 1], not {weight}")
    if weight == 0.0:
        return list(candidates[:k])
    scores = {item: (1.0 - weight) * math.exp(logp) for item, logp in candidates}
    for item, p in other.items():
        if eligible is None or item in scores or eligible(item):
            scores[item] = scores.get(item, 0.0) + weight * p
    ranked = sorted(scores.items(), key=lambda pair: -pair[1])[:k]
    return [(item, math.log(score) if score > 0 else float("-inf")) for item, score in ranked]


def blend_row(
    candidates: list[tuple[str, float]],
    last_item: str | None,
    table: TransitionTable,
    weight: float,
    k: int,
    eligible: Callable[[str], bool] | None = None,
) -> list[tuple[str, float]]:
    """mix_row with P(item | last item) from the transition chain as the second distribution."""
    return mix_row(candidates, table.probabilities(last_item), weight, k, eligible)


def blend(
    recs: list[list[tuple[str, float]]],
    histories: list[list[str]],
    table: TransitionTable,
    weight: float,
    k: int,
    eligible: Sequence[Callable[[str], bool] | None] | None = None,
) -> list[list[tuple[str, float]]]:
    """blend_row for every row, with that row's `eligible` rule if given; a row whose last item has no recorded
    transition keeps the model's order, as the chain has nothing to add."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"the blend weight must lie in [0, 1], not {weight}")
    if len(recs) != len(histories) or (eligible is not None and len(eligible) != len(recs)):
        raise ValueError("one list of model recommendations (and eligibility rule) per history")
    return [
        blend_row(row, history[-1] if history else None, table, weight, k, eligible[r] if eligible else None)
        for r, (row, history) in enumerate(zip(recs, histories, strict=True))
    ]
