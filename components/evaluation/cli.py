"""`sidrec evaluate`: score a trained model or a baseline on valid/test."""

from __future__ import annotations

import json

import typer

app = typer.Typer(no_args_is_help=True)


@app.command("model")
def model(
    model_dirs: list[str] = typer.Argument(..., help="A trained model, or several (same SID map) decoded together."),
    split: str = "valid",
    config: str = typer.Option(None, help="Deployment YAML."),
    limit: int = typer.Option(None, help="Score only the first N rows."),
    beam_size: int = typer.Option(None, help="Beam width (default: the config's eval.beam_size)."),
    vs_markov: bool = typer.Option(
        False, help="Also report which rows the model and the last-item Markov chain (fit as in the benchmark) hit."
    ),
    blend_weight: float = typer.Option(
        0.0, help="Score the hybrid: beam candidates mixed with the first model dir's transitions.json, this weight."
    ),
    ranker: str = typer.Option(None, help="Score the ranking stage of this `sidrec train ranker` directory."),
) -> None:
    """HR/NDCG@3/5/10 and the invalid-SID rate of a trained model, or of a seed ensemble (constrained beam search)."""
    from pathlib import Path

    from components.config import load_config
    from components.data.splits import load_split_examples
    from components.evaluation.baselines import LastItemMarkov
    from components.evaluation.benchmark import fit_split
    from components.evaluation.evaluate import evaluate_model_dir

    cfg = load_config(config)
    examples = load_split_examples(cfg.path(cfg.data.splits_dir), split)
    examples = examples.head(limit) if limit else examples
    markov = None
    if vs_markov:
        if split not in ("valid", "test"):
            raise typer.BadParameter("--vs-markov needs --split valid or test (the Markov chain is fit before it)")
        fit = {s: load_split_examples(cfg.path(cfg.data.splits_dir), s) for s in ("train", "valid") if s != split}
        chain = LastItemMarkov().fit(fit_split(fit, split))
        markov = chain.recommend([list(h) for h in examples["history"]], max(cfg.eval.ks))
    metrics = evaluate_model_dir(
        [Path(d) for d in model_dirs],
        examples,
        cfg.eval.ks,
        beam_size or cfg.eval.beam_size,
        cfg.eval.batch_size,
        cfg.train.device,
        baseline=markov,
        blend_weight=blend_weight,
        ranker_dir=Path(ranker) if ranker else None,
    )
    typer.echo(json.dumps(metrics, indent=2))


@app.command("baselines")
def baselines(split: str = "valid", config: str = typer.Option(None, help="Deployment YAML.")) -> None:
    """Most-popular, last-item Markov and SASRec on the same split (fit on train, + valid for test)."""
    from components.config import load_config
    from components.evaluation.benchmark import score_baselines

    cfg = load_config(config)
    typer.echo(json.dumps(score_baselines(cfg, split), indent=2))
