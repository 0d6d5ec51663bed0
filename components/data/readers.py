"""Readers for catalog and event files: parquet, CSV, JSONL (optionally gzip), local or s3://.

Readers coerce to the contract's types (ids as strings, timestamps as UTC) but never drop rows: a value that
cannot be parsed becomes null and is quarantined by validation with its reason, so nothing good or bad
disappears silently.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pandas as pd

from components.data.contracts import CATALOG_COLUMNS, EVENTS_COLUMNS, ContractViolation, missing_columns


def _open_bytes(uri: str, endpoint_url: str | None = None) -> bytes:
    if uri.startswith("s3://"):
        import boto3

        bucket, _, key = uri[5:].partition("/")
        client = boto3.client("s3", endpoint_url=endpoint_url or os.environ.get("AWS_ENDPOINT_URL"))
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()
    path = Path(uri)
    if not path.exists():
        raise FileNotFoundError(f"data file not found: {uri}")
    return path.read_bytes()


def read_table(uri: str, endpoint_url: str | None = None) -> pd.DataFrame:
    """Read a parquet / CSV / JSONL file (.gz allowed) into a frame of raw values (ids kept as text)."""
    raw = _open_bytes(uri, endpoint_url)
    name = uri.lower().removesuffix(".gz")
    compression = "gzip" if uri.lower().endswith(".gz") else None
    buffer = io.BytesIO(raw)
    try:
        if name.endswith(".parquet"):
            return pd.read_parquet(buffer)
        if name.endswith(".csv"):
            return pd.read_csv(buffer, compression=compression, dtype=str, keep_default_na=False, na_values=[""])
        if name.endswith((".jsonl", ".json", ".ndjson")):
            return pd.read_json(buffer, lines=True, compression=compression, dtype=False)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ContractViolation(f"{uri}: cannot be parsed as {name.rsplit('.', 1)[-1]}: {exc}") from exc
    raise ContractViolation(f"{uri}: unsupported format (use .parquet, .csv or .jsonl, optionally .gz)")


def _coerce(frame: pd.DataFrame, columns: dict[str, str], uri: str, kind: str) -> pd.DataFrame:
    missing = missing_columns(list(frame.columns), kind)
    if missing:
        raise ContractViolation(
            f"{uri}: rule 'required columns' broken for the {kind}: missing {missing}; found {list(frame.columns)}"
        )
    out = frame.copy()
    for column, kind_of in columns.items():
        if kind_of == "timestamp":
            out[column] = pd.to_datetime(out[column], utc=True, errors="coerce", format="mixed")
        else:
            values = out[column]
            out[column] = values.where(values.isna(), values.astype(str)).astype("string")
    extra = [c for c in out.columns if c not in columns]
    return out[list(columns) + extra]


def read_catalog(uri: str, endpoint_url: str | None = None) -> pd.DataFrame:
    """The catalog typed to the contract (item_id, title, description, brand, categories, updated_at)."""
    frame = _coerce(read_table(uri, endpoint_url), CATALOG_COLUMNS, uri, "catalog")
    for column in ("description", "brand", "categories"):
        frame[column] = frame[column].fillna("")
    return frame


def read_events(uri: str, endpoint_url: str | None = None) -> pd.DataFrame:
    """The event log typed to the contract (user_id, item_id, event_timestamp, event_type)."""
    return _coerce(read_table(uri, endpoint_url), EVENTS_COLUMNS, uri, "events")


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write parquet/CSV/JSONL by suffix (used by tests and the synthetic generator)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    name = path.name.lower().removesuffix(".gz")
    compression = "gzip" if path.name.lower().endswith(".gz") else None
    if name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    elif name.endswith(".csv"):
        frame.to_csv(path, index=False, compression=compression)
    elif name.endswith(".jsonl"):
        frame.to_json(path, orient="records", lines=True, date_format="iso", compression=compression)
    else:
        raise ValueError(f"unsupported output format: {path}")
    return path
