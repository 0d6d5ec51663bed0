"""Scale benchmark: RQ-KMeans SIDs for a million synthetic items on this machine (quantizer step only)."""

from __future__ import annotations

import resource
import time

import numpy as np

from components.sids.quantize import assign_unique, train_rqkmeans


def synthetic_embeddings(n: int, dim: int = 64, clusters: int = 2000, seed: int = 0) -> np.ndarray:
    """Clustered unit vectors: like item embeddings, many near-duplicates inside topics."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dim)).astype(np.float32)
    x = centers[rng.integers(0, clusters, n)] + 0.35 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def run_sid_benchmark(
    n_items: int = 1_000_000,
    dim: int = 64,
    levels: int = 3,
    codebook_size: int = 256,
    seed: int = 0,
    threads: int = 2,
    max_train: int = 100_000,
) -> dict:
    """Time k-means training on a sample + assignment of all items, then collision resolution.

    k-means sees at most `max_train` items (a sample is enough to place 256 centroids per level); assignment
    and collision resolution run on all items, which is what dominates at catalog scale.
    """
    import faiss

    faiss.omp_set_num_threads(threads)
    t_gen = time.perf_counter()
    x = synthetic_embeddings(n_items, dim, seed=seed)
    t0 = time.perf_counter()
    quantizer, raw = train_rqkmeans(x, levels, codebook_size, seed=seed, balanced=True, max_train=max_train)
    t1 = time.perf_counter()
    codes, moved = assign_unique(quantizer, x, raw)
    t2 = time.perf_counter()
    unique = len({tuple(r) for r in codes.tolist()})
    return {
        "items": n_items,
        "dim": dim,
        "levels": levels,
        "codebook_size": codebook_size,
        "threads": threads,
        "kmeans_train_sample": min(n_items, max_train),
        "data_generation_seconds": round(t0 - t_gen, 1),
        "train_and_assign_seconds": round(t1 - t0, 1),
        "collision_resolution_seconds": round(t2 - t1, 1),
        "quantizer_seconds": round(t2 - t0, 1),
        "collision_rate_before": round(1 - len({tuple(r) for r in raw.tolist()}) / n_items, 4),
        "items_reassigned": int(moved),
        "collisions_after": n_items - unique,
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
    }
