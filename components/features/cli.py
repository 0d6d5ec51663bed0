"""`sidrec features`: write the Feast sources, apply the repository, materialize the online store."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from components.config import load_config
from components.data.ingest import load_validated
from components.features.repo import apply, materialize, read_prefix_files, write_sources
from components.sids.sidmap import SidMap
from components.store.artifacts import ArtifactStore

app = typer.Typer(no_args_is_help=True)


@app.command("apply")
def apply_cmd(
    config: str = typer.Option(None, help="Deployment YAML (default: configs/local.yaml)."),
    sid_map: str = typer.Option(None, help="A SID map directory (default: the store's sid_map, --sid-version)."),
    sid_version: str = typer.Option("latest", help="Version of the store's sid_map to use without --sid-map."),
    prefixes: str = typer.Option(None, help="Think-ahead prefixes dir/parquet (optional)."),
) -> None:
    """Build the feature sources from the configured catalog and events and register the repository."""
    cfg = load_config(config)
    if sid_map:
        sidmap = SidMap.load(Path(sid_map))
    else:
        sidmap = SidMap.load(ArtifactStore.from_config(cfg.store).fetch("sid_map", sid_version))
    frame = read_prefix_files(Path(prefixes)) if prefixes else None
    catalog, events, _ = load_validated(cfg)  # the data contract, as at ingest
    write_sources(cfg, catalog, events, sidmap, frame)
    typer.echo(json.dumps({"applied": apply(cfg), "sid_version": sidmap.version}))


@app.command("materialize")
def materialize_cmd(config: str = typer.Option(None, help="Deployment YAML (default: configs/local.yaml).")) -> None:
    """Load the latest values into the online store (SQLite or Redis)."""
    typer.echo(json.dumps(materialize(load_config(config))))
