"""Semantic IDs: collision-free builds, metrics, refresh that keeps old SIDs, drift, RQ-VAE."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
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
    # retired items stay in the map with their codes (histories still show them), never recommended
    assert new.n_collisions() == 0 and len(new) == 400 and new.retired == retired
    assert len(new.active()) == 395 and not any(new.servable(i) for i in retired)
    assert all(new.codes_of(i) == old.codes_of(i) for i in retired)
    assert all(np.array_equal(a, b) for a, b in zip(new.codebooks, old.codebooks, strict=True))  # same meaning
    retired_sids = {old.codes_of(i) for i in retired}
    assert not retired_sids & {new.codes_of(i) for i in result.new_items}
    assert abs(result.drift["new_item_share"] - 20 / 395) < 1e-9
    assert result.drift["residual_ratio"] > 0 and 0 <= result.drift["mean_shift"] < 1
    assert result.rebuild is False, result.reasons
    strict = CFG.model_copy(update={"drift_new_item_share": 0.01})
    assert refresh_sids(tmp_path / "v1", current, events, strict, tmp_path / "v3").rebuild is True
    assert new.lineage == old.lineage and new.version.startswith(old.version + ".r")
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


def test_an_edited_item_is_re_embedded_and_moves_only_out_of_its_bucket(data, tmp_path):
    """A refresh re-embeds items whose text changed: one edited into another cluster's words moves (old -> new
    written), one with a cosmetic edit keeps its SID; moved items count toward drift."""
    catalog, events = data
    cfg = CFG.model_copy(update={"content_weight": 1.0, "collab_weight": 0.0})  # codes follow the text alone
    old = build_sids(catalog, events, cfg, tmp_path / "v1")
    edited = catalog.copy()
    far = edited.index[0]
    first = old.codes_of(str(edited.item_id[far]))[0]
    donor = next(i for i in edited.index if old.codes_of(str(edited.item_id[i]))[0] != first)
    edited.loc[far, ["title", "description", "brand"]] = edited.loc[donor, ["title", "description", "brand"]].values
    edited.loc[far, "title"] = edited.loc[far, "title"].upper()  # another bucket's text (the encoder lowercases)
    cosmetic = edited.index[1]
    edited.loc[cosmetic, "description"] = str(edited.loc[cosmetic, "description"]).upper()  # new text, same words
    result = refresh_sids(tmp_path / "v1", edited, events, cfg, tmp_path / "v2")
    item_far, item_cosmetic = str(edited.item_id[far]), str(edited.item_id[cosmetic])
    assert set(result.edited_items) == {item_far, item_cosmetic}
    assert result.sidmap.codes_of(item_cosmetic) == old.codes_of(item_cosmetic)
    assert item_far in result.moved and result.moved[item_far][0] == old.codes_of(item_far)
    assert result.sidmap.codes_of(item_far)[:-1] != old.codes_of(item_far)[:-1]
    mapping = pd.read_parquet(tmp_path / "v2" / "sid_mapping.parquet")
    assert mapping.item_id.tolist() == [item_far]
    assert abs(result.drift["new_item_share"] - 1 / len(catalog)) < 1e-9
    assert result.sidmap.version != old.version and result.sidmap.n_collisions() == 0


def test_a_rebuild_keeps_sids_stable_where_it_can_and_maps_the_rest(data, tmp_path):
    """Rebuilding on more events gives new codebooks; aligning the embeddings and code labels to the previous map
    keeps items' SIDs where the old code still fits (more than an unaligned build does; a looser
    rebuild_keep_tolerance keeps more) and writes old -> new for the others."""
    catalog, events = data
    old = build_sids(catalog, events.iloc[: len(events) // 2], CFG, tmp_path / "v1")
    plain = build_sids(catalog, events, CFG, tmp_path / "plain")
    aligned = build_sids(catalog, events, CFG, tmp_path / "v2", previous_dir=tmp_path / "v1")
    kept_plain = sum(plain.codes_of(i) == old.codes_of(i) for i in catalog.item_id)
    kept = sum(aligned.codes_of(i) == old.codes_of(i) for i in catalog.item_id)
    metrics = json.loads((tmp_path / "v2" / "metrics.json").read_text())
    loose = build_sids(
        catalog,
        events,
        CFG.model_copy(update={"rebuild_keep_tolerance": 1.0}),
        tmp_path / "v3",
        previous_dir=tmp_path / "v1",
    )
    kept_loose = sum(loose.codes_of(i) == old.codes_of(i) for i in catalog.item_id)
    assert kept_plain < kept < kept_loose
    assert metrics["reassigned_items"] == len(catalog) - kept and metrics["previous_version"] == old.version
    assert metrics["reassigned_share"] == pytest.approx((len(catalog) - kept) / len(catalog))
    mapping = pd.read_parquet(tmp_path / "v2" / "sid_mapping.parquet")
    assert len(mapping) == len(catalog) - kept
    row = mapping.iloc[0]
    assert tuple(row.old_codes) == old.codes_of(row.item_id) and tuple(row.new_codes) == aligned.codes_of(row.item_id)
    assert aligned.n_collisions() == 0 and aligned.lineage != old.lineage
