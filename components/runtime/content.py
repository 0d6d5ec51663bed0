"""Items' content neighbours: which catalog items read like the ones a user bought.

Why: on 85% of amazon-industrial's valid rows no count leads from the history to the target (docs/benchmark.md,
segments); there the items nearest in content to the history find the target in their top 10 about twice as
often as the generator does. The ranking stage pools them as a candidate source with their similarities as
features, and training can distil them into the generator's targets (training.examples.content_teacher).

A history's query is the mean of its items' L2-normalised content embeddings (the encoder the SIDs are built
with), each item weighted DECAY per step back from the end, so the newest purchase counts most.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from components.sids.embeddings import content_embeddings

DECAY = 0.7
FILE = "content.npz"


@dataclass
class ContentIndex:
    """item ids and their L2-normalised content embeddings [n_items, dim], in one order."""

    item_ids: list[str]
    vectors: np.ndarray
    _rows: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.item_ids = [str(item) for item in self.item_ids]
        self.vectors = np.ascontiguousarray(self.vectors, dtype=np.float32)
        if self.vectors.ndim != 2 or len(self.vectors) != len(self.item_ids):
            raise ValueError(f"{len(self.item_ids)} item ids but vectors of shape {self.vectors.shape}")
        self._rows = {item: i for i, item in enumerate(self.item_ids)}

    @classmethod
    def from_catalog(cls, catalog: pd.DataFrame, encoder: str) -> ContentIndex:
        """The catalog's items encoded by `encoder` (sids.embeddings: cached per text, so the SID build's
        encoding is reused)."""
        return cls(catalog["item_id"].astype(str).tolist(), content_embeddings(catalog, encoder))

    def query(self, history: Sequence[str]) -> np.ndarray | None:
        """The history's query vector (module docstring); None when none of its items has an embedding."""
        rows = [self._rows[str(item)] for item in history if str(item) in self._rows]
        if not rows:
            return None
        weights = DECAY ** np.arange(len(rows) - 1, -1, -1, dtype=np.float32)
        return (weights @ self.vectors[rows]) / weights.sum()

    def similarity(self, query: np.ndarray | None, items: Sequence[str]) -> np.ndarray:
        """Cosine-like score of each item with the query (0 for an item without an embedding or no query)."""
        out = np.zeros(len(items), dtype=np.float32)
        if query is None:
            return out
        known = [(i, self._rows[str(item)]) for i, item in enumerate(items) if str(item) in self._rows]
        if known:
            positions, rows = zip(*known, strict=True)
            out[list(positions)] = self.vectors[list(rows)] @ query
        return out

    def neighbours(self, history: Sequence[str], n: int, exclude: Sequence[str] = ()) -> list[tuple[str, float]]:
        """The n items nearest the history's query with a positive score, best first; the history's own items
        and `exclude` left out."""
        query = self.query(history)
        if query is None or n <= 0:
            return []
        scores = self.vectors @ query
        skip = [self._rows[str(item)] for item in (*history, *exclude) if str(item) in self._rows]
        scores[skip] = -np.inf
        k = min(n, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self.item_ids[i], float(scores[i])) for i in top if scores[i] > 0]

    def save(self, directory: Path) -> Path:
        """content.npz in `directory` (float16 vectors: the scores need no more, and the file halves)."""
        path = Path(directory) / FILE
        np.savez(path, item_ids=np.array(self.item_ids), vectors=self.vectors.astype(np.float16))
        return path

    @classmethod
    def load(cls, directory: Path) -> ContentIndex:
        with np.load(Path(directory) / FILE) as data:
            return cls(data["item_ids"].tolist(), data["vectors"].astype(np.float32))
