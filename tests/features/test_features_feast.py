"""Feast: apply + materialize (SQLite and a real Redis), point-in-time examples, online reads."""

from __future__ import annotations

import pandas as pd
import pytest

from components.config import SidConfig, load_config
from components.data.synthetic import generate_synthetic
from components.features.historical import build_training_examples
from components.features.online import OnlineFeatures, UnknownUserError
from components.features.repo import apply, materialize, write_sources
from components.sids.build import build_sids
from components.utils.redis_server import start_redis


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("feast")
    catalog, events = generate_synthetic(n_items=60, n_users=40, seed=6)
    sidmap = build_sids(
        catalog, events, SidConfig(codebook_size=8, content_encoder="hashing", collab_dim=8), root / "sids"
    )
    prefixes = pd.DataFrame(
        {
            "user_id": ["u1"],
            "prefixes": [["1_2", "3_4"]],
            "scores": [[0.5, 0.25]],
            "model_version": ["m1"],
            "sid_version": [sidmap.version],
            "created_at": [pd.Timestamp("2025-01-01", tz="UTC")],
        }
    )
    return root, catalog, events, sidmap, prefixes


def _setup(cfg, world):
    _, catalog, events, sidmap, prefixes = world
    write_sources(cfg, catalog, events, sidmap, prefixes)
    names = apply(cfg)
    materialize(cfg)
    return names


def test_apply_materialize_and_online_reads_sqlite(world):
    root, catalog, events, sidmap, _ = world
    cfg = load_config(None, overrides={"run_root": str(root / "sqlite")})
    names = _setup(cfg, world)
    assert {"user", "item", "user_history", "item_features", "user_prefixes", "recommendation_service"} <= set(names)
    online = OnlineFeatures(cfg)
    last = events.sort_values("event_timestamp").groupby("user_id").item_id.apply(list)
    assert online.user_history("u3") == last["u3"][-10:]
    assert online.user_prefixes("u1") == [(1, 2), (3, 4)] and online.user_prefixes("u2") is None
    info = online.item_info(["i1", "i2"])
    assert info["i1"]["sid"] == sidmap.sid_of("i1") and info["i2"]["title"] == catalog.title[2]
    with pytest.raises(UnknownUserError):
        online.user_history("nobody")


def test_point_in_time_history_excludes_the_target_and_later(world):
    root, _, events, _, _ = world
    cfg = load_config(None, overrides={"run_root": str(root / "sqlite")})
    user = events[events.user_id == "u5"].sort_values("event_timestamp")
    entity = pd.DataFrame(
        {"user_id": "u5", "target": user.item_id.to_numpy()[1:], "event_timestamp": user.event_timestamp.to_numpy()[1:]}
    )
    examples = build_training_examples(cfg, entity)
    items = user.item_id.tolist()
    assert len(examples) == len(items) - 1
    for n, row in enumerate(examples.itertuples(), start=1):
        assert row.history == items[max(0, n - 10) : n] and row.target == items[n]


@pytest.mark.integration
def test_redis_online_store(world):
    root, _, events, _, _ = world
    server = start_redis(root / "redis")
    try:
        cfg = load_config(
            None,
            overrides={
                "run_root": str(root / "redis_run"),
                "features": {"online_store": "redis", "redis_connection": server.connection},
            },
        )
        _setup(cfg, world)
        last = events.sort_values("event_timestamp").groupby("user_id").item_id.apply(list)
        online = OnlineFeatures(cfg)
        assert online.user_history("u7") == last["u7"][-10:]
        assert online.user_prefixes("u1") == [(1, 2), (3, 4)]
    finally:
        server.stop()
    assert server.process.poll() is not None


def test_feast_ignores_non_feature_files():
    from pathlib import Path

    ignore = (Path(__file__).resolve().parents[2] / "feature_repo" / ".feastignore").read_text()
    assert "data/" in ignore
