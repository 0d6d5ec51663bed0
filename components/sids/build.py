"""Build a versioned Semantic ID map: embeddings -> residual quantization -> collision-free codes.

The build directory holds everything a later refresh needs to assign new items without retraining: the
codebooks (and RQ-VAE encoder), the collaborative vectors and text hashes of the known items, and the build's
embedding statistics to measure drift against.

A rebuild (new codebooks) keeps SIDs stable where it can: code labels are arbitrary, so each level's new codebook
is relabelled to agree as much as possible with the previous map's codes on the items both maps hold (an optimal
assignment on their contingency table); then an item keeps its old code tuple whenever that tuple reconstructs
its new embedding within `sids.rebuild_keep_tolerance` of the best tuple's error, and only then are collisions
resolved. Items whose SID still changes are listed old -> new in sid_mapping.parquet, and the share of
reassigned items is in metrics.json.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from components.config import SidConfig
from components.errors import MissingFileError
from components.sids.collaborative import collaborative_embeddings, fuse
from components.sids.embeddings import content_embeddings, item_texts
from components.sids.plots import code_usage_plot
from components.sids.quantize import (
    Quantizer,
    assign_unique,
    reconstruction_error,
    train_rqkmeans,
    train_rqvae,
)
from components.sids.sidmap import SidMap

log = logging.getLogger(__name__)


def embedding_config_hash(cfg: SidConfig) -> str:
    keys = (
        "content_encoder",
        "content_weight",
        "collab_weight",
        "collab_dim",
        "quantizer",
        "levels",
        "codebook_size",
        "balanced",
        "seed",
    )
    return hashlib.sha1(json.dumps({k: getattr(cfg, k) for k in keys}, sort_keys=True).encode()).hexdigest()[:12]


def item_embeddings(
    catalog: pd.DataFrame, events: pd.DataFrame, cfg: SidConfig, previous_collab: dict[str, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(fused [n, d], collaborative [n, collab_dim]) in catalog order.

    The collaborative vectors come from an SVD, whose basis is arbitrary (signs, rotations): with the previous
    build's vectors given, the new ones are rotated onto them (orthogonal Procrustes on the items both hold), so
    that an item whose purchases did not change lands where it was and can keep its SID."""
    from scipy.linalg import orthogonal_procrustes

    ids = catalog["item_id"].astype(str).tolist()
    content = content_embeddings(catalog, cfg.content_encoder, cfg.embed_batch_size)
    collab = collaborative_embeddings(events, ids, cfg.collab_dim, seed=cfg.seed)
    shared = [n for n, item in enumerate(ids) if previous_collab and item in previous_collab]
    if len(shared) > collab.shape[1]:
        target = np.stack([previous_collab[ids[n]] for n in shared])
        if target.shape[1] == collab.shape[1]:
            rotation, _ = orthogonal_procrustes(collab[shared], target)
            collab = (collab @ rotation).astype(np.float32)
    return fuse(content, collab, cfg.content_weight, cfg.collab_weight), collab


MAP_FILES = (
    "sid_map.parquet",
    "sid_map.json",
    "metrics.json",
    "refresh.json",
    "build_state.npz",
    "code_usage.png",
    "sid_mapping.parquet",
)
MAPPING_FILE = "sid_mapping.parquet"


def content_hashes(catalog: pd.DataFrame) -> list[str]:
    """A digest of each item's text (what its content embedding is computed from), in catalog order: a refresh
    re-embeds the items whose text changed."""
    return [hashlib.sha1(text.encode()).hexdigest()[:16] for text in item_texts(catalog)]


def write_mapping(out_dir: Path, moved: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]) -> Path:
    """sid_mapping.parquet: item_id, old codes, new codes of every item whose SID changed."""
    frame = pd.DataFrame(
        {
            "item_id": list(moved),
            "old_codes": [list(old) for old, _ in moved.values()],
            "new_codes": [list(new) for _, new in moved.values()],
        }
    )
    path = Path(out_dir) / MAPPING_FILE
    frame.to_parquet(path, index=False)
    return path


def align_labels(codes: np.ndarray, previous: np.ndarray, codebook_sizes: list[int]) -> list[np.ndarray]:
    """Per level, the relabelling of new codes (perm[new] = label) that agrees most with the previous codes of the
    same items: an optimal assignment on the level's contingency table."""
    from scipy.optimize import linear_sum_assignment

    perms = []
    for level, size in enumerate(codebook_sizes):
        table = np.zeros((size, size), dtype=np.int64)
        np.add.at(table, (codes[:, level], np.clip(previous[:, level], 0, size - 1)), 1)
        rows, cols = linear_sum_assignment(-table)
        perm = np.arange(size)
        perm[rows] = cols
        perms.append(perm)
    return perms


