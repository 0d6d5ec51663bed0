"""SID refresh on a catalog change: code new and edited items with the existing codebooks, retire deleted ones,
measure drift.

Existing items keep their SIDs exactly (the model has learnt them); new items get the best free code tuple of the
existing quantizer, so no retraining is needed: the served model decodes the refreshed map at once (a refresh is
of the same lineage, runtime.recommender). An item whose text changed is re-embedded: if its new codes keep its
old prefix (all levels but the last: its semantic bucket) it keeps its SID; otherwise it moves to a free code
under its new prefix, and the old -> new mapping is written (refresh.json, sid_mapping.parquet). Deleted items
are retired: they keep their codes (reserved, never recommended) so that histories still show them.

Drift: the share of new and moved items, the shift of the mean embedding, and the new items' residual error
relative to the build's. Above the configured thresholds the result says `rebuild` and the orchestration builds a
new SID version and retrains. A map built with other SID settings (encoder, fusion weights, levels, ...) is never
refreshed: its codebooks live in another embedding space, so the result says `rebuild` straight away.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from components.config import SidConfig
from components.sids.build import (
    content_hashes,
    embedding_config_hash,
    load_quantizer,
    prepare_out_dir,
    save_quantizer,
    write_mapping,
)
from components.sids.collaborative import fold_in, fuse
from components.sids.embeddings import content_embeddings
from components.sids.plots import code_usage_plot
from components.sids.quantize import assign_unique, greedy_codes, reconstruction_error
from components.sids.sidmap import SidMap

log = logging.getLogger(__name__)


@dataclass
class RefreshResult:
    sidmap: SidMap
    new_items: list[str]
    retired_items: list[str]
    drift: dict
    rebuild: bool
    reasons: list[str] = field(default_factory=list)
    edited_items: list[str] = field(default_factory=list)
    moved: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)

    def summary(self) -> dict:
        return {
            "version": self.sidmap.version,
            "new_items": len(self.new_items),
            "retired_items": len(self.retired_items),
            "edited_items": len(self.edited_items),
            "moved_items": len(self.moved),
            "drift": self.drift,
            "rebuild": self.rebuild,
            "reasons": self.reasons,
        }


def refresh_sids(
    old_map_dir: Path, catalog: pd.DataFrame, events: pd.DataFrame, cfg: SidConfig, out_dir: Path
) -> RefreshResult:
    """Refresh the map in `old_map_dir` for the current `catalog`; writes the refreshed map to `out_dir`."""
    old_map_dir, out_dir = Path(old_map_dir), Path(out_dir)
    old = SidMap.load(old_map_dir)
    current = catalog["item_id"].astype(str).tolist()
    current_set = set(current)
    new_ids = [i for i in current if i not in old]
    retired = sorted(i for i in old.item_ids if i not in current_set)
    newly_retired = [i for i in retired if i not in old.retired]
    keep = [i for i in old.item_ids if i in current_set]
    built_with, wanted = old.meta.get("embedding_config_hash"), embedding_config_hash(cfg)
    if built_with and built_with != wanted:
        reason = f"SID settings changed since the build (embedding config {built_with} -> {wanted})"
        log.info("SID refresh: %s", reason)
        return RefreshResult(old, new_ids, newly_retired, {"settings_changed": True}, True, [reason])
    quantizer = load_quantizer(old_map_dir)
    with np.load(old_map_dir / "build_state.npz") as state:
        known_ids = state["item_ids"].tolist()
        known_collab = state["collab"]
        build_mean = state["fused_mean"]
        build_errors = state["residual_errors"]
        known_hashes = (
            dict(zip(known_ids, state["content_hash"].tolist(), strict=True)) if "content_hash" in state else {}
        )
    by_id = catalog.assign(item_id=catalog["item_id"].astype(str)).drop_duplicates("item_id").set_index("item_id")
    hashes = dict(zip(current, content_hashes(by_id.loc[current].reset_index()), strict=True))
    edited = [i for i in keep if i in known_hashes and known_hashes[i] != hashes[i]]
    position = {iid: i for i, iid in enumerate(known_ids)}

    recoded = new_ids + edited  # items whose codes are (re)computed from their current text
    frame = by_id.loc[recoded].reset_index() if recoded else by_id.iloc[:0].reset_index()
    if recoded:
        content = content_embeddings(frame, cfg.content_encoder, cfg.embed_batch_size)
        new_collab = (
            fold_in(events, new_ids, known_ids, known_collab) if new_ids else np.zeros((0, known_collab.shape[1]))
        )
        edited_collab = known_collab[[position[i] for i in edited]] if edited else np.zeros((0, known_collab.shape[1]))
        collab = np.concatenate([new_collab, edited_collab]).astype(np.float32)
        fused = fuse(content, collab, cfg.content_weight, cfg.collab_weight)
        greedy = greedy_codes(quantizer, fused)
    else:
        collab = np.zeros((0, known_collab.shape[1]), dtype=np.float32)
        fused = np.zeros((0, len(build_mean)), dtype=np.float32)
        greedy = np.zeros((0, old.n_levels), dtype=np.int64)
    # an edited item keeps its SID when its new codes stay in its old bucket; else it moves like a new item
    moved = [item for n, item in enumerate(edited) if tuple(greedy[len(new_ids) + n][:-1]) != old.codes_of(item)[:-1]]
    to_assign = new_ids + moved
    rows = [recoded.index(i) for i in to_assign]
    stay = [i for i in keep if i not in set(moved)]
    # every code an item still holds (retired ones included: reserved) is taken
    taken = {old.codes_of(i) for i in stay} | {old.codes_of(i) for i in retired}
    assigned, _ = assign_unique(quantizer, fused[rows], greedy[rows], taken=taken) if rows else (greedy[:0], 0)
    codes_of = {item: old.codes_of(item) for item in stay + retired}
    codes_of.update({item: tuple(int(c) for c in row) for item, row in zip(to_assign, assigned.tolist(), strict=True)})
    moved_map = {item: (old.codes_of(item), codes_of[item]) for item in moved}
    new_errors = reconstruction_error(quantizer, fused[rows], assigned) if rows else np.zeros(0)

    item_ids = stay + moved + new_ids + retired
    codes = np.array([codes_of[i] for i in item_ids], dtype=np.int64).reshape(-1, old.n_levels)
    drift = _drift(len(current), len(to_assign), build_mean, fused[rows], len(stay), build_errors, new_errors)
    reasons = []
    if drift["new_item_share"] > cfg.drift_new_item_share:
        reasons.append(f"new and moved item share {drift['new_item_share']:.3f} > {cfg.drift_new_item_share}")
    if drift["residual_ratio"] > cfg.drift_residual_ratio:
        reasons.append(f"new items' residual error ratio {drift['residual_ratio']:.2f} > {cfg.drift_residual_ratio}")
    if drift["mean_shift"] > cfg.drift_mean_shift:
        reasons.append(f"embedding mean shift {drift['mean_shift']:.3f} > {cfg.drift_mean_shift}")
    # short and deterministic: the build's version plus a digest of the refreshed map (same inputs, same version)
    base = old.meta.get("base_version", old.version)
    digest = hashlib.sha1(("\n".join(item_ids)).encode() + codes.tobytes() + "\n".join(retired).encode())
    changed = bool(new_ids or newly_retired or moved or len(retired) != len(old.retired))
    version = f"{base}.r{digest.hexdigest()[:8]}" if changed else old.version
    sidmap = SidMap(
        item_ids,
        codes,
        old.codebook_sizes,
        version,
        {**old.meta, "base_version": base, "refreshed_from": old.version},
        codebooks=old.codebooks,  # a refresh keeps the build's codebooks
        retired=frozenset(retired),
    )
    assert sidmap.n_collisions() == 0
    prepare_out_dir(out_dir)
    sidmap.save(out_dir)
    save_quantizer(quantizer, out_dir)
    collab_rows = {item: known_collab[position[item]] for item in stay + retired if item in position}
    collab_rows.update({item: collab[recoded.index(item)] for item in recoded})
    width = known_collab.shape[1]
    np.savez(
        out_dir / "build_state.npz",
        item_ids=np.array(item_ids),
        collab=np.array([collab_rows.get(i, np.zeros(width, np.float32)) for i in item_ids]).reshape(-1, width),
        fused_mean=build_mean,
        residual_errors=build_errors,
        content_hash=np.array([hashes.get(i, known_hashes.get(i, "")) for i in item_ids]),
    )
    result = RefreshResult(sidmap, new_ids, newly_retired, drift, bool(reasons), reasons, edited, moved_map)
    write_mapping(out_dir, moved_map)
    (out_dir / "refresh.json").write_text(json.dumps(result.summary(), indent=2))
    (out_dir / "metrics.json").write_text(json.dumps({**result.summary(), "items": len(item_ids)}, indent=2))
    code_usage_plot(codes, old.codebook_sizes, out_dir / "code_usage.png")
    log.info("SID refresh: %s", result.summary())
    return result


def _drift(
    n_current: int,
    n_new: int,
    build_mean: np.ndarray,
    fused_new: np.ndarray,
    n_kept: int,
    build_errors: np.ndarray,
    new_errors: np.ndarray,
) -> dict:
    """Share of new (and moved) items, cosine distance of the catalog mean embedding, new/build residual ratio."""
    if n_new:
        current_mean = (build_mean * n_kept + fused_new.sum(0)) / max(n_kept + n_new, 1)
        cos = float(current_mean @ build_mean / max(np.linalg.norm(current_mean) * np.linalg.norm(build_mean), 1e-9))
        ratio = float(new_errors.mean() / max(build_errors.mean(), 1e-9))
    else:
        cos, ratio = 1.0, 0.0
    return {
        "new_item_share": n_new / max(n_current, 1),
        "mean_shift": 1.0 - cos,
        "residual_ratio": ratio,
        "new_items_residual_mse": float(new_errors.mean()) if n_new else 0.0,
        "build_residual_mse": float(build_errors.mean()),
    }
