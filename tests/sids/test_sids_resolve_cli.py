"""Collision resolution under pressure (nearly full tiny codebooks) and the `sidrec sids` CLI end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from components.config import SidConfig
from components.data.readers import write_table
from components.data.synthetic import generate_synthetic
from components.sids.build import build_sids
from components.sids.cli import app
from components.sids.quantize import assign_unique, train_rqkmeans
from components.sids.refresh import refresh_sids


@pytest.mark.parametrize(("n", "levels", "size"), [(216, 3, 6), (1200, 4, 6)])
def test_nearly_full_codebooks_still_give_unique_sids(n, levels, size):
    """Many near-duplicate items in tiny codebooks: capacity exactly n (216 = 6^3) and 93% full (1200 of 6^4)."""
    rng = np.random.default_rng(3)
    centers = rng.standard_normal((12, 16)).astype(np.float32)
    x = centers[rng.integers(0, 12, n)] + 0.01 * rng.standard_normal((n, 16)).astype(np.float32)
    quantizer, raw = train_rqkmeans(x, levels, size, balanced=True)
    assert len({tuple(r) for r in raw.tolist()}) < n  # the greedy codes really collide
    codes, moved = assign_unique(quantizer, x, raw)
    assert len({tuple(r) for r in codes.tolist()}) == n and moved > 0
    assert codes.min() >= 0 and all(codes[:, lv].max() < size for lv in range(levels))


def test_build_refuses_a_catalog_larger_than_the_capacity(tmp_path):
    catalog, events = generate_synthetic(n_items=100, n_users=20, seed=0)
    with pytest.raises(ValueError, match="capacity 4\\^3 = 64 < 100"):
        build_sids(catalog, events, SidConfig(levels=3, codebook_size=4, content_encoder="hashing"), tmp_path)


def test_cli_build_publish_then_refresh_latest(tmp_path):
    catalog, events = generate_synthetic(n_items=300, n_users=200, seed=2)
    new_ids = set(np.random.default_rng(0).choice(catalog.item_id.to_numpy(), size=15, replace=False))
    old_ids = set(catalog.item_id) - new_ids
    write_table(catalog[catalog.item_id.isin(old_ids)], tmp_path / "catalog_v1.parquet")
    write_table(events[events.item_id.isin(old_ids)], tmp_path / "events_v1.parquet")
    write_table(catalog, tmp_path / "catalog_v2.parquet")
    write_table(events, tmp_path / "events_v2.parquet")
    config = tmp_path / "cfg.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "run_root": str(tmp_path / "runs"),
                "store": {"root": str(tmp_path / "artifacts")},
                "sids": {"levels": 3, "codebook_size": 16, "content_encoder": "hashing", "collab_dim": 16},
            }
        )
    )
    runner = CliRunner()
    common = ["--config", str(config), "--events"]
    built = runner.invoke(
        app, ["build", *common, str(tmp_path / "events_v1.parquet"), "--catalog", str(tmp_path / "catalog_v1.parquet")]
    )
    assert built.exit_code == 0, built.output
    metrics = json.loads(built.stdout)
    assert metrics["collisions_after_resolution"] == 0 and metrics["artifact_version"] == metrics["version"]
    assert (tmp_path / "artifacts" / "sid_map" / "LATEST").read_text().strip() == metrics["version"]
    # a rebuild of the same inputs is the same map (same version): not an immutability error
    again = runner.invoke(
        app, ["build", *common, str(tmp_path / "events_v1.parquet"), "--catalog", str(tmp_path / "catalog_v1.parquet")]
    )
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["artifact_version"] == metrics["version"]

    refreshed = runner.invoke(
        app,
        ["refresh", *common, str(tmp_path / "events_v2.parquet"), "--catalog", str(tmp_path / "catalog_v2.parquet")],
    )
    assert refreshed.exit_code == 0, refreshed.output
    summary = json.loads(refreshed.stdout)
    assert summary["new_items"] == 15 and summary["retired_items"] == 0 and summary["rebuild"] is False
    assert summary["artifact_version"] == summary["version"] != metrics["version"]

    # a drift threshold below the new-item share forces the rebuild decision, and --rebuild-on-drift acts on it
    strict = yaml.safe_load(config.read_text())
    strict["sids"]["drift_new_item_share"] = 0.01
    config.write_text(yaml.safe_dump(strict))
    drifted = runner.invoke(
        app,
        [
            "refresh",
            *common,
            str(tmp_path / "events_v2.parquet"),
            "--catalog",
            str(tmp_path / "catalog_v2.parquet"),
            "--map",
            str(tmp_path / "runs" / "sid_build"),
            "--out",
            str(tmp_path / "r3"),
            "--rebuild-on-drift",
        ],
    )
    assert drifted.exit_code == 0, drifted.output
    decision = json.loads(drifted.stdout)
    assert decision["rebuild"] is True and any("item share" in r for r in decision["reasons"])
    assert decision["rebuilt"]["items"] == 300 and decision["rebuilt"]["collisions_after_resolution"] == 0


def test_refresh_flags_a_new_product_line_by_residual_drift(tmp_path):
    """5% new items that all form an unseen cluster fit the old codebooks badly: rebuild, even at a low share."""
    cfg = SidConfig(levels=3, codebook_size=16, content_encoder="hashing", collab_dim=16)
    catalog, events = generate_synthetic(n_items=300, n_users=200, seed=2)
    old = catalog.iloc[:285]  # the synthetic catalog is sorted by cluster: the tail is a new product line
    build_sids(old, events[events.item_id.isin(set(old.item_id))], cfg, tmp_path / "v1")
    result = refresh_sids(tmp_path / "v1", catalog, events, cfg, tmp_path / "v2")
    assert result.drift["new_item_share"] == pytest.approx(0.05) and result.rebuild is True
    assert [r for r in result.reasons if "residual" in r] and not [r for r in result.reasons if "share" in r]


def test_balanced_assignment_caps_code_load():
    """A skewed cloud (most points near one centroid) still spreads over codes within the capacity."""
    from components.sids.quantize import _nearest, balanced_assign

    rng = np.random.default_rng(5)
    centroids = rng.standard_normal((8, 4)).astype(np.float32)
    x = np.concatenate([centroids[0] + 0.1 * rng.standard_normal((700, 4)), rng.standard_normal((300, 4))])
    x = x.astype(np.float32)
    nearest = _nearest(x, centroids)[1][:, 0]
    assert np.bincount(nearest, minlength=8).max() > 600  # unconstrained: one code takes most items
    codes = balanced_assign(x, centroids, slack=0.1)
    load = np.bincount(codes, minlength=8)
    assert codes.min() >= 0 and load.sum() == 1000 and load.max() <= int(np.ceil(1000 / 8 * 1.1))
    free_choice = nearest != 0  # items whose nearest code is not the crowded one keep it
    assert (codes[free_choice] == nearest[free_choice]).mean() > 0.9