def prepare_out_dir(out_dir: Path) -> Path:
    """Create `out_dir` and remove a previous map's files from it: the whole dir is published, so a stale
    file (say an RQ-VAE encoder from an older build) must not ride along with a new map."""
    import shutil

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out_dir / "codebooks", ignore_errors=True)
    for name in MAP_FILES:
        (out_dir / name).unlink(missing_ok=True)
    return out_dir


def save_quantizer(quantizer: Quantizer, out_dir: Path) -> None:
    """Codebooks as codebooks/level_{i}.npy (plain arrays any tool can read), RQ-VAE encoder as encoder.npz."""
    books = Path(out_dir) / "codebooks"
    books.mkdir(parents=True, exist_ok=True)
    for level, centroids in enumerate(quantizer.codebooks):
        np.save(books / f"level_{level}.npy", centroids)
    if quantizer.encoder_state:
        np.savez(books / "encoder.npz", **quantizer.encoder_state)
    (books / "quantizer.json").write_text(
        json.dumps(
            {"kind": quantizer.kind, "levels": len(quantizer.codebooks), "sizes": [len(c) for c in quantizer.codebooks]}
        )
    )


def load_quantizer(map_dir: Path) -> Quantizer:
    """The quantizer saved with a build, so a refresh assigns new items with exactly the same codebooks."""
    books = Path(map_dir) / "codebooks"
    if not (books / "quantizer.json").exists():
        raise MissingFileError(f"{books}/quantizer.json missing: {map_dir} is not a SID build dir (sidrec sids build)")
    header = json.loads((books / "quantizer.json").read_text())
    codebooks = [np.load(books / f"level_{level}.npy") for level in range(header["levels"])]
    state = None
    if (books / "encoder.npz").exists():
        with np.load(books / "encoder.npz") as data:
            state = {k: data[k] for k in data.files}
    return Quantizer(codebooks, header["kind"], state)


def publish_sid_map(store, map_dir: Path, metadata: dict | None = None) -> str:
    """Publish a build/refresh dir as the 'sid_map' artifact under the map's own version; returns the version.

    SID versions are derived from the config and the codes, so an already published version is the same
    map (only timings in metrics.json differ): it is not republished (versions are immutable in the store),
    and the LATEST pointer is left alone, e.g. when a refresh found no catalog change.
    """
    version = SidMap.load(map_dir).version
    if store.exists("sid_map", version):
        log.info("sid_map %s is already published: not republished", version)
        return version
    return store.publish("sid_map", Path(map_dir), metadata=metadata, version=version)


def _residual_curve(quantizer: Quantizer, x: np.ndarray, codes: np.ndarray) -> list[float]:
    """Mean squared residual after each level (in the quantizer's space): each level should cut it further."""
    residual = quantizer.encode(x).copy()
    curve = []
    for level, centroids in enumerate(quantizer.codebooks):
        residual -= centroids[codes[:, level]]
        curve.append(round(float((residual**2).sum(1).mean()), 6))
    return curve


