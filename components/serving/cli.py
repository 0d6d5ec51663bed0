"""`sidrec serve`: run Triton on a model repository; ask the thin client for recommendations."""

from __future__ import annotations

import json

import typer

app = typer.Typer(no_args_is_help=True)


@app.command()
def start(
    repo: str = typer.Option(None, help="Model repository (default: serving.model_repository)."),
    config: str = typer.Option(None, help="Deployment YAML."),
) -> None:
    """Start tritonserver on 127.0.0.1 (foreground; Ctrl-C stops it by PID)."""
    import os
    import time
    from pathlib import Path

    from components.config import load_config
    from components.serving.triton_launcher import s3_repository_url, start_triton

    cfg = load_config(config)
    repository = str(repo or cfg.serving.model_repository)
    if repository.startswith("s3://"):  # Triton reads it from S3 itself; credentials from AWS_* env
        endpoint = cfg.store.s3_endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
        repository = s3_repository_url(endpoint, repository) if endpoint else repository
    else:
        repository = str(cfg.path(repository))
    with start_triton(repository, Path(cfg.path(cfg.run_root)) / "triton") as s:
        typer.echo(f"triton ready: http={s.http_url} grpc={s.grpc_url} pid={s.pid}")
        try:
            while s.process.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


@app.command()
def recommend(
    user_id: str,
    k: int = 10,
    url: str = typer.Option(None, help="Triton host:port."),
    protocol: str = typer.Option(None, help="grpc or http"),
    config: str = typer.Option(None, help="Deployment YAML."),
) -> None:
    """Recommend k items for a user through the online store and Triton (with fallbacks)."""
    from dataclasses import asdict

    from components.config import load_config
    from components.serving.client import RecommenderClient

    recs = RecommenderClient(load_config(config), url, protocol).recommend(user_id, k)
    typer.echo(json.dumps([asdict(r) for r in recs], indent=2))
