"""SID refresh on a catalog change: assign new items with the existing codebooks, retire deleted ones, measure drift.

Existing items keep their SIDs exactly (the model has learnt them); new items get the best free code tuple of
the existing quantizer, so no retraining is needed. Drift (share of new items, shift of the mean embedding,
new items' residual error relative to the build's) decides whether the codebooks still fit; above the
configured thresholds the result says `rebuild` and the orchestration builds a new SID version and retrains.
A map built with other SID settings (encoder, fusion weights, levels, ...) is never refreshed: its codebooks
live in another embedding space, so the result says `rebuild` straight away.
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
from components.sids.build import embedding_config_hash, load_quantizer, prepare_out_dir, save_quantizer
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

    def summary(self) -> dict:
        return {
            "version": self.sidmap.version,
            "new_items": len(self.new_items),
            "retired_items": len(self.retired_items),
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
    keep = [i for i in old.item_ids if i in current_set]
    built_with, wanted = old.meta.get("embedding_config_hash"), embedding_config_hash(cfg)
    if built_with and built_with != wanted:
        reason = f"SID settings changed since the build (embedding config {built_with} -> {wanted})"
        log.info("SID refresh: %s", reason)
        return RefreshResult(old, new_ids, retired, {"settings_changed": True}, True, [reason])
    quantizer = load_quantizer(old_map_dir)
    with np.load(old_map_dir / "build_state.npz") as state:
        known_ids = state["item_ids"].tolist()
        known_collab = state["collab"]
        build_mean = state["fused_mean"]
        build_errors = state["residual_errors"]
        retired_before = set(state["retired"].tolist())
        reserved = {tuple(int(c) for c in row) for row in state["retired_codes"]} if "retired_codes" in state else set()

    new_frame = catalog[catalog["item_id"].astype(str).isin(set(new_ids))]
    new_frame = new_frame.set_index(new_frame["item_id"].astype(str)).loc[new_ids].reset_index(drop=True)
    if new_ids:
        content = content_embeddings(new_frame, cfg.content_encoder, cfg.embed_batch_size)
        new_collab = fold_in(events, new_ids, known_ids, known_collab)
        fused_new = fuse(content, new_collab, cfg.content_weight, cfg.collab_weight)
        # retired items' SIDs stay reserved inside this version so a cached recommendation never changes meaning
        taken = {old.codes_of(i) for i in old.item_ids} | reserved
        new_codes, _ = assign_unique(quantizer, fused_new, greedy_codes(quantizer, fused_new), taken=taken)
        new_errors = reconstruction_error(quantizer, fused_new, new_codes)
    else:
        fused_new = np.zeros((0, len(build_mean)), dtype=np.float32)
        new_codes = np.zeros((0, old.n_levels), dtype=np.int64)
        new_errors = np.zeros(0)
        new_collab = np.zeros((0, known_collab.shape[1]), dtype=np.float32)

    kept_codes = np.array([old.codes_of(i) for i in keep], dtype=np.int64).reshape(-1, old.n_levels)
    item_ids = keep + new_ids
    codes = np.concatenate([kept_codes, new_codes])
    position = {iid: i for i, iid in enumerate(known_ids)}
    kept_index = [position[i] for i in keep]
    drift = _drift(len(current), len(new_ids), build_mean, fused_new, len(keep), build_errors, new_errors)
    reasons = []
    if drift["new_item_share"] > cfg.drift_new_item_share:
        reasons.append(f"new item share {drift['new_item_share']:.3f} > {cfg.drift_new_item_share}")
    if drift["residual_ratio"] > cfg.drift_residual_ratio:
        reasons.append(f"new items' residual error ratio {drift['residual_ratio']:.2f} > {cfg.drift_residual_ratio}")
    if drift["mean_shift"] > cfg.drift_mean_shift:
        reasons.append(f"embedding mean shift {drift['mean_shift']:.3f} > {cfg.drift_mean_shift}")
    # short and deterministic: the build's version plus a digest of the refreshed map (same inputs, same version)
    base = old.meta.get("base_version", old.version)
    digest = hashlib.sha1(("\n".join(item_ids)).encode() + codes.tobytes()).hexdigest()[:8]
    version = f"{base}.r{digest}" if (new_ids or retired) else old.version
    sidmap = SidMap(
        item_ids,
        codes,
        old.codebook_sizes,
        version,
        {
            **old.meta,
            "base_version": base,
            "refreshed_from": old.version,
            "retired": len(retired_before | set(retired)),
        },
        codebooks=old.codebooks,  # a refresh keeps the build's codebooks
    )
    assert sidmap.n_collisions() == 0
    prepare_out_dir(out_dir)
    sidmap.save(out_dir)
    save_quantizer(quantizer, out_dir)
    collab_all = np.concatenate([known_collab[kept_index], new_collab])
    np.savez(
        out_dir / "build_state.npz",
        item_ids=np.array(item_ids),
        collab=collab_all,
        fused_mean=build_mean,
        residual_errors=build_errors,
        retired=np.array(sorted(retired_before | set(retired)), dtype=str),
        retired_codes=np.array(sorted(reserved | {old.codes_of(i) for i in retired}), dtype=np.int64).reshape(
            -1, old.n_levels
        ),
    )
    result = RefreshResult(sidmap, new_ids, retired, drift, bool(reasons), reasons)
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
    """Share of new items, cosine distance of the catalog mean embedding, new/build residual error ratio."""
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
