"""`sidrec store`: inspect versioned artifacts, fetch one, remove interrupted publishes."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from components.config import load_config
from components.store.artifacts import ArtifactStore

app = typer.Typer(no_args_is_help=True)
ConfigOpt = typer.Option(None, help="Deployment YAML (default: configs/local.yaml).")
USUAL = ["curated", "sid_map", "examples", "model_candidate", "model", "reasoning_model", "prefixes"]


def _store(config: str | None) -> ArtifactStore:
    return ArtifactStore.from_config(load_config(config).store)


@app.command("ls")
def ls(
    name: str = typer.Argument(None, help="An artifact name (default: the pipeline's artifacts)."),
    config: str = ConfigOpt,
) -> None:
    """List the versions of an artifact (or the latest version of each of the pipeline's artifacts)."""
    store = _store(config)
    for n in [name] if name else USUAL:
        versions = store.list_versions(n)
        latest = store.latest_version(n)
        typer.echo(f"{n}: {len(versions)} version(s), latest={latest}")
        if name:
            for v in versions:
                typer.echo(f"  {v}{'  <- LATEST' if v == latest else ''}")


@app.command()
def show(
    name: str, version: str = typer.Option("latest", help="Version (default: latest)."), config: str = ConfigOpt
) -> None:
    """Print the manifest of one artifact version."""
    typer.echo(json.dumps(_store(config).read_manifest(name, version), indent=2))


@app.command()
def fetch(
    name: str,
    version: str = typer.Option("latest", help="Version (default: latest)."),
    dest: str = typer.Option(None, help="Directory to write (default: the local cache)."),
    config: str = ConfigOpt,
) -> None:
    """Download one artifact version (every checksum verified) and print where it is."""
    typer.echo(str(_store(config).fetch(name, version, Path(dest) if dest else None)))


@app.command()
def gc(
    name: list[str] = typer.Option(None, help="Artifact name(s) (default: all)."),
    min_age_s: float = typer.Option(3600, help="Only versions untouched for this long (a publish may be running)."),
    config: str = ConfigOpt,
) -> None:
    """Remove partial versions left by interrupted publishes (a version without its manifest)."""
    typer.echo(json.dumps({"removed": _store(config).gc(name or None, min_age_s)}, indent=2))
