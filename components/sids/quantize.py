"""Residual quantizers (RQ-KMeans with faiss, RQ-VAE in torch) and collision-free code assignment.

Both quantizers reduce to the same thing at assignment time: a space (the embedding itself, or the RQ-VAE
latent) and one codebook per level. `assign_unique` then gives every item the best code tuple that no other
item holds (optimal last-level re-assignment inside each prefix bucket, a beam over all levels when a
bucket is full). That is how the map always has 0 collisions with a fixed SID length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CHUNK_ROWS = 32_768  # rows per cost-matrix matmul in collision resolution
SPILL_ROUNDS = 8  # next-nearest codes one level up tried for items of an overfull bucket
MAX_BEAM = 4096  # widest beam tried when looking for a free code tuple before the exhaustive scan


@dataclass
class Quantizer:
    """Codebooks per level in `space`; `encode` maps embeddings to that space (identity for RQ-KMeans)."""

    codebooks: list[np.ndarray]  # each [K, d] float32
    kind: str = "rqkmeans"
    encoder_state: dict | None = None  # RQ-VAE encoder weights (numpy) when kind == "rqvae"

    def encode(self, x: np.ndarray) -> np.ndarray:
        if self.encoder_state is None:
            return x.astype(np.float32)
        h = x @ self.encoder_state["w1"] + self.encoder_state["b1"]
        h = np.maximum(h, 0.0)
        return (h @ self.encoder_state["w2"] + self.encoder_state["b2"]).astype(np.float32)


def _kmeans(x: np.ndarray, k: int, seed: int, niter: int = 20, max_train: int = 100_000) -> np.ndarray:
    import faiss

    k = min(k, len(x))
    km = faiss.Kmeans(
        x.shape[1],
        k,
        niter=niter,
        seed=seed,
        verbose=False,
        max_points_per_centroid=max(256, math.ceil(max_train / k)),
        min_points_per_centroid=1,  # only silences faiss' "please provide at least ..." warning on small levels
        spherical=False,
    )
    km.train(np.ascontiguousarray(x, dtype=np.float32))
    return km.centroids.astype(np.float32)


def _nearest(x: np.ndarray, centroids: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    dist, idx = index.search(np.ascontiguousarray(x, dtype=np.float32), min(k, len(centroids)))
    return dist, idx


def balanced_assign(x: np.ndarray, centroids: np.ndarray, slack: float = 0.1, top: int = 16) -> np.ndarray:
    """Capacity-constrained nearest-centroid assignment, so no code swallows a large share of items.

    Each code holds at most ceil(n/K * (1 + slack)) items. Rounds over each item's `top` nearest codes:
    in round r every unplaced item proposes its r-th choice, and each code accepts the closest proposers
    that still fit (vectorised, so a million items take seconds). Items left after `top` rounds continue
    the same rounds over all codes; since K * capacity >= n, every item is placed.
    """
    n, k = len(x), len(centroids)
    capacity = math.ceil(n / k * (1 + slack))
    load = np.zeros(k, dtype=np.int64)
    out = np.full(n, -1, dtype=np.int64)
    pending = np.arange(n)
    # first the `top` nearest codes of everyone; then, for the few still unplaced, all codes
    for width in (top, k):
        if not len(pending):
            break
        dist, idx = _nearest(x[pending], centroids, width)
        rows = np.arange(len(pending))  # positions of the pending items in dist/idx
        for r in range(idx.shape[1]):
            if not len(rows):
                break
            cand, d = idx[rows, r], dist[rows, r]
            order = np.lexsort((d, cand))  # by code, closest first within a code
            cand_sorted = cand[order]
            rank = np.arange(len(order)) - np.searchsorted(cand_sorted, cand_sorted, side="left")
            accept = rank < (capacity - load[cand_sorted])
            out[pending[rows[order[accept]]]] = cand_sorted[accept]
            load += np.bincount(cand_sorted[accept], minlength=k)
            rows = rows[order[~accept]]
        pending = pending[rows]
    return out


def train_rqkmeans(
    x: np.ndarray, levels: int, codebook_size: int, seed: int = 0, balanced: bool = True, max_train: int = 100_000
) -> tuple[Quantizer, np.ndarray]:
    """Fit one k-means per level on the residuals; returns the quantizer and the raw (pre-resolution) codes."""
    rng = np.random.default_rng(seed)
    sample = x[rng.choice(len(x), size=min(len(x), max_train), replace=False)] if len(x) > max_train else x
    residual_sample = sample.astype(np.float32).copy()
    codebooks = []
    for level in range(levels):
        centroids = _kmeans(residual_sample, codebook_size, seed + level)
        # the next level must be trained on the residuals the assignment will actually leave
        if balanced and level == 0 and len(residual_sample) > len(centroids):
            assigned = balanced_assign(residual_sample, centroids)
        else:
            assigned = _nearest(residual_sample, centroids)[1][:, 0]
        residual_sample -= centroids[assigned]
        codebooks.append(centroids)
    quantizer = Quantizer(codebooks)
    return quantizer, greedy_codes(quantizer, x, balanced)


def greedy_codes(quantizer: Quantizer, x: np.ndarray, balanced: bool = False) -> np.ndarray:
    """Residual assignment, level by level.

    `balanced` caps the first level's codes at ~n/K items: the first SID token is the decoder's first and
    hardest choice, and a few giant first-level codes would make it nearly uninformative. Deeper levels are
    nearest-centroid, since capping tiny residuals only adds error.
    """
    residual = quantizer.encode(x).copy()
    codes = np.zeros((len(x), len(quantizer.codebooks)), dtype=np.int64)
    for level, centroids in enumerate(quantizer.codebooks):
        if balanced and level == 0 and len(x) > len(centroids):
            codes[:, level] = balanced_assign(residual, centroids)
        else:
            codes[:, level] = _nearest(residual, centroids)[1][:, 0]
        residual -= centroids[codes[:, level]]
    return codes


def reconstruction_error(quantizer: Quantizer, x: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Per-item squared error of the residual quantization in the quantizer's space."""
    z = quantizer.encode(x)
    recon = sum(cb[codes[:, level]] for level, cb in enumerate(quantizer.codebooks))
    return ((z - recon) ** 2).sum(1)


