"""`sidrec training`: train a model directory from split files, its transition table, or a ranking stage.

These commands write local directories only. What production serves changes only through the pipeline's steps
(`sidrec pipeline train` stages a candidate, `sidrec pipeline gate` promotes it), so no command here bypasses the
gate.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import typer

from components.config import load_config
from components.data.ingest import read_catalog_for
from components.data.splits import load_split_examples
from components.runtime.content import ContentIndex
from components.runtime.recommender import Recommender
from components.runtime.transitions import FILE_NAME, TransitionTable
from components.sids.sidmap import SidMap
from components.store.artifacts import ArtifactStore
from components.training.align import align_model
from components.training.ranker import fit_ranker
from components.training.train import train_model

app = typer.Typer(no_args_is_help=True)
ConfigOpt = typer.Option(None, help="Deployment YAML (default: configs/local.yaml).")


@app.command("run")
def run(
    out: str = typer.Option(..., help="Model directory to write (replaced whole)."),
    config: str = ConfigOpt,
    sid_map: str = typer.Option(None, help="A SID map directory (default: the store's sid_map, --sid-version)."),
    sid_version: str = typer.Option("latest", help="Version of the store's sid_map to use without --sid-map."),
    train_split: list[str] = typer.Option(["train"], help="Split file(s) of data.splits_dir to train on."),
    select_split: str = typer.Option("valid", help="Split whose sample picks the best epoch ('' for none)."),
) -> None:
    """Alignment + next-item training on split files; the best epoch is picked on a sample of the select split.
    Runs unchanged under torchrun (one process per GPU)."""
    cfg = load_config(config)
    sidmap = SidMap.load(
        Path(sid_map) if sid_map else ArtifactStore.from_config(cfg.store).fetch("sid_map", sid_version)
    )
    splits_dir = cfg.path(cfg.data.splits_dir)
    train = pd.concat([load_split_examples(splits_dir, s) for s in train_split], ignore_index=True)
    select = load_split_examples(splits_dir, select_split) if select_split else None
    path = train_model(cfg, sidmap, read_catalog_for(cfg), train, select, Path(out))
    typer.echo(
        json.dumps(
            {"model_dir": str(path), **json.loads((path / "sidrec_model.json").read_text())}, indent=2, default=str
        )
    )


@app.command("align")
def align(
    model_dir: str = typer.Option(..., help="The supervised model directory to align (left unchanged)."),
    out: str = typer.Option(..., help="Model directory to write (replaced whole): aligned, or the supervised copy."),
    config: str = ConfigOpt,
    train_split: list[str] = typer.Option(["train"], help="Split file(s) the model was trained on."),
    select_split: str = typer.Option("valid", help="Split whose sample guards and picks the epoch ('' for none)."),
) -> None:
    """Preference alignment after supervised training (training.align, settings in the config's align: section):
    softmax-DPO over the model's own constrained beams. A run that diverges or does not beat the supervised model
    on the select split's sample writes the supervised model unchanged, with the reason in sidrec_model.json."""
    cfg = load_config(config)
    splits_dir = cfg.path(cfg.data.splits_dir)
    train = pd.concat([load_split_examples(splits_dir, s) for s in train_split], ignore_index=True)
    select = load_split_examples(splits_dir, select_split) if select_split else None
    path = align_model(cfg, Path(model_dir), train, select, Path(out))
    record = json.loads((path / "sidrec_model.json").read_text()).get("alignment", {})
    typer.echo(json.dumps({"model_dir": str(path), **record}, indent=2, default=str))


@app.command("transitions")
def transitions(
    model_dir: str = typer.Option(..., help="Trained model dir to write transitions.json into."),
    split: list[str] = typer.Option(["train"], help="Split file(s) the model was trained on; repeat for several."),
    config: str = ConfigOpt,
) -> None:
    """Write a model dir's last-item transition table (the served hybrid's chain). Models trained by sidrec
    write it themselves; this is for model dirs trained before that."""
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
    config: str = ConfigOpt,
) -> None:
    """Learn the ranking stage (training.ranker) on the rank split's rows, with counts fit on the fit split(s) and
    the models' beams of serving.beam_size, and write it with counts refit on fit + rank splits for serving."""
    cfg = load_config(config)
    if rank_split in fit_split:
        raise typer.BadParameter(f"the rank split {rank_split!r} must not be among the fit splits {fit_split}")
    splits_dir = cfg.path(cfg.data.splits_dir)
    fit = pd.concat([load_split_examples(splits_dir, s) for s in fit_split], ignore_index=True)
    rank = load_split_examples(splits_dir, rank_split)
    recommender = None
    if model_dir:
        recommender = Recommender.from_pretrained(
            model_dir if len(model_dir) > 1 else model_dir[0], device=cfg.train.device, beam_size=cfg.serving.beam_size
        )
    content = None
    if cfg.serving.ranker_content:
        content = ContentIndex.from_catalog(read_catalog_for(cfg), cfg.sids.content_encoder)
    artifact = fit_ranker(
        fit,
        rank,
        recommender=recommender,
        beam_size=cfg.serving.beam_size,
        batch_size=cfg.eval.batch_size,
        ks=tuple(cfg.eval.ks),
        content=content,
    )
    artifact.meta.update({"fit_splits": fit_split, "rank_split": rank_split, "models": model_dir or []})
    path = artifact.save(Path(out))
    typer.echo(json.dumps({"path": str(path), **artifact.meta}, indent=2, default=str))