def build_sids(
    catalog: pd.DataFrame,
    events: pd.DataFrame,
    cfg: SidConfig,
    out_dir: Path,
    version: str | None = None,
    previous_dir: Path | None = None,
) -> SidMap:
    """Build the SID map for `catalog`; writes the map, quantizer, metrics.json and code_usage.png. With the
    previous map's build directory (a rebuild), embeddings and code labels are aligned to it (module docstring)
    and the items whose SID changed are written to sid_mapping.parquet."""
    previous, previous_collab = None, None
    if previous_dir is not None:
        previous = SidMap.load(previous_dir)
        with np.load(Path(previous_dir) / "build_state.npz") as state:
            previous_collab = dict(zip(state["item_ids"].tolist(), state["collab"], strict=True))
    out_dir = prepare_out_dir(out_dir)
    item_ids = catalog["item_id"].astype(str).tolist()
    if len(set(item_ids)) != len(item_ids):
        dupes = pd.Series(item_ids)[pd.Series(item_ids).duplicated()].unique()[:5].tolist()
        raise ValueError(f"catalog has duplicate item_id values (e.g. {dupes}): validate it first (sidrec data ingest)")
    if cfg.codebook_size**cfg.levels < len(item_ids):
        raise ValueError(
            f"SID capacity {cfg.codebook_size}^{cfg.levels} = {cfg.codebook_size**cfg.levels} < {len(item_ids)} items: "
            "raise sids.levels or sids.codebook_size so every item can get a unique SID"
        )
    t0 = time.perf_counter()
    fused, collab = item_embeddings(catalog, events, cfg, previous_collab)
    t_embed = time.perf_counter() - t0
    t1 = time.perf_counter()
    if cfg.quantizer == "rqkmeans":
        quantizer, raw = train_rqkmeans(fused, cfg.levels, cfg.codebook_size, cfg.seed, cfg.balanced)
    else:
        quantizer, raw = train_rqvae(fused, cfg.levels, cfg.codebook_size, seed=cfg.seed, balanced=cfg.balanced)
    shared = [i for i, item in enumerate(item_ids) if previous is not None and item in previous]
    if (
        shared
        and len(previous.codebook_sizes) == cfg.levels
        and previous.codebook_sizes == [len(cb) for cb in quantizer.codebooks]
    ):
        old_codes = np.array([previous.codes_of(item_ids[i]) for i in shared], dtype=np.int64)
        perms = align_labels(raw[shared], old_codes, previous.codebook_sizes)
        inverse = [np.argsort(p) for p in perms]  # label -> old cluster index
        quantizer.codebooks = [cb[inv] for cb, inv in zip(quantizer.codebooks, inverse, strict=True)]
        raw = np.stack([perm[raw[:, level]] for level, perm in enumerate(perms)], axis=1)
        best = reconstruction_error(quantizer, fused[shared], raw[shared])
        kept = reconstruction_error(quantizer, fused[shared], old_codes) <= best * (1 + cfg.rebuild_keep_tolerance)
        raw[np.asarray(shared)[kept]] = old_codes[kept]
    codes, moved = assign_unique(quantizer, fused, raw)
    t_quant = time.perf_counter() - t1
    remapped = {
        item_ids[i]: (previous.codes_of(item_ids[i]), tuple(int(c) for c in codes[i]))
        for i in shared
        if tuple(int(c) for c in codes[i]) != previous.codes_of(item_ids[i])
    }
    sizes = [len(cb) for cb in quantizer.codebooks]
    n_unique_raw = len({tuple(r) for r in raw.tolist()})
    errors = reconstruction_error(quantizer, fused, codes)
    config_hash = embedding_config_hash(cfg)
    version = version or f"sid-{config_hash}-{hashlib.sha1(codes.tobytes()).hexdigest()[:8]}"
    metrics = {
        "version": version,
        "items": len(item_ids),
        "levels": cfg.levels,
        "codebook_sizes": sizes,
        "quantizer": cfg.quantizer,
        "collision_rate_before_resolution": 1 - n_unique_raw / len(item_ids),
        "items_reassigned": int(moved),
        "collisions_after_resolution": len(item_ids) - len({tuple(r) for r in codes.tolist()}),
        "utilisation_per_level": [float(len(np.unique(codes[:, lv])) / sizes[lv]) for lv in range(cfg.levels)],
        "reconstruction_mse": float(errors.mean()),
        "residual_mse_after_level": _residual_curve(quantizer, fused, codes),
        "embedding_seconds": round(t_embed, 2),
        "quantizer_seconds": round(t_quant, 2),
        "build_seconds": round(time.perf_counter() - t0, 2),
        "embedding_config_hash": config_hash,
        "previous_version": previous.version if previous is not None else None,
        "shared_items": len(shared),
        "reassigned_items": len(remapped),
        "reassigned_share": len(remapped) / max(len(shared), 1) if previous is not None else 0.0,
    }
    sidmap = SidMap(
        item_ids,
        codes,
        sizes,
        version,
        {"embedding_config_hash": config_hash, "content_encoder": cfg.content_encoder, "quantizer": cfg.quantizer},
        codebooks=[np.asarray(c) for c in quantizer.codebooks],
    )
    assert sidmap.n_collisions() == 0
    sidmap.save(out_dir)
    save_quantizer(quantizer, out_dir)
    np.savez(
        out_dir / "build_state.npz",
        item_ids=np.array(item_ids),
        collab=collab,
        fused_mean=fused.mean(0),
        residual_errors=errors,
        content_hash=np.array(content_hashes(catalog)),
    )
    if previous is not None:
        write_mapping(out_dir, remapped)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    code_usage_plot(codes, sizes, out_dir / "code_usage.png")
    log.info("SIDs built: %s", metrics)
    return sidmap