def _candidates(z: np.ndarray, codebooks: list[np.ndarray], beam: int) -> list[tuple[float, tuple[int, ...]]]:
    """Best `beam` code tuples for one vector by beam search over levels (lowest residual error first).

    Vectorised over the beam: at each level every kept path is extended by every code, and the `beam`
    extensions with the smallest remaining residual survive. A beam >= the capacity enumerates all tuples.
    """
    prefixes = np.zeros((1, 0), dtype=np.int64)
    residuals = z[None, :].astype(np.float32)
    errors = np.zeros(1, dtype=np.float32)
    for centroids in codebooks:
        # ||r - c||^2 for every (path, code) pair
        d = (residuals**2).sum(1, keepdims=True) - 2.0 * residuals @ centroids.T + (centroids**2).sum(1)[None, :]
        flat = d.ravel()
        keep = min(beam, flat.size)
        best = np.argpartition(flat, keep - 1)[:keep] if keep < flat.size else np.arange(flat.size)
        best = best[np.argsort(flat[best], kind="stable")]
        path, code = np.divmod(best, len(centroids))
        prefixes = np.concatenate([prefixes[path], code[:, None]], axis=1)
        residuals = residuals[path] - centroids[code]
        errors = flat[best]
    return [(float(e), tuple(int(c) for c in row)) for e, row in zip(errors, prefixes, strict=True)]


def assign_unique(
    quantizer: Quantizer, x: np.ndarray, codes: np.ndarray, taken: set[tuple[int, ...]] | None = None
) -> tuple[np.ndarray, int]:
    """Resolve collisions: every row gets a distinct tuple, none in `taken`. Returns (codes, n_moved).

    Stage 1 keeps each item's prefix (all levels but the last: its semantic bucket) and, inside every
    bucket that has a conflict, gives the bucket's items distinct free last-level codes with minimal total
    squared error (an optimal assignment, scipy's linear_sum_assignment), vectorised per bucket. Stage 2:
    items of buckets with more items than last-level codes spill to their next-nearest code one level up
    (same first levels) and are assigned there the same way, for a few rounds. Stage 3, for anything left
    (tiny, nearly full codebooks): the lowest-error free tuple from an expanding beam over all levels.
    """
    sizes = [len(cb) for cb in quantizer.codebooks]
    capacity = math.prod(sizes)
    taken = set(taken or ())
    if capacity < len(x) + len(taken):
        raise ValueError(
            f"capacity {capacity} codes < {len(x) + len(taken)} items: use more levels or larger codebooks"
        )
    out = np.asarray(codes, dtype=np.int64).copy()
    if len(x) == 0:
        return out, 0
    z = quantizer.encode(x)
    external = (
        np.ravel_multi_index(np.array(sorted(taken), dtype=np.int64).T, sizes) if taken else np.zeros(0, np.int64)
    )
    flat = np.ravel_multi_index(out.T, sizes)
    _, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    conflict = (counts[inverse] > 1) | np.isin(flat, external)
    prefix = _prefix(out, sizes)
    rows = np.flatnonzero(np.isin(prefix, np.unique(prefix[conflict])))
    held = external  # codes of items outside `rows` are all distinct and free: they keep them
    overflow = _resolve_last_level(quantizer, z, out, rows, held, sizes)
    for spill in range(1, SPILL_ROUNDS + 1):
        if not len(overflow) or len(sizes) < 2:
            break
        level = len(sizes) - 2
        before = z[overflow] - sum(cb[out[overflow, lv]] for lv, cb in enumerate(quantizer.codebooks[:level]))
        out[overflow, level] = _nearest(before, quantizer.codebooks[level], spill + 1)[1][:, -1]
        placed = np.setdiff1d(np.arange(len(out)), overflow)
        held = np.concatenate([external, np.ravel_multi_index(out[placed].T, sizes)])
        overflow = _resolve_last_level(quantizer, z, out, overflow, held, sizes)
    if len(overflow):  # tiny or nearly full codebooks only
        placed = np.setdiff1d(np.arange(len(out)), overflow)
        taken.update(map(tuple, out[placed].tolist()))
        _resolve_by_beam(quantizer, z, out, overflow, taken, sizes)
    moved = int((out != codes).any(1).sum())
    return out, moved


