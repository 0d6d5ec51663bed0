"""`sidrec sids`: build, refresh on catalog change, scale benchmark."""

from __future__ import annotations

import json

import typer

app = typer.Typer(no_args_is_help=True)


def _inputs(config: str | None, catalog: str | None, events: str | None):
    from components.config import load_config
    from components.data.readers import read_catalog, read_events

    cfg = load_config(config)
    return (
        cfg,
        read_catalog(catalog or cfg.path(cfg.data.catalog_uri)),
        read_events(events or cfg.path(cfg.data.events_uri)),
    )


@app.command()
def build(
    config: str = typer.Option(None, help="Deployment YAML."),
    catalog: str = None,
    events: str = None,
    out: str = typer.Option(None, help="Local build dir (default runs/sid_build)."),
    publish: bool = typer.Option(True, help="Publish as the 'sid_map' artifact."),
) -> None:
    """Build a new SID version: embeddings, residual quantization, 0 collisions, metrics + plot."""
    from pathlib import Path

    from components.sids.build import build_sids
    from components.store.artifacts import ArtifactStore

    cfg, cat, ev = _inputs(config, catalog, events)
    out_dir = Path(out) if out else Path(cfg.path(cfg.run_root)) / "sid_build"
    sidmap = build_sids(cat, ev, cfg.sids, out_dir)
    metrics = json.loads((out_dir / "metrics.json").read_text())
    if publish:
        metrics["artifact_version"] = ArtifactStore.from_config(cfg.store).publish(
            "sid_map", out_dir, metadata=metrics, version=sidmap.version
        )
    typer.echo(json.dumps(metrics, indent=2))


@app.command()
def refresh(
    config: str = typer.Option(None, help="Deployment YAML."),
    catalog: str = None,
    events: str = None,
    map_dir: str = typer.Option("latest", "--map", help="Old map dir, or 'latest' from the store."),
    out: str = None,
    publish: bool = True,
) -> None:
    """Assign SIDs to new items with the existing codebooks, retire deleted items, report drift."""
    from pathlib import Path

    from components.sids.refresh import refresh_sids
    from components.store.artifacts import ArtifactStore

    cfg, cat, ev = _inputs(config, catalog, events)
    store = ArtifactStore.from_config(cfg.store)
    old_dir = store.fetch("sid_map") if map_dir == "latest" else Path(map_dir)
    out_dir = Path(out) if out else Path(cfg.path(cfg.run_root)) / "sid_refresh"
    result = refresh_sids(old_dir, cat, ev, cfg.sids, out_dir)
    summary = result.summary()
    if publish and not result.rebuild:
        summary["artifact_version"] = store.publish("sid_map", out_dir, metadata=summary, version=result.sidmap.version)
    typer.echo(json.dumps(summary, indent=2))


@app.command()
def bench(items: int = 1_000_000, dim: int = 64, levels: int = 3, codebook_size: int = 256) -> None:
    """Benchmark the quantizer step on N synthetic items (prints time and peak memory)."""
    from components.sids.bench import run_sid_benchmark

    typer.echo(json.dumps(run_sid_benchmark(items, dim, levels, codebook_size), indent=2))
