"""`sidrec data`: ingest, validate a file, write synthetic data."""

from __future__ import annotations

import json

import typer

app = typer.Typer(no_args_is_help=True)


@app.command()
def ingest(config: str = typer.Option(None, help="Deployment YAML."), no_publish: bool = False) -> None:
    """Validate the configured catalog/events and publish the curated snapshot."""
    from components.config import load_config
    from components.data.ingest import ingest as run

    typer.echo(json.dumps(run(load_config(config), publish=not no_publish), indent=2))


@app.command()
def validate(
    path: str = typer.Argument(..., help="A catalog or events file (parquet/csv/jsonl, .gz ok, or s3://)."),
    kind: str = typer.Option("catalog", help="catalog | events"),
    catalog: str = typer.Option(None, help="Catalog file the events refer to (events only)."),
    config: str = typer.Option(None, help="Deployment YAML (contract limits)."),
) -> None:
    """Validate one file; prints the summary; exit 1 when the batch breaks the contract."""
    from components.config import load_config
    from components.data.contracts import ContractViolation
    from components.data.readers import read_catalog, read_events
    from components.data.validate import validate_catalog, validate_events

    cfg = load_config(config)
    try:
        if kind == "catalog":
            report = validate_catalog(read_catalog(path), cfg.data, path)
        else:
            if not catalog:
                raise typer.BadParameter("--catalog is required for events")
            ids = set(read_catalog(catalog)["item_id"].dropna())
            report = validate_events(read_events(path), ids, cfg.data, path)
    except ContractViolation as exc:
        typer.secho(f"CONTRACT VIOLATION\n{exc}", fg="red", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(report.summary, indent=2, default=str))
    if len(report.quarantine):
        typer.echo(report.quarantine[["reason"]].head(10).to_string())


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