def _prefix(codes: np.ndarray, sizes: list[int]) -> np.ndarray:
    """One int per row for the codes of all levels but the last (the bucket a last-level code lives in)."""
    if len(sizes) < 2:
        return np.zeros(len(codes), dtype=np.int64)
    return np.ravel_multi_index(codes[:, :-1].T, sizes[:-1])


def _resolve_last_level(
    quantizer: Quantizer,
    z: np.ndarray,
    out: np.ndarray,
    rows: np.ndarray,
    held: np.ndarray,
    sizes: list[int],
) -> np.ndarray:
    """Give `rows` distinct last-level codes inside their prefix buckets, avoiding the flat tuples in `held`,
    with minimal total squared error per bucket. Returns the rows that did not fit (bucket full)."""
    from scipy.optimize import linear_sum_assignment

    last = quantizer.codebooks[-1]
    prefix = _prefix(out[rows], sizes)
    order = np.argsort(prefix, kind="stable")
    rows, prefix = rows[order], prefix[order]
    held_prefix, held_code = np.divmod(held, sizes[-1])
    relevant = np.isin(held_prefix, prefix)
    taken_last: dict[int, list[int]] = {}
    for key, code in zip(held_prefix[relevant].tolist(), held_code[relevant].tolist(), strict=True):
        taken_last.setdefault(key, []).append(code)
    starts = np.flatnonzero(np.r_[True, np.diff(prefix) != 0]) if len(rows) else np.zeros(0, np.int64)
    ends = np.r_[starts[1:], len(rows)].astype(np.int64)
    last_sq = (last**2).sum(1)
    all_codes = np.arange(len(last))
    overflow: list[np.ndarray] = []
    chunk_lo, cost_chunk = 0, np.zeros((0, len(last)), dtype=np.float32)
    for g, (lo, hi) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        if hi > chunk_lo + len(cost_chunk):
            # one large matmul per ~32k rows instead of one per bucket (many tiny BLAS calls are slow)
            chunk_lo = lo
            chunk_hi = int(ends[max(int(np.searchsorted(ends, lo + CHUNK_ROWS, side="right")) - 1, g)])
            rows_chunk = rows[lo:chunk_hi]
            # residual left for the last level; cost = ||c||^2 - 2 r.c (||r||^2 is constant per row)
            residual = z[rows_chunk] - sum(cb[out[rows_chunk, lv]] for lv, cb in enumerate(quantizer.codebooks[:-1]))
            cost_chunk = last_sq[None, :] - 2.0 * (residual @ last.T)
        group = rows[lo:hi]
        cost = cost_chunk[lo - chunk_lo : hi - chunk_lo]
        held_here = taken_last.get(int(prefix[lo]))
        free = np.setdiff1d(all_codes, held_here) if held_here else all_codes
        if not len(free):
            overflow.append(group)
            continue
        assigned, cols = linear_sum_assignment(cost[:, free] if held_here else cost)
        out[group[assigned], -1] = free[cols]
        if len(assigned) < len(group):
            overflow.append(np.setdiff1d(group, group[assigned]))
    return np.concatenate(overflow) if overflow else np.zeros(0, dtype=np.int64)


