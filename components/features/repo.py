"""Feast repository preparation, feature source building, apply and materialize.

`prepare_repo` copies feature_repo/ into the run directory and writes its feature_store.yaml from the
deployment config (SQLite by default, Redis in production), so no machine path is ever committed and each
deployment has its own registry. The feature sources are built from the curated catalog/events, the SID map
and the think-ahead prefixes:
- user_history: one row per event holding the user's items strictly BEFORE it, stamped at the event's time,
  so a point-in-time lookup at a target's timestamp never sees the target or anything later.
- item_features: SID, SID version, popularity, brand, categories, title.
- user_prefixes: the pooled think-ahead prefixes (empty until the reasoning step has run).
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import yaml

from components.config import Config
from components.logs import filter_noise
from components.runtime.language import sid_of
from components.sids.sidmap import SidMap

SERVICE = "recommendation_service"  # feature_repo/features.py: what the client reads per request
PREFIX_COLUMNS = [
    "user_id",
    "event_timestamp",
    "prefixes",
    "prefix_scores",
    "model_version",
    "sid_version",
    "rationale",
]


def repo_dir(cfg: Config) -> Path:
    return Path(cfg.path(cfg.run_root)) / "feature_repo"


def prepare_repo(cfg: Config) -> Path:
    """Copy the Feast definitions into the run dir and write a feature_store.yaml for this deployment."""
    target = repo_dir(cfg)
    (target / "data").mkdir(parents=True, exist_ok=True)
    source = Path(cfg.path(cfg.features.repo_path))
    for name in ("features.py", ".feastignore"):
        shutil.copyfile(source / name, target / name)
    if cfg.features.online_store == "redis":
        online = {"type": "redis", "connection_string": cfg.features.redis_connection}
    else:
        online = {"type": "sqlite", "path": str(target / "data" / "online.db")}
    registry = cfg.features.registry or str(target / "data" / "registry.db")
    if registry.startswith("s3://") and cfg.store.s3_endpoint_url:
        os.environ.setdefault("FEAST_S3_ENDPOINT_URL", cfg.store.s3_endpoint_url)  # Feast's S3 registry reads it
    store_yaml = {
        "project": "sidrec",
        "provider": "local",
        "registry": registry if "://" in registry else cfg.path(registry),
        "online_store": online,
        "offline_store": {"type": "duckdb"},
        "entity_key_serialization_version": 3,
    }
    (target / "feature_store.yaml").write_text(yaml.safe_dump(store_yaml, sort_keys=False))
    return target


def user_history_frame(events: pd.DataFrame, max_history: int) -> pd.DataFrame:
    """Per event: the user's last `max_history` items before it, stamped 1 µs after the event it precedes.

    Stamping the state *after* event e at t_e + 1µs means a lookup at t_e sees the history before e only.
    """
    ordered = events.sort_values(["user_id", "event_timestamp"], kind="stable")
    rows = []
    for user, group in ordered.groupby("user_id", sort=False):
        items = group["item_id"].astype(str).tolist()
        times = group["event_timestamp"].tolist()
        for n in range(1, len(items) + 1):
            rows.append(
                {
                    "user_id": str(user),
                    "event_timestamp": times[n - 1] + pd.Timedelta(microseconds=1),
                    "history": items[max(0, n - max_history) : n],
                    "n_events": n,
                    "last_event_unix": int(times[n - 1].timestamp()),
                }
            )
    return pd.DataFrame(rows, columns=["user_id", "event_timestamp", "history", "n_events", "last_event_unix"])


def item_features_frame(catalog: pd.DataFrame, events: pd.DataFrame, sidmap: SidMap) -> pd.DataFrame:
    popularity = events["item_id"].astype(str).value_counts()
    frame = catalog[catalog["item_id"].astype(str).isin(set(sidmap.item_ids))].copy()
    ids = frame["item_id"].astype(str)
    return pd.DataFrame(
        {
            "item_id": ids.to_numpy(),
            "event_timestamp": pd.to_datetime(frame["updated_at"], utc=True).to_numpy(),
            "sid": [sid_of(sidmap, i) for i in ids],
            "sid_version": sidmap.version,
            "popularity": [int(popularity.get(i, 0)) for i in ids],
            "brand": frame["brand"].fillna("").astype(str).to_numpy(),
            "categories": frame["categories"].fillna("").astype(str).to_numpy(),
            "title": frame["title"].fillna("").astype(str).to_numpy(),
        }
    )


def user_prefixes_frame(prefixes: pd.DataFrame | None) -> pd.DataFrame:
    columns = PREFIX_COLUMNS
    if prefixes is None or prefixes.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in columns}).astype(
            {"event_timestamp": "datetime64[ns, UTC]"}
        )
    return pd.DataFrame(
        {
            "user_id": prefixes["user_id"].astype(str),
            "event_timestamp": pd.to_datetime(prefixes["created_at"], utc=True),
            "prefixes": prefixes["prefixes"].map(list),
            "prefix_scores": prefixes["scores"].map(lambda s: [float(x) for x in s]),
            "model_version": prefixes["model_version"].astype(str),
            "sid_version": prefixes["sid_version"].astype(str),
            "rationale": prefixes["rationale"].astype(str) if "rationale" in prefixes else "",
        }
    )


def _write_prefixes(frame: pd.DataFrame, path: Path) -> None:
    """Typed parquet even when empty: Feast infers feature types from the file and rejects all-null columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("user_id", pa.string()),
            ("event_timestamp", pa.timestamp("us", tz="UTC")),
            ("prefixes", pa.list_(pa.string())),
            ("prefix_scores", pa.list_(pa.float64())),
            ("model_version", pa.string()),
            ("sid_version", pa.string()),
            ("rationale", pa.string()),
        ]
    )
    pq.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False), path)


