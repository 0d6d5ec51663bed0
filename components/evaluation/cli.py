"""`sidrec evaluation`: score a trained model (or ensemble, as served) or the baselines on a split."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from components.config import load_config
from components.data.splits import fit_split, load_split_examples
from components.evaluation.baselines import LastItemMarkov, score_baselines
from components.evaluation.evaluate import score_recommender
from components.runtime.recommender import Recommender

app = typer.Typer(no_args_is_help=True)


@app.command("model")
def model(
    model_dirs: list[str] = typer.Argument(
        ..., help="A trained model or recommender directory, or several model directories of one SID map (an ensemble)."
    ),
    split: str = typer.Option("valid", help="Split file of data.splits_dir to score."),
    config: str = typer.Option(None, help="Deployment YAML (default: configs/local.yaml)."),
    limit: int = typer.Option(None, help="Score only the first N rows."),
    beam_size: int = typer.Option(None, help="Beam width (default: serving.beam_size)."),
    vs_markov: bool = typer.Option(
        False, help="Also report which rows the model and the last-item Markov chain (fit on the earlier splits) hit."
    ),
    blend_weight: float = typer.Option(None, help="Score the hybrid at this weight (default: serving.blend_weight)."),
    ranker: str = typer.Option(None, help="Score the ranking stage of this `sidrec training ranker` directory."),
) -> None:
    """HR/NDCG@3/5/10 and the invalid-item rate of what would be served, on one split."""
    cfg = load_config(config)
    splits_dir = cfg.path(cfg.data.splits_dir)
    examples = load_split_examples(splits_dir, split)
    examples = examples.head(limit) if limit else examples
    markov = None
    if vs_markov:
        chain = LastItemMarkov().fit(fit_split(splits_dir, split))
        markov = chain.recommend([list(h) for h in examples["history"]], max(cfg.eval.ks))
    recommender = Recommender.from_pretrained(
        model_dirs if len(model_dirs) > 1 else model_dirs[0],
        device=cfg.train.device,
        dtype="float32",
        beam_size=beam_size or cfg.serving.beam_size,
        max_k=max(cfg.serving.max_k, max(cfg.eval.ks)),
        blend_weight=cfg.serving.blend_weight if blend_weight is None else blend_weight,
        ranker=Path(ranker) if ranker else None,
    )
    metrics = score_recommender(recommender, examples, cfg.eval.ks, cfg.eval.batch_size, baseline=markov)
    typer.echo(json.dumps(metrics, indent=2))


@app.command("baselines")
def baselines(
    split: str = typer.Option("valid", help="Split to score (fit on the splits before it)."),
    config: str = typer.Option(None, help="Deployment YAML (default: configs/local.yaml)."),
) -> None:
    """Most-popular, last-item Markov and SASRec on one split (fit on train; on train + valid for test)."""
    cfg = load_config(config)
    typer.echo(json.dumps(score_baselines(cfg.path(cfg.data.splits_dir), split, cfg.eval.ks), indent=2))
