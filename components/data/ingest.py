"""Ingest: read raw catalog + events, validate with Great Expectations, write curated parquet + quarantine.

The pipeline's ingest step publishes the curated directory to the artifact store as "curated" (and the quarantine
with it), so the SID, feature and training steps all read one validated, versioned snapshot. Whatever else reads
raw files (the SID, feature, training and reasoning CLIs, the benchmark) goes through load_validated /
read_catalog_for / read_events_for: the same readers, the same contract, the same quarantine.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from components.config import Config
from components.data.validate import ValidationReport, validate_catalog_file, validate_events_file

log = logging.getLogger(__name__)


def validate_inputs(
    cfg: Config,
    catalog_uri: str | None = None,
    events_uri: str | None = None,
    known_items: set[str] | None = None,
) -> tuple[ValidationReport, ValidationReport]:
    """Read and validate the catalog, then the events against the catalog's good items (default: the configured URIs).

    The catalog goes first because an event is only good if its item survived the catalog's contract. An event of
    a `known_items` item no longer in the catalog (a retired item the SID map still holds) is good too: retired
    items stay in histories as evidence of taste, they are only never recommended.
    """
    catalog_uri = catalog_uri or cfg.path(cfg.data.catalog_uri)
    events_uri = events_uri or cfg.path(cfg.data.events_uri)
    endpoint = cfg.store.s3_endpoint_url
    catalog_report = validate_catalog_file(catalog_uri, cfg.data, endpoint)
    items = set(catalog_report.good["item_id"]) | set(known_items or ())
    events_report = validate_events_file(events_uri, items, cfg.data, endpoint)
    for report in (catalog_report, events_report):
        if len(report.quarantine):
            log.warning(
                "%s: quarantined %d of %d rows: %s",
                report.summary["source"],
                report.summary["quarantined_rows"],
                report.summary["rows"],
                report.summary["rows_by_reason"],
            )
    return catalog_report, events_report


def load_validated(
    cfg: Config, catalog_uri: str | None = None, events_uri: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The good catalog and event rows of raw files, with the validation summary: how raw data is read outside ingest.

    Raises ContractViolation (one line) for a file that breaks the contract, MissingFileError for a missing one.
    """
    catalog_report, events_report = validate_inputs(cfg, catalog_uri, events_uri)
    summary = {"catalog": catalog_report.summary, "events": events_report.summary}
    return catalog_report.good, events_report.good, summary


def ingest(cfg: Config, out_dir: Path | None = None, known_items: set[str] | None = None) -> dict:
    """Validate the configured catalog/events and write catalog.parquet, events.parquet, quarantine.parquet
    (events of `known_items` retired from the catalog are kept: validate_inputs)."""
    catalog_report, events_report = validate_inputs(cfg, known_items=known_items)
    out = Path(out_dir or Path(cfg.path(cfg.run_root)) / "curated")
    out.mkdir(parents=True, exist_ok=True)
    catalog_report.good.to_parquet(out / "catalog.parquet", index=False)
    events_report.good.to_parquet(out / "events.parquet", index=False)
    quarantine = pd.concat(
        [catalog_report.quarantine.assign(table="catalog"), events_report.quarantine.assign(table="events")],
        ignore_index=True,
    )
    for column in quarantine.columns:  # mixed tables: store every value as text so nothing is lost
        if column != "source_row":
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
    }
    log.info("ingest: %s", result)
    return result


def read_catalog_for(cfg: Config) -> pd.DataFrame:
    """The deployment's catalog (data.catalog_uri, local or s3://): its good rows under the contract."""
    return validate_catalog_file(cfg.path(cfg.data.catalog_uri), cfg.data, cfg.store.s3_endpoint_url).good


def read_events_for(cfg: Config) -> pd.DataFrame:
    """The deployment's event log (data.events_uri): its good rows under the contract, against the catalog."""
    return validate_inputs(cfg)[1].good
