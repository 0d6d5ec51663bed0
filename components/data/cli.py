"""`sidrec data`: ingest, validate a file, write synthetic data."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import typer

app = typer.Typer(no_args_is_help=True)


@contextmanager
def _expected_errors() -> Iterator[None]:
    """Bad input is the user's to fix: one line on stderr and exit code 2, no traceback."""
    from components.errors import SidrecError

    try:
        yield
    except (SidrecError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def ingest(
    config: str = typer.Option(None, help="Deployment YAML."),
    out: str = typer.Option(None, help="Directory for the curated files (default: {run_root}/curated)."),
) -> None:
    """Validate the configured catalog/events into a local curated directory (+ quarantine); exit 2 on a contract
    violation. `sidrec pipeline ingest` does the same and publishes it as the 'curated' version."""
    from pathlib import Path

    from components.config import load_config
    from components.data.ingest import ingest as run

    with _expected_errors():
        result = run(load_config(config), Path(out) if out else None)
    typer.echo(json.dumps(result, indent=2))


@app.command()
def validate(
    path: str = typer.Argument(..., help="A catalog or events file (parquet/csv/jsonl, .gz ok, or s3://)."),
    kind: str = typer.Option("catalog", help="catalog | events"),
    catalog: str = typer.Option(None, help="Catalog file the events refer to (events only)."),
    config: str = typer.Option(None, help="Deployment YAML (contract limits)."),
) -> None:
    """Validate one file; prints the summary and the quarantined rows; exit 2 when the file breaks the contract."""
    from components.config import load_config
    from components.data.validate import validate_catalog_file, validate_events_file

    if kind not in ("catalog", "events"):
        raise typer.BadParameter("--kind must be catalog or events")
    if kind == "events" and not catalog:
        raise typer.BadParameter("--catalog is required for events")
    with _expected_errors():
        cfg = load_config(config)
        endpoint = cfg.store.s3_endpoint_url
        if kind == "catalog":
            report = validate_catalog_file(path, cfg.data, endpoint)
        else:
            ids = set(validate_catalog_file(catalog, cfg.data, endpoint).good["item_id"])
            report = validate_events_file(path, ids, cfg.data, endpoint)
    typer.echo(json.dumps(report.summary, indent=2, default=str))
    if len(report.quarantine):
        typer.echo(report.quarantine[["source_row", "reason"]].head(10).to_string(index=False))


@app.command()
def synth(out_dir: str, items: int = 300, users: int = 200, seed: int = 0) -> None:
    """Write a seeded synthetic catalog.jsonl.gz and events.csv.gz."""
    from pathlib import Path

    from components.data.readers import write_table
    from components.data.synthetic import generate_synthetic

    catalog, events = generate_synthetic(items, users, seed)
    write_table(catalog, Path(out_dir) / "catalog.jsonl.gz")
    write_table(events, Path(out_dir) / "events.csv.gz")
    typer.echo(f"wrote {len(catalog)} items and {len(events)} events to {out_dir}")
