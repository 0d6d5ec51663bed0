"""Feast: apply + materialize (SQLite and a real Redis), point-in-time examples, online reads."""

from __future__ import annotations

import pandas as pd
import pytest

from components.config import SidConfig, load_config
from components.data.splits import examples_from_events
from components.data.synthetic import generate_synthetic
from components.features.historical import build_training_examples
from components.features.online import OnlineFeatures
from components.features.repo import apply, materialize, write_sources
from components.local.redis import start_redis
from components.runtime.language import sid_of
from components.sids.build import build_sids


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
            "rationale": ["Because the user bought Acme items before."],
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
    assert online.user("u3").history == last["u3"][-10:]
    last_time = events.groupby("user_id").event_timestamp.max()  # the gap of the runtime context is measured from it
    assert online.user("u3").last_event_unix == int(last_time["u3"].timestamp())
    assert online.user("nobody").last_event_unix is None
    u1 = online.user("u1")  # one feature-service read: history, prefixes as stored, their versions, the rationale
    assert u1.prefixes == ["1_2", "3_4"] and u1.prefix_sid_version == sidmap.version
    assert u1.prefix_model_version == "m1" and u1.rationale.startswith("Because")
    assert online.user("u2").prefixes == [] and online.user("u2").known
    assert not online.user("nobody").known and online.user("nobody").history == []
    items = pd.read_parquet(root / "sqlite" / "feature_repo" / "data" / "item_features.parquet")
    row = items.set_index("item_id").loc["i1"]
    assert row["sid"] == sid_of(sidmap, "i1") and items.set_index("item_id").loc["i2", "title"] == catalog.title[2]


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
    times = [int(t.timestamp()) for t in user.event_timestamp]
    for n, row in enumerate(examples.itertuples(), start=1):
        assert row.history == items[max(0, n - 10) : n] and row.target == items[n]
        assert row.last_event_unix == times[n - 1]  # the request context's gap: from the event before the target
    from_events = pd.concat(examples_from_events(events[events.user_id == "u5"], 10).values())
    assert sorted(from_events.last_event_unix) == sorted(examples.last_event_unix)  # both example builders agree


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
        assert online.user("u7").history == last["u7"][-10:]
        assert online.user("u1").prefixes == ["1_2", "3_4"]
    finally:
        server.stop()
    assert server.process.poll() is not None


def test_feast_ignores_non_feature_files():
    from pathlib import Path

    ignore = (Path(__file__).resolve().parents[2] / "feature_repo" / ".feastignore").read_text()
    assert "data/" in ignore


def test_feast_import_filters_do_not_bring_back_filtered_library_warnings(tmp_path):
    """Feast's modules run warnings.simplefilter("once", DeprecationWarning) at import, ahead of our filters; the
    store reinstates them, so ibis's fetch_arrow_table deprecation stays out of materialisation logs while other
    deprecations still show."""
    import warnings

    from components.features.repo import get_store

    cfg = load_config(None, overrides={"run_root": str(tmp_path)})
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("once", DeprecationWarning)  # what importing Feast does, in front of everything
        get_store(cfg)
        warnings.warn("fetch_arrow_table() is deprecated.", DeprecationWarning, stacklevel=1)
        warnings.warn("some other deprecation", DeprecationWarning, stacklevel=1)
    assert [str(w.message) for w in seen if issubclass(w.category, DeprecationWarning)] == ["some other deprecation"]
