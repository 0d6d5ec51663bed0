"""Ingest: read raw catalog + events, validate with Great Expectations, write curated parquet + quarantine.

The curated directory is published to the artifact store as "curated" (and the quarantine with it), so the
SID, feature and training steps all read one validated, versioned snapshot.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from components.config import Config
from components.data.readers import read_catalog, read_events
from components.data.validate import validate_catalog, validate_events

log = logging.getLogger(__name__)


def ingest(cfg: Config, out_dir: Path | None = None, publish: bool = True) -> dict:
    """Validate the configured catalog/events and write catalog.parquet, events.parquet, quarantine.parquet."""
    catalog_uri, events_uri = cfg.path(cfg.data.catalog_uri), cfg.path(cfg.data.events_uri)
    endpoint = cfg.store.s3_endpoint_url
    catalog_report = validate_catalog(read_catalog(catalog_uri, endpoint), cfg.data, catalog_uri)
    events_report = validate_events(
        read_events(events_uri, endpoint), set(catalog_report.good["item_id"]), cfg.data, events_uri
    )
    out = Path(out_dir or Path(cfg.path(cfg.run_root)) / "curated")
    out.mkdir(parents=True, exist_ok=True)
    catalog_report.good.to_parquet(out / "catalog.parquet", index=False)
    events_report.good.to_parquet(out / "events.parquet", index=False)
    quarantine = pd.concat(
        [catalog_report.quarantine.assign(table="catalog"), events_report.quarantine.assign(table="events")],
        ignore_index=True,
    )
    for column in quarantine.columns:  # mixed tables: store every value as text so nothing is lost
        quarantine[column] = quarantine[column].astype("string")
    quarantine.to_parquet(out / "quarantine.parquet", index=False)
    summary = {"catalog": catalog_report.summary, "events": events_report.summary}
    (out / "validation_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    result = {
        "curated_dir": str(out),
        "items": int(len(catalog_report.good)),
        "events": int(len(events_report.good)),
        "quarantined_catalog_rows": int(len(catalog_report.quarantine)),
        "quarantined_event_rows": int(len(events_report.quarantine)),
        "version": None,
    }
    if publish:
        from components.store.artifacts import ArtifactStore

        store = ArtifactStore.from_config(cfg.store)
        result["version"] = store.publish("curated", out, metadata={k: v for k, v in result.items() if k != "version"})
    log.info("ingest: %s", result)
    return result


def read_catalog_for(cfg: Config) -> pd.DataFrame:
    """The deployment's catalog (data.catalog_uri, local or s3://), typed to the contract."""
    return read_catalog(cfg.path(cfg.data.catalog_uri), cfg.store.s3_endpoint_url)


def read_events_for(cfg: Config) -> pd.DataFrame:
    """The deployment's event log (data.events_uri, local or s3://), typed to the contract."""
    return read_events(cfg.path(cfg.data.events_uri), cfg.store.s3_endpoint_url)
