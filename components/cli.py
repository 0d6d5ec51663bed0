"""The `sidrec` console command: one subcommand group per pipeline step.

Each group lives in its step's `cli.py` and exposes a `typer.Typer` named `app`. Those modules import
only typer at module level (heavy imports happen inside commands) so `sidrec --help` stays fast.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="sidrec",
    help="LLM generative recommender with Semantic IDs: data, SIDs, training, reasoning, serving.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# subcommand -> (module holding `app`, help)
GROUPS: dict[str, tuple[str, str]] = {
    "data": ("components.data.cli", "Ingest and validate catalog/events; synthetic data."),
    "store": ("components.store.cli", "Artifact store (local or S3): list, inspect, local S3 server."),
    "sids": ("components.sids.cli", "Semantic IDs: build, refresh on catalog change, benchmark."),
    "train": ("components.model.cli", "Train the generative recommender (alignment + next-item)."),
    "evaluate": ("components.evaluation.cli", "Evaluate models and baselines; `evaluate benchmark`."),
    "reason": ("components.reasoning.cli", "OneRec-Think: rationales, reasoning training, think-ahead."),
    "features": ("components.features.cli", "Feast feature repository: apply, materialize, examples."),
    "export": ("components.serving.export_cli", "Export the model to a versioned Triton model repository."),
    "serve": ("components.serving.cli", "Run the Triton server; recommend through the thin client."),
    "airflow": ("components.orchestration.cli", "Local Airflow: init, start, trigger, screenshot."),
}

for _name, (_module, _help) in GROUPS.items():
    try:
        _sub = importlib.import_module(_module).app
    except ModuleNotFoundError as exc:  # a step not installed in this build: say so instead of crashing
        if exc.name != _module:
            raise
        continue
    app.add_typer(_sub, name=_name, help=_help)


@app.command()
def demo(
    config: str = typer.Option(None, help="Deployment YAML (default: configs/local.yaml)."),
    quick: bool = typer.Option(False, help="Tiny model and few steps: a smoke run in a few minutes."),
) -> None:
    """Run the main job end to end on the bundled amazon-industrial data."""
    from components.demo import run_demo

    run_demo(config, quick=quick)


@app.command("benchmark")
def benchmark(
    config: str = typer.Option(None, help="Deployment YAML (default: configs/local.yaml)."),
    out: str = typer.Option("runs/benchmark", help="Where the markdown table and metrics go."),
) -> None:
    """Train and score the generative model and every baseline on amazon-industrial; write a table."""
    from components.evaluation.benchmark import run_benchmark

    run_benchmark(config, out)


if __name__ == "__main__":
    app()