def _resolve_by_beam(
    quantizer: Quantizer,
    z: np.ndarray,
    out: np.ndarray,
    rows: np.ndarray,
    taken: set[tuple[int, ...]],
    sizes: list[int],
) -> None:
    """Each row in `rows` takes the lowest-error tuple not in `taken` (beam widened until one is free)."""
    capacity = math.prod(sizes)
    beam = 8
    for i in rows:
        # neighbours crowd the same region: start near the beam the last item needed
        beam = max(8, beam // 2)
        while True:
            free = [c for _, c in _candidates(z[i], quantizer.codebooks, beam) if c not in taken]
            if free:
                out[i] = free[0]
                taken.add(free[0])
                break
            if beam >= min(capacity, MAX_BEAM):
                # a beam >= capacity enumerates every tuple, so this only runs for huge, nearly full
                # codebooks: take any free tuple (the capacity check guarantees one exists)
                for flat in range(capacity):
                    cand = tuple(int(v) for v in np.unravel_index(flat, sizes))
                    if cand not in taken:
                        out[i] = cand
                        taken.add(cand)
                        break
                break
            beam *= 2


def train_rqvae(
    x: np.ndarray,
    levels: int,
    codebook_size: int,
    latent_dim: int = 32,
    epochs: int = 30,
    seed: int = 0,
    lr: float = 1e-3,
    beta: float = 0.25,
    batch_size: int = 256,
    balanced: bool = False,
) -> tuple[Quantizer, np.ndarray]:
    """RQ-VAE: MLP encoder -> residual VQ (k-means initialised) -> MLP decoder, straight-through gradients.

    Losses are per-item sums (not per-dimension means): with a mean over a 400-d input the reconstruction
    term is tiny next to the commitment term, and the encoder collapses every item onto a couple of codes.
    Codes unused during an epoch are restarted on random residuals of that level (dead-code restart), the
    standard remedy for codebook collapse.
    """
    import torch
    from torch import nn

    torch.manual_seed(seed)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    data = torch.tensor(x, dtype=torch.float32)
    hidden = max(64, latent_dim * 2)
    encoder = nn.Sequential(nn.Linear(x.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, latent_dim))
    decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, x.shape[1]))
    with torch.no_grad():
        z0 = encoder(data).numpy()
    init = train_rqkmeans(z0, levels, codebook_size, seed=seed, balanced=False)[0].codebooks
    books = nn.ParameterList([nn.Parameter(torch.tensor(cb)) for cb in init])
    params = list(encoder.parameters()) + list(decoder.parameters()) + list(books.parameters())
    optim = torch.optim.Adam(params, lr=lr)
    batch = min(batch_size, len(x))
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        usage = [torch.zeros(len(cb), dtype=torch.long) for cb in books]
        seen: list[list[torch.Tensor]] = [[] for _ in books]
        perm = torch.randperm(len(data), generator=generator)
        for start in range(0, len(data), batch):
            xb = data[perm[start : start + batch]]
            z = encoder(xb)
            residual, quantized, commit = z, torch.zeros_like(z), 0.0
            for level, cb in enumerate(books):
                idx = torch.cdist(residual, cb).argmin(1)
                usage[level] += torch.bincount(idx, minlength=len(cb))
                seen[level].append(residual.detach())
                q = cb[idx]
                commit = commit + ((residual.detach() - q) ** 2).sum(1).mean()
                commit = commit + beta * ((residual - q.detach()) ** 2).sum(1).mean()
                quantized = quantized + q
                residual = residual - q.detach()
            z_q = z + (quantized - z).detach()
            loss = ((decoder(z_q) - xb) ** 2).sum(1).mean() + commit
            optim.zero_grad()
            loss.backward()
            optim.step()
        with torch.no_grad():  # dead-code restart
            for level, cb in enumerate(books):
                dead = torch.nonzero(usage[level] == 0).flatten()
                if len(dead):
                    pool = torch.cat(seen[level])
                    cb[dead] = pool[torch.randint(len(pool), (len(dead),), generator=generator)]
    state = {
        "w1": encoder[0].weight.detach().numpy().T.copy(),
        "b1": encoder[0].bias.detach().numpy().copy(),
        "w2": encoder[2].weight.detach().numpy().T.copy(),
        "b2": encoder[2].bias.detach().numpy().copy(),
    }
    quantizer = Quantizer([b.detach().numpy().astype(np.float32) for b in books], "rqvae", state)
    return quantizer, greedy_codes(quantizer, x, balanced)
