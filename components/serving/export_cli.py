"""`sidrec export`: write a trained model as a new version of a Triton model repository."""

from __future__ import annotations

import json

import typer

app = typer.Typer(no_args_is_help=True)


@app.command("triton")
def triton(
    model: list[str] = typer.Option(
        ..., help="Trained model dir (sidrec train run output); repeat it to export a seed ensemble (same SID map)."
    ),
    repo: str = typer.Option(None, help="Repository dir or s3:// (default: serving.model_repository)."),
    config: str = typer.Option(None, help="Deployment YAML."),
    kind: str = typer.Option(None, help="KIND_GPU or KIND_CPU (default: GPU if CUDA is available)."),
    blend_weight: float = typer.Option(
        None,
        help="Serve the hybrid: the beam mixed with last-item transitions at this weight (the benchmark's "
        "blend_weight, chosen on valid; default: serving.blend_weight, 0 = the model alone).",
    ),
    ranker: str = typer.Option(
        None, help="Serve the ranking stage of this `sidrec train ranker` directory (instead of the blend)."
    ),
) -> None:
    """Export to Triton (python backend, dynamic batching, batched constrained beam search)."""
    import os
    from pathlib import Path

    from components.config import load_config
    from components.serving.export import export_triton_repository

    cfg = load_config(config)
    if cfg.store.s3_endpoint_url:  # an s3:// repository on the deployment's S3 endpoint
        os.environ.setdefault("AWS_ENDPOINT_URL", cfg.store.s3_endpoint_url)
    out = export_triton_repository(
        [Path(m) for m in model],
        repo or cfg.path(cfg.serving.model_repository),
        cfg.serving.model_name,
        instance_kind=kind,
        beam_size=cfg.eval.beam_size,
        blend_weight=cfg.serving.blend_weight if blend_weight is None else blend_weight,
        ranker_dir=Path(ranker) if ranker else None,
    )
    typer.echo(json.dumps(out, indent=2))
