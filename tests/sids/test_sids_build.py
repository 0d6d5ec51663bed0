"""Semantic IDs: collision-free builds, metrics, refresh that keeps old SIDs, drift, RQ-VAE."""

from __future__ import annotations

import json

import numpy as np
import pytest

from components.config import SidConfig
from components.data.synthetic import generate_synthetic
from components.sids.build import build_sids
from components.sids.quantize import Quantizer, assign_unique, greedy_codes, train_rqkmeans
from components.sids.refresh import refresh_sids
from components.sids.sidmap import SidMap

CFG = SidConfig(levels=3, codebook_size=16, content_encoder="hashing", collab_dim=16)


@pytest.fixture(scope="module")
def data():
    return generate_synthetic(n_items=400, n_users=300, seed=1)


def test_build_has_zero_collisions_and_metrics(data, tmp_path):
    catalog, events = data
    sidmap = build_sids(catalog, events, CFG, tmp_path)
    assert len(sidmap) == 400 and sidmap.n_collisions() == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["collisions_after_resolution"] == 0
    assert metrics["collision_rate_before_resolution"] > 0  # 400 items in 16^3 codes do collide first
    assert all(0 < u <= 1 for u in metrics["utilisation_per_level"])
    assert metrics["reconstruction_mse"] < 1.0  # better than encoding nothing (unit vectors)
    curve = metrics["residual_mse_after_level"]
    assert len(curve) == 3 and curve[-1] < curve[0] < 1.0
    assert curve[-1] == pytest.approx(metrics["reconstruction_mse"], rel=1e-4)
    assert metrics["build_seconds"] > 0 and metrics["embedding_config_hash"] == sidmap.meta["embedding_config_hash"]
    assert sorted(p.name for p in (tmp_path / "codebooks").iterdir()) == [
        "level_0.npy",
        "level_1.npy",
        "level_2.npy",
        "quantizer.json",
    ]
    assert (tmp_path / "code_usage.png").stat().st_size > 1000
    again = SidMap.load(tmp_path)
    assert again.codes_of("i0") == sidmap.codes_of("i0") and again.version == sidmap.version


def test_forced_collisions_are_resolved_and_capacity_is_checked():
    rng = np.random.default_rng(0)
    x = np.repeat(rng.standard_normal((5, 8)).astype(np.float32), 40, axis=0)  # 200 items, 5 distinct points
    quantizer, raw = train_rqkmeans(x, levels=2, codebook_size=16, balanced=False)
    assert len({tuple(r) for r in raw.tolist()}) <= 5
    codes, moved = assign_unique(quantizer, x, raw)
    assert len({tuple(r) for r in codes.tolist()}) == 200 and moved >= 195
    tiny = Quantizer([np.eye(8, dtype=np.float32)[:3], np.eye(8, dtype=np.float32)[:3]])
    with pytest.raises(ValueError, match="capacity"):
        assign_unique(tiny, x[:10], greedy_codes(tiny, x[:10]))


def test_refresh_keeps_old_sids_and_reports_drift(data, tmp_path):
    catalog, events = data
    rng = np.random.default_rng(0)
    new_ids = set(rng.choice(catalog.item_id.to_numpy(), size=20, replace=False))  # 5% new, spread over clusters
    old_catalog = catalog[~catalog.item_id.isin(new_ids)]
    old_events = events[events.item_id.isin(set(old_catalog.item_id))]
    old = build_sids(old_catalog, old_events, CFG, tmp_path / "v1")
    retired = set(old_catalog.item_id[:5])
    current = catalog[~catalog.item_id.isin(retired)]
    result = refresh_sids(tmp_path / "v1", current, events, CFG, tmp_path / "v2")
    new = result.sidmap
    for item in set(old_catalog.item_id) - retired:
        assert new.codes_of(item) == old.codes_of(item)
    assert set(result.new_items) == new_ids and set(result.retired_items) == retired
    assert new.n_collisions() == 0 and len(new) == 395
    assert all(np.array_equal(a, b) for a, b in zip(new.codebooks, old.codebooks, strict=True))  # same meaning
    retired_sids = {old.codes_of(i) for i in retired}
    assert not retired_sids & {new.codes_of(i) for i in result.new_items}
    assert abs(result.drift["new_item_share"] - 20 / 395) < 1e-9
    assert result.drift["residual_ratio"] > 0 and 0 <= result.drift["mean_shift"] < 1
    assert result.rebuild is False, result.reasons
    strict = CFG.model_copy(update={"drift_new_item_share": 0.01})
    assert refresh_sids(tmp_path / "v1", current, events, strict, tmp_path / "v3").rebuild is True
    # other SID settings: the old codebooks live in another embedding space, so never refresh with them
    reweighted = CFG.model_copy(update={"content_weight": 0.3, "collab_weight": 0.7})
    changed = refresh_sids(tmp_path / "v1", current, events, reweighted, tmp_path / "v4")
    assert changed.rebuild is True and "SID settings changed" in changed.reasons[0]
    assert set(changed.new_items) == new_ids and not (tmp_path / "v4" / "sid_map.json").exists()


def test_rqvae_builds_unique_sids(data, tmp_path):
    catalog, events = data
    cfg = CFG.model_copy(update={"quantizer": "rqvae"})
    sidmap = build_sids(catalog.iloc[:150], events, cfg, tmp_path / "v1")
    assert sidmap.n_collisions() == 0 and sidmap.meta["quantizer"] == "rqvae"
    assert (tmp_path / "v1" / "codebooks" / "encoder.npz").exists()
    metrics = json.loads((tmp_path / "v1" / "metrics.json").read_text())
    assert len(metrics["residual_mse_after_level"]) == 3 and all(0 < u <= 1 for u in metrics["utilisation_per_level"])
    assert metrics["utilisation_per_level"][0] >= 0.5  # no codebook collapse onto a couple of codes
    # the saved encoder + codebooks assign new items without retraining
    result = refresh_sids(tmp_path / "v1", catalog.iloc[:160], events, cfg, tmp_path / "v2")
    assert len(result.new_items) == 10 and result.sidmap.n_collisions() == 0
    assert all(result.sidmap.codes_of(i) == sidmap.codes_of(i) for i in sidmap.item_ids)
