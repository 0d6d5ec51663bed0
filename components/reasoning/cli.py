"""`sidrec reasoning`: rationales, reasoning fine-tuning, offline think-ahead, the three inference modes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import typer

from components.config import ModelConfig, load_config
from components.data.ingest import read_catalog_for
from components.data.splits import load_split_examples
from components.reasoning.compare import compare_modes
from components.reasoning.rationales import build_rationales
from components.reasoning.thinkahead import shard_users, think_ahead, write_prefixes
from components.reasoning.train import train_reasoning
from components.runtime.backbone import load_backbone
from components.runtime.recommender import Recommender

app = typer.Typer(no_args_is_help=True)
ConfigOpt = typer.Option(None, help="Deployment YAML (default: configs/local.yaml).")


@app.command()
def rationales(
    out: str = typer.Argument(..., help="Parquet file to write."),
    config: str = ConfigOpt,
    split: str = typer.Option("train", help="Split file whose examples get rationales."),
    teacher: str = typer.Option(None, help="'template' or an HF model name/path (default: reasoning.teacher)."),
    limit: int = typer.Option(None, help="First N examples only (LLM teachers are slow on CPU)."),
) -> None:
    """Write rationales (with the teacher that produced each) for a split's examples."""
    cfg = load_config(config)
    teacher = teacher or cfg.reasoning.teacher
    model = tok = None
    if teacher != "template":
        model, tok = load_backbone(ModelConfig(backbone=teacher))
    examples = load_split_examples(cfg.path(cfg.data.splits_dir), split)
    frame = build_rationales(examples, read_catalog_for(cfg), teacher, model, tok, limit)
    frame.to_parquet(out, index=False)
    typer.echo(frame[["history", "target", "rationale", "teacher"]].head(5).to_string())


@app.command()
def train(
    model_dir: str = typer.Argument(..., help="Trained model directory to start from."),
    rationales_file: str = typer.Argument(..., help="Parquet written by `sidrec reasoning rationales`."),
    out: str = typer.Argument(..., help="Model directory to write."),
    config: str = ConfigOpt,
) -> None:
    """Fine-tune a trained model to reason before the SID."""
    cfg = load_config(config)
    base = Recommender.from_pretrained(model_dir, device=cfg.train.device)
    typer.echo(str(train_reasoning(base, pd.read_parquet(rationales_file), cfg, Path(out))))


@app.command("think-ahead")
def think_ahead_cmd(
    model_dir: str = typer.Argument(..., help="(Reasoning) model directory."),
    out: str = typer.Argument(..., help="Directory for prefixes-<shard>-of-<n>.parquet."),
    config: str = ConfigOpt,
    split: str = typer.Option("test", help="Split whose users (last history each) get prefixes."),
    shard: int = 0,
    n_shards: int = 1,
    limit: int = typer.Option(None, help="First N users only."),
) -> None:
    """Offline think-ahead: pooled 2-code SID prefixes per user (one shard)."""
    cfg = load_config(config)
    users = load_split_examples(cfg.path(cfg.data.splits_dir), split).drop_duplicates("user_id", keep="last")
    users = shard_users(users.head(limit) if limit else users, shard, n_shards)
    recommender = Recommender.from_pretrained(model_dir, device=cfg.train.device)
    frame = think_ahead(recommender, users, cfg.reasoning, seed=cfg.train.seed + shard)
    typer.echo(str(write_prefixes(frame, Path(out), shard, n_shards)))


@app.command()
def compare(
    model_dir: str = typer.Argument(..., help="(Reasoning) model directory."),
    config: str = ConfigOpt,
    split: str = typer.Option("test", help="Split to score."),
    limit: int = typer.Option(200, help="First N rows."),
    out: str = typer.Option("runs/reasoning_compare.md", help="Markdown table to write."),
) -> None:
    """HR/NDCG and cost of full decoding, reasoning then decoding, think-ahead + completion."""
    cfg = load_config(config)
    examples = load_split_examples(cfg.path(cfg.data.splits_dir), split).head(limit)
    recommender = Recommender.from_pretrained(model_dir, device=cfg.train.device)
    table = compare_modes(recommender, examples, cfg.reasoning)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(table.to_markdown(index=False, floatfmt=".4f"))
    typer.echo(json.dumps(table.to_dict(orient="records"), indent=2))
