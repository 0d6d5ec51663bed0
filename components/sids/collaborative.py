"""Collaborative item embeddings from the event log, and their fusion with content embeddings.

Items bought close together in users' sequences get similar vectors: windowed co-occurrence counts ->
positive PMI -> truncated SVD (the matrix-factorisation view of item2vec). Items with no events get a zero
collaborative part, and a new item in a refresh is folded in as the mean of its co-occurring items' vectors,
so the existing basis never changes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.linalg import svds


def cooccurrence(events: pd.DataFrame, item_index: dict[str, int], window: int = 3) -> sp.csr_matrix:
    """Symmetric counts of items within `window` positions in the same user's time-ordered sequence."""
    ordered = events.sort_values(["user_id", "event_timestamp"], kind="stable")
    rows, cols = [], []
    for _, items in ordered.groupby("user_id", sort=False)["item_id"]:
        idx = [item_index[i] for i in items if i in item_index]
        for offset in range(1, window + 1):
            a, b = idx[:-offset], idx[offset:]
            rows += a + b
            cols += b + a
    n = len(item_index)
    data = np.ones(len(rows), dtype=np.float32)
    return sp.csr_matrix((data, (rows, cols)), shape=(n, n))


def collaborative_embeddings(
    events: pd.DataFrame, item_ids: list[str], dim: int = 64, window: int = 3, seed: int = 0
) -> np.ndarray:
    """[n_items, dim] L2-normalised PPMI-SVD embeddings (zeros for items without co-occurrences)."""
    index = {iid: i for i, iid in enumerate(item_ids)}
    counts = cooccurrence(events, index, window)
    total = counts.sum()
    if total == 0:
        return np.zeros((len(item_ids), dim), dtype=np.float32)
    row = np.asarray(counts.sum(1)).ravel()
    coo = counts.tocoo()
    pmi = np.log(coo.data * total / (row[coo.row] * row[coo.col]))
    keep = pmi > 0
    ppmi = sp.csr_matrix((pmi[keep], (coo.row[keep], coo.col[keep])), shape=counts.shape)
    k = min(dim, min(ppmi.shape) - 1)
    rng = np.random.default_rng(seed)
    u, s, _ = svds(ppmi.astype(np.float64), k=k, v0=rng.standard_normal(ppmi.shape[0]))
    vectors = (u * np.sqrt(s)).astype(np.float32)
    if k < dim:
        vectors = np.pad(vectors, ((0, 0), (0, dim - k)))
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.where(norms > 0, vectors / np.maximum(norms, 1e-9), 0.0).astype(np.float32)


def fold_in(
    events: pd.DataFrame, new_ids: list[str], known_ids: list[str], known_vectors: np.ndarray, window: int = 3
) -> np.ndarray:
    """Collaborative vectors for new items: the normalised mean of the known items they co-occur with."""
    known_set = set(known_ids)
    ids = list(known_ids) + [i for i in new_ids if i not in known_set]
    index = {iid: i for i, iid in enumerate(ids)}
    counts = cooccurrence(events, index, window)
    n_known = len(known_ids)
    out = np.zeros((len(new_ids), known_vectors.shape[1]), dtype=np.float32)
    for r, iid in enumerate(new_ids):
        weights = counts[index[iid], :n_known].toarray().ravel()
        if weights.sum() > 0:
            v = weights @ known_vectors
            out[r] = v / max(np.linalg.norm(v), 1e-9)
    return out


def fuse(content: np.ndarray, collab: np.ndarray, content_weight: float, collab_weight: float) -> np.ndarray:
    """Weighted concatenation of the two normalised views; the result is L2-normalised again."""
    fused = np.concatenate([content * np.sqrt(content_weight), collab * np.sqrt(collab_weight)], axis=1)
    return (fused / np.maximum(np.linalg.norm(fused, axis=1, keepdims=True), 1e-9)).astype(np.float32)