def write_sources(
    cfg: Config, catalog: pd.DataFrame, events: pd.DataFrame, sidmap: SidMap, prefixes: pd.DataFrame | None = None
) -> Path:
    data = prepare_repo(cfg) / "data"
    user_history_frame(events, cfg.data.max_history).to_parquet(data / "user_history.parquet", index=False)
    item_features_frame(catalog, events, sidmap).to_parquet(data / "item_features.parquet", index=False)
    _write_prefixes(user_prefixes_frame(prefixes), data / "user_prefixes.parquet")
    return data


def get_store(cfg: Config):
    from feast import FeatureStore

    filter_noise()  # Feast's import put its own warning filters in front of ours
    path = repo_dir(cfg)
    if not (path / "feature_store.yaml").exists():
        prepare_repo(cfg)
    return FeatureStore(repo_path=str(path))


def apply(cfg: Config) -> list[str]:
    """Register the repository's objects (what `feast apply` does), importing only features.py."""
    import importlib.util

    path = prepare_repo(cfg)
    spec = importlib.util.spec_from_file_location(f"sidrec_feature_repo_{abs(hash(str(path)))}", path / "features.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from feast import Entity, FeatureService, FeatureView

    objects = [v for v in vars(module).values() if isinstance(v, Entity | FeatureView | FeatureService)]
    store = get_store(cfg)
    store.apply(objects)
    return sorted(o.name for o in objects)


def materialize(cfg: Config, end: datetime | None = None) -> dict:
    """Load the latest feature values up to `end` (default now) into the online store."""
    store = get_store(cfg)
    end = end or datetime.now(UTC)
    store.materialize(start_date=datetime(1990, 1, 1, tzinfo=UTC), end_date=end)
    return {
        "online_store": cfg.features.online_store,
        "end": end.isoformat(),
        "views": [fv.name for fv in store.list_feature_views()],
    }


def read_prefix_files(path_or_dir: Path) -> pd.DataFrame | None:
    """The think-ahead job's prefix shards (prefixes-*.parquet in a directory, or one file) as one frame; None
    when there are none."""
    path = Path(path_or_dir)
    files = sorted(path.glob("prefixes-*.parquet")) if path.is_dir() else [path]
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) if files else None
