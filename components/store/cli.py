"""`sidrec store`: inspect artifacts, run a local S3 server."""

from __future__ import annotations

import json

import typer

app = typer.Typer(no_args_is_help=True)


@app.command("ls")
def ls(name: str = typer.Argument(None), config: str = typer.Option(None, help="Deployment YAML.")) -> None:
    """List the versions of an artifact (or the latest version of the usual artifacts)."""
    from components.config import load_config
    from components.store.artifacts import ArtifactStore

    store = ArtifactStore.from_config(load_config(config).store)
    names = [name] if name else ["curated", "sid_map", "model", "prefixes", "triton_repo", "eval"]
    for n in names:
        versions = store.list_versions(n)
        latest = store.latest_version(n)
        typer.echo(f"{n}: {len(versions)} version(s), latest={latest}")
        if name:
            for v in versions:
                typer.echo(f"  {v}{'  <- LATEST' if v == latest else ''}")


@app.command()
def show(name: str, version: str = "latest", config: str = typer.Option(None, help="Deployment YAML.")) -> None:
    """Print the manifest of one artifact version."""
    from components.config import load_config
    from components.store.artifacts import ArtifactStore

    store = ArtifactStore.from_config(load_config(config).store)
    typer.echo(json.dumps(store.read_manifest(name, version), indent=2))


@app.command("s3-server")
def s3_server(directory: str = typer.Option(".cache/seaweedfs", "--dir"), bucket: str = "sidrec") -> None:
    """Run a local SeaweedFS S3 server in the foreground (Ctrl-C stops it)."""
    import time
    from pathlib import Path

    from components.store.s3server import start_seaweedfs

    with start_seaweedfs(Path(directory)) as server:
        server.client().create_bucket(Bucket=bucket) if bucket not in [
            b["Name"] for b in server.client().list_buckets()["Buckets"]
        ] else None
        typer.echo(
            f"S3 endpoint {server.endpoint_url} bucket={bucket} access_key={server.access_key} "
            f"secret_key={server.secret_key} pid={server.pid}"
        )
        try:
            while server.process.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
