"""`sidrec features`: apply the Feast repository, materialize to the online store, point-in-time examples."""

from __future__ import annotations

import json

import typer

app = typer.Typer(no_args_is_help=True)


@app.command("apply")
def apply_cmd(
    config: str = typer.Option(None, help="Deployment YAML."),
    sid_map: str = typer.Option("latest", help="SID map dir or 'latest' from the store."),
    prefixes: str = typer.Option(None, help="Think-ahead prefixes dir/parquet (optional)."),
) -> None:
    """Build the feature sources from the curated data and register the repository."""
    from pathlib import Path

    import pandas as pd

    from components.config import load_config
    from components.data.ingest import load_validated
    from components.features.repo import apply, default_sid_map, write_sources
    from components.sids.sidmap import SidMap

    cfg = load_config(config)
    sm = default_sid_map(cfg) if sid_map == "latest" else SidMap.load(Path(sid_map))
    pf = None
    if prefixes:
        p = Path(prefixes)
        files = sorted(p.glob("prefixes-*.parquet")) if p.is_dir() else [p]
        pf = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    catalog, events, _ = load_validated(cfg)  # the data contract, as at ingest
    write_sources(cfg, catalog, events, sm, pf)
    typer.echo(json.dumps({"applied": apply(cfg)}))


@app.command("materialize")
def materialize_cmd(config: str = typer.Option(None, help="Deployment YAML.")) -> None:
    """Load the latest values into the online store (SQLite or Redis)."""
    from components.config import load_config
    from components.features.repo import materialize

    typer.echo(json.dumps(materialize(load_config(config))))
