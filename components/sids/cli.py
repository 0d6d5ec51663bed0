"""`sidrec sids`: build, refresh on catalog change, scale benchmark."""

from __future__ import annotations

import json

import typer

app = typer.Typer(no_args_is_help=True)


def _inputs(config: str | None, catalog: str | None, events: str | None):
    from components.config import load_config
    from components.data.ingest import load_validated

    cfg = load_config(config)
    cat, ev, _ = load_validated(cfg, catalog, events)  # the data contract, as at ingest: only good rows get SIDs
    return cfg, cat, ev


@app.command()
def build(
    config: str = typer.Option(None, help="Deployment YAML (default: configs/local.yaml)."),
    catalog: str = typer.Option(None, help="Catalog URI (default: data.catalog_uri)."),
    events: str = typer.Option(None, help="Events URI (default: data.events_uri)."),
    out: str = typer.Option(None, help="Local build dir (default: {run_root}/sid_build)."),
    publish: bool = typer.Option(True, help="Publish as the 'sid_map' artifact."),
) -> None:
    """Build a new SID version: embeddings, residual quantization, 0 collisions, metrics + plot."""
    from pathlib import Path

    from components.sids.build import build_sids

    cfg, cat, ev = _inputs(config, catalog, events)
    out_dir = Path(out) if out else Path(cfg.path(cfg.run_root)) / "sid_build"
    build_sids(cat, ev, cfg.sids, out_dir)
    metrics = json.loads((out_dir / "metrics.json").read_text())
    if publish:
        from components.sids.build import publish_sid_map
        from components.store.artifacts import ArtifactStore

        metrics["artifact_version"] = publish_sid_map(ArtifactStore.from_config(cfg.store), out_dir, metrics)
    typer.echo(json.dumps(metrics, indent=2))


@app.command()
def refresh(
    config: str = typer.Option(None, help="Deployment YAML (default: configs/local.yaml)."),
    catalog: str = typer.Option(None, help="Current catalog URI (default: data.catalog_uri)."),
    events: str = typer.Option(None, help="Events URI (default: data.events_uri)."),
    map_dir: str = typer.Option("latest", "--map", help="Old map: a local build dir, or 'latest' from the store."),
    out: str = typer.Option(None, help="Local dir for the refreshed map (default: {run_root}/sid_refresh)."),
    publish: bool = typer.Option(True, help="Publish the refreshed (or rebuilt) map as 'sid_map'."),
    rebuild_on_drift: bool = typer.Option(
        False, help="When drift is above the thresholds, build a new SID version instead (new codebooks)."
    ),
) -> None:
    """Assign SIDs to new items with the existing codebooks, retire deleted items, report drift.

    Exit code 0 either way; the JSON says `rebuild` and why. Without --rebuild-on-drift a drifted refresh is
    not published, so the orchestration can rebuild and retrain together.
    """
    from pathlib import Path

    from components.sids.build import publish_sid_map
    from components.sids.refresh import refresh_sids
    from components.store.artifacts import ArtifactStore

    cfg, cat, ev = _inputs(config, catalog, events)
    store = ArtifactStore.from_config(cfg.store)
    old_dir = store.fetch("sid_map") if map_dir == "latest" else Path(map_dir)
    out_dir = Path(out) if out else Path(cfg.path(cfg.run_root)) / "sid_refresh"
    result = refresh_sids(old_dir, cat, ev, cfg.sids, out_dir)
    summary = result.summary()
    if result.rebuild and rebuild_on_drift:
        from components.sids.build import build_sids

        rebuilt_dir = out_dir.with_name(out_dir.name + "_rebuild")  # a sibling: out_dir is published
        build_sids(cat, ev, cfg.sids, rebuilt_dir)
        summary["rebuilt"] = json.loads((rebuilt_dir / "metrics.json").read_text())
        if publish:
            summary["artifact_version"] = publish_sid_map(store, rebuilt_dir, summary["rebuilt"])
    elif publish and not result.rebuild:
        summary["artifact_version"] = publish_sid_map(store, out_dir, summary)
    typer.echo(json.dumps(summary, indent=2))


@app.command()
def bench(
    items: int = typer.Option(1_000_000, help="Synthetic items."),
    dim: int = typer.Option(64, help="Embedding dimension."),
    levels: int = typer.Option(3),
    codebook_size: int = typer.Option(256),
    threads: int = typer.Option(2, help="faiss threads."),
) -> None:
    """Benchmark the quantizer step on N synthetic clustered items (prints seconds and peak memory)."""
    from components.sids.bench import run_sid_benchmark

    typer.echo(json.dumps(run_sid_benchmark(items, dim, levels, codebook_size, threads=threads), indent=2))
