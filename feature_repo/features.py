"""sidrec's Feast definitions: user and item entities, three feature views, one feature service.

Source paths are absolute (DuckDB resolves relative paths against the cwd, not the repo), computed from this
file's folder: `sidrec features apply` writes the source parquet files into <repo>/data/ first.
"""

from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource
from feast.types import Array, Float64, Int64, String
from feast.value_type import ValueType

DATA = Path(__file__).resolve().parent / "data"

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING, description="A customer.")
item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.STRING, description="A catalog item.")

user_history_source = FileSource(
    name="user_history_source", path=str(DATA / "user_history.parquet"), timestamp_field="event_timestamp"
)
item_features_source = FileSource(
    name="item_features_source", path=str(DATA / "item_features.parquet"), timestamp_field="event_timestamp"
)
user_prefixes_source = FileSource(
    name="user_prefixes_source", path=str(DATA / "user_prefixes.parquet"), timestamp_field="event_timestamp"
)

user_history = FeatureView(
    name="user_history",
    entities=[user],
    ttl=timedelta(days=3650),
    schema=[
        Field(name="history", dtype=Array(String), description="last N item ids, oldest first"),
        Field(name="n_events", dtype=Int64),
        Field(name="last_event_unix", dtype=Int64, description="recency: time of the latest event"),
    ],
    source=user_history_source,
    description="The user's recent items as of each event (point-in-time).",
)

item_features = FeatureView(
    name="item_features",
    entities=[item],
    ttl=timedelta(days=3650),
    schema=[
        Field(name="sid", dtype=String),
        Field(name="sid_version", dtype=String),
        Field(name="popularity", dtype=Int64),
        Field(name="brand", dtype=String),
        Field(name="categories", dtype=String),
        Field(name="title", dtype=String),
    ],
    source=item_features_source,
    description="Semantic ID and catalog attributes of each item.",
)

user_prefixes = FeatureView(
    name="user_prefixes",
    entities=[user],
    ttl=timedelta(days=30),
    schema=[
        Field(name="prefixes", dtype=Array(String), description="think-ahead SID prefixes, '12_7'"),
        Field(name="prefix_scores", dtype=Array(Float64)),
        Field(name="model_version", dtype=String),
        Field(name="sid_version", dtype=String),
        Field(name="rationale", dtype=String, description="why: the reasoning behind the first prefix"),
    ],
    source=user_prefixes_source,
    description="Offline OneRec-Think prefixes per user.",
)

recommendation_service = FeatureService(
    name="recommendation_service",
    features=[user_history, user_prefixes],
    description="What the thin client reads per request.",
)
