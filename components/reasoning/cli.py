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
from components.reasoning.rationales import Evidence, build_rationales, coverage
from components.reasoning.thinkahead import shard_users, think_ahead, write_prefixes
from components.reasoning.train import train_reasoning
from components.runtime.backbone import load_backbone
from components.runtime.candidates import sid_codes
from components.runtime.recommender import Recommender
from components.sids.sidmap import SidMap

app = typer.Typer(no_args_is_help=True)
ConfigOpt = typer.Option(None, help="Deployment YAML (default: configs/local.yaml).")


@app.command()
def rationales(
    out: str = typer.Argument(..., help="Parquet file to write."),
    config: str = ConfigOpt,
    split: str = typer.Option("train", help="Split file whose examples get rationales (counts come from train)."),
    sid_map: str = typer.Option(None, help="A SID map directory: also cite shared SID families."),
    teacher: str = typer.Option(None, help="'template' or an HF model name/path (default: reasoning.teacher)."),
    limit: int = typer.Option(None, help="First N examples only (LLM teachers are slow on CPU)."),
) -> None:
    """Write grounded rationales for a split's examples; print their coverage (share with a concrete reason)."""
    cfg = load_config(config)
    teacher = teacher or cfg.reasoning.teacher
    model = tok = None
    if teacher != "template":
        model, tok = load_backbone(ModelConfig(backbone=teacher))
    splits_dir = cfg.path(cfg.data.splits_dir)
    train = load_split_examples(splits_dir, "train")
    codes = sid_codes(SidMap.load(Path(sid_map))) if sid_map else None
    evidence = Evidence.from_data(read_catalog_for(cfg), train, codes)
    evidence.leave_one_out = split == "train"  # train rows counted themselves; other splits' rows did not
    examples = train if split == "train" else load_split_examples(splits_dir, split)
    frame = build_rationales(examples, evidence, teacher, model, tok, limit)
    frame.to_parquet(out, index=False)
    typer.echo(json.dumps(coverage(frame), indent=2))


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
    model_dir: str = typer.Argument(..., help="The served (next-item) model directory."),
    reasoning_dir: str = typer.Argument(..., help="Its reasoning model directory (`sidrec reasoning train`)."),
    config: str = ConfigOpt,
    split: str = typer.Option("valid", help="Split to score."),
    limit: int = typer.Option(200, help="First N rows."),
    out: str = typer.Option("runs/reasoning_compare.md", help="Markdown table to write."),
) -> None:
    """HR/NDCG and cost of full decoding, reasoning then decoding, think-ahead + completion (as the gate does)."""
    cfg = load_config(config)
    examples = load_split_examples(cfg.path(cfg.data.splits_dir), split).head(limit)
    served = Recommender.from_pretrained(model_dir, device=cfg.train.device, beam_size=cfg.serving.beam_size)
    reasoner = Recommender.from_pretrained(reasoning_dir, device=cfg.train.device, beam_size=cfg.serving.beam_size)
    table = compare_modes(served, reasoner, examples, cfg.reasoning)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(table.to_markdown(index=False, floatfmt=".4f"))
    typer.echo(json.dumps(table.to_dict(orient="records"), indent=2))
