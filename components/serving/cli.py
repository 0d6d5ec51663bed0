"""`sidrec serving`: export a model directory to a Triton repository; ask the thin client for recommendations.

What production serves changes only through the pipeline (`sidrec pipeline export` exports the promoted model);
`sidrec serving export` writes a local model directory into a repository you name, for trials and tests.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer

from components.config import load_config
from components.errors import SidrecError
from components.runtime.recommender import Recommender
from components.serving.client import RecommenderClient
from components.serving.export import export_triton_repository

app = typer.Typer(no_args_is_help=True)


class NothingToServe(SidrecError):
    """`sidrec serving recommend` got an empty list: the deployment has nothing to serve from yet."""


ConfigOpt = typer.Option(None, help="Deployment YAML (default: configs/local.yaml).")


@app.command("export")
def export(
    model: list[str] = typer.Option(..., help="Trained model directory; repeat it for a seed ensemble (one SID map)."),
    repo: str = typer.Option(..., help="Repository directory or s3:// to write a new version into."),
    config: str = ConfigOpt,
    ranker: str = typer.Option(None, help="Serve the ranking stage of this `sidrec training ranker` directory."),
) -> None:
    """Write, check and publish a new version of a Triton repository with the config's serving settings."""
    cfg = load_config(config)
    recommender = Recommender.from_pretrained(
        model if len(model) > 1 else model[0],
        dtype="float32",
        beam_size=cfg.serving.beam_size,
        max_k=cfg.serving.max_k,
        blend_weight=cfg.serving.blend_weight,
        ranker=Path(ranker) if ranker else (True if cfg.serving.ranker else False),
    )
    typer.echo(
        json.dumps(
            export_triton_repository(recommender, repo, cfg.serving, endpoint_url=cfg.store.s3_endpoint_url),
            indent=2,
            default=str,
        )
    )


@app.command()
def recommend(
    user_id: str = typer.Argument(..., help="The user to recommend for."),
    k: int = typer.Option(10, "--k", "-k", help="How many items (1..serving.max_k)."),
    url: str = typer.Option(None, help="Triton host:port (default: serving.triton_url)."),
    protocol: str = typer.Option(None, help="grpc or http (default: serving.protocol)."),
    at: int = typer.Option(None, help="The request's unix time for the runtime context (default: now)."),
    config: str = ConfigOpt,
) -> None:
    """Recommend k items for a user through the online store and Triton (with fallbacks); exit 2 when the
    deployment has nothing to serve yet."""
    # A service gets [] rather than a failure; by hand an empty answer means nothing is set up yet (no
    # materialized features for the popularity fallback, no Triton), so it is an error with the way to fix it.
    client = RecommenderClient(load_config(config), url, protocol)
    try:
        recs = client.recommend(user_id, k, at_unix=at)
    finally:
        client.close()
    if not recs:
        raise NothingToServe(
            f"no recommendations for {user_id!r}: no materialized features and no Triton answer (warnings above); "
            "run `make demo`, or the sidrec_features and sidrec_training DAGs, then `sidrec local triton`"
        )
    typer.echo(json.dumps([asdict(r) for r in recs], indent=2))
