"""`sidrec train`: fine-tune the generative recommender (single process or DDP)."""

from __future__ import annotations

import json

import typer

app = typer.Typer(no_args_is_help=True)


@app.command("run")
def run(
    config: str = typer.Option(None, help="Deployment YAML."),
    sid_map: str = typer.Option("latest", help="SID map dir, or 'latest' from the artifact store."),
    out: str = typer.Option(None, help="Model output dir (default runs/model)."),
    publish: bool = typer.Option(True, help="Publish the model dir as the 'model' artifact."),
) -> None:
    """Alignment + next-item training on the configured data; selects the best epoch on valid."""
    from pathlib import Path

    from components.config import load_config
    from components.data.readers import read_catalog
    from components.data.splits import load_split_examples
    from components.sids.sidmap import SidMap
    from components.store.artifacts import ArtifactStore

    cfg = load_config(config)
    store = ArtifactStore.from_config(cfg.store)
    sidmap = SidMap.load(store.fetch("sid_map") if sid_map == "latest" else Path(sid_map))
    catalog = read_catalog(cfg.path(cfg.data.catalog_uri))
    splits = cfg.path(cfg.data.splits_dir)
    from components.model.train import train_model

    out_dir = Path(out) if out else Path(cfg.path(cfg.run_root)) / "model"
    path = train_model(
        cfg, sidmap, catalog, load_split_examples(splits, "train"), load_split_examples(splits, "valid"), out_dir
    )
    info = json.loads((path / "sidrec_model.json").read_text())
    if publish:
        info["artifact_version"] = store.publish("model", path, metadata=info)
    typer.echo(json.dumps(info, indent=2, default=str))


@app.command("transitions")
def transitions(
    model_dir: str = typer.Option(..., help="Trained model dir to write transitions.json into."),
    split: list[str] = typer.Option(["train"], help="Split file(s) the model was trained on; repeat for several."),
    config: str = typer.Option(None, help="Deployment YAML (data.splits_dir)."),
) -> None:
    """Write a model dir's last-item transition table (the served hybrid's chain). Models trained by
    `sidrec train run` write it themselves; this is for model dirs trained before that."""
    from pathlib import Path

    import pandas as pd

    from components.config import load_config
    from components.data.splits import load_split_examples
    from components.decoding.transitions import FILE_NAME, TransitionTable

    cfg = load_config(config)
    examples = pd.concat([load_split_examples(cfg.path(cfg.data.splits_dir), s) for s in split], ignore_index=True)
    table = TransitionTable.from_examples(examples["history"], examples["target"])
    path = table.save(Path(model_dir) / FILE_NAME)
    typer.echo(json.dumps({"path": str(path), "examples": table.examples, "last_items": len(table.successors)}))


@app.command("ranker")
def ranker(
    out: str = typer.Option(..., help="Ranker directory to write (replaced whole)."),
    model_dir: list[str] = typer.Option(
        None, help="Model(s) trained on the fit split(s) only, decoded together; none: a ranker without a model."
    ),
    fit_split: list[str] = typer.Option(["train"], help="Split(s) the rank rows' counts (and models) are fit on."),
    rank_split: str = typer.Option("valid", help="Split whose rows the ranker learns from."),
    config: str = typer.Option(None, help="Deployment YAML (data.splits_dir, eval.beam_size)."),
) -> None:
    """Train the ranking stage (components.ranking) on the rank split's rows, with counts fit on the fit
    split(s) and the given models' beams, and write it with counts refit on fit + rank splits for serving
    (`sidrec export triton --ranker`, `sidrec evaluate model --ranker`)."""
    from pathlib import Path

    import pandas as pd

    from components.config import load_config
    from components.data.splits import load_split_examples
    from components.ranking.train import fit_ranker

    cfg = load_config(config)
    if rank_split in fit_split:
        raise typer.BadParameter(f"the rank split {rank_split!r} must not be among the fit splits {fit_split}")
    splits_dir = cfg.path(cfg.data.splits_dir)
    fit = pd.concat([load_split_examples(splits_dir, s) for s in fit_split], ignore_index=True)
    rank = load_split_examples(splits_dir, rank_split)
    artifact = fit_ranker(
        fit,
        rank,
        model_dirs=[Path(d) for d in model_dir] if model_dir else None,
        beam_size=cfg.eval.beam_size,
        batch_size=cfg.eval.batch_size,
        device=cfg.train.device,
        ks=tuple(cfg.eval.ks),
    )
    artifact.meta.update({"fit_splits": fit_split, "rank_split": rank_split})
    path = artifact.save(Path(out))
    typer.echo(json.dumps({"path": str(path), **artifact.meta}, indent=2, default=str))


@app.command("ddp")
def ddp(
    config: str = typer.Option(None, help="Deployment YAML."),
    nproc: int = 2,
    steps: int = 20,
    global_batch: int = 16,
    sid_map: str = typer.Option(..., help="SID map dir."),
) -> None:
    """Data-parallel next-item training over N local processes (gloo on CPU, NCCL on GPUs)."""
    import tempfile
    from pathlib import Path

    from components.config import load_config
    from components.data.splits import load_split_examples
    from components.model.distributed import train_ddp
    from components.model.examples import next_item_examples
    from components.sids.sidmap import SidMap

    cfg = load_config(config)
    sidmap = SidMap.load(Path(sid_map))
    texts = next_item_examples(load_split_examples(cfg.path(cfg.data.splits_dir), "train"), sidmap)
    losses = train_ddp(cfg, texts, nproc, steps, global_batch, Path(tempfile.mkdtemp()) / "losses.json")
    typer.echo(json.dumps({"world_size": nproc, "losses": losses}))
