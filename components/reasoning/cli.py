"""`sidrec reason`: rationales, reasoning fine-tuning, offline think-ahead, mode comparison."""

from __future__ import annotations

import json

import typer

app = typer.Typer(no_args_is_help=True)


def _cfg(config):
    from components.config import load_config

    return load_config(config)


@app.command()
def rationales(
    out: str,
    config: str = typer.Option(None, help="Deployment YAML."),
    split: str = "train",
    teacher: str = typer.Option(None, help="'template' or an HF model name/path (default: config)."),
    limit: int = typer.Option(None, help="First N examples only (LLM teachers are slow on CPU)."),
) -> None:
    """Write rationales (with the teacher that produced each) for a split to OUT (parquet)."""
    from components.data.readers import read_catalog
    from components.data.splits import load_split_examples
    from components.reasoning.rationales import build_rationales

    cfg = _cfg(config)
    teacher = teacher or cfg.reasoning.teacher
    model = tok = None
    if teacher != "template":
        from components.config import ModelConfig
        from components.model.backbone import load_backbone

        model, tok = load_backbone(ModelConfig(backbone=teacher))
    frame = build_rationales(
        load_split_examples(cfg.path(cfg.data.splits_dir), split),
        read_catalog(cfg.path(cfg.data.catalog_uri)),
        teacher,
        model,
        tok,
        limit,
    )
    frame.to_parquet(out, index=False)
    typer.echo(frame[["history", "target", "rationale", "teacher"]].head(5).to_string())


@app.command()
def train(model_dir: str, rationales_file: str, out: str, config: str = typer.Option(None)) -> None:
    """Fine-tune a trained model to reason before the SID."""
    from pathlib import Path

    import pandas as pd

    from components.reasoning.train import train_reasoning

    path = train_reasoning(Path(model_dir), pd.read_parquet(rationales_file), _cfg(config), Path(out))
    typer.echo(str(path))


@app.command("think-ahead")
def think_ahead_cmd(
    model_dir: str,
    out: str,
    config: str = typer.Option(None),
    split: str = "test",
    shard: int = 0,
    n_shards: int = 1,
    limit: int = typer.Option(None),
) -> None:
    """Offline think-ahead: pooled 2-token SID prefixes per active user (one shard)."""
    from pathlib import Path

    from components.data.splits import load_split_examples
    from components.reasoning.thinkahead import think_ahead

    cfg = _cfg(config)
    users = load_split_examples(cfg.path(cfg.data.splits_dir), split).drop_duplicates("user_id", keep="last")
    users = users.head(limit) if limit else users
    typer.echo(str(think_ahead(Path(model_dir), users, cfg, Path(out), shard, n_shards)))


@app.command()
def compare(
    model_dir: str,
    config: str = typer.Option(None),
    split: str = "test",
    limit: int = 200,
    out: str = "runs/reasoning_compare.md",
) -> None:
    """HR/NDCG and cost of full decoding, reasoning then decoding, think-ahead + completion."""
    from pathlib import Path

    from components.data.splits import load_split_examples
    from components.reasoning.compare import compare_modes

    cfg = _cfg(config)
    examples = load_split_examples(cfg.path(cfg.data.splits_dir), split).head(limit)
    table = compare_modes(Path(model_dir), examples, cfg, Path(out).parent / "reasoning_work")
    Path(out).write_text(table.to_markdown(index=False, floatfmt=".4f"))
    typer.echo(json.dumps(table.to_dict(orient="records"), indent=2))
