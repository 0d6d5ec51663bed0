"""The `sidrec` console command: one subcommand group per package of components/, named after it.

Each group lives in its package's `cli.py` as a `typer.Typer` named `app`. Expected errors (SidrecError and its
subclasses: bad input, a missing or foreign artifact, a refused action) print one line and exit with status 2;
`sidrec --debug ...` shows their traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
import os
import sys

import typer

GROUPS: dict[str, tuple[str, str]] = {
    "data": ("components.data.cli", "Ingest and validate catalog/events; synthetic data."),
    "store": ("components.store.cli", "Artifact store (local or S3): list, show, fetch, gc."),
    "sids": ("components.sids.cli", "Semantic IDs: build, refresh on catalog change, benchmark."),
    "features": ("components.features.cli", "Feast feature repository: apply, materialize."),
    "training": ("components.training.cli", "Train a model directory, its transitions, a ranking stage."),
    "evaluation": ("components.evaluation.cli", "Score a model (as served) or the baselines on a split."),
    "reasoning": ("components.reasoning.cli", "OneRec-Think: rationales, reasoning training, think-ahead, compare."),
    "serving": ("components.serving.cli", "Export a model dir to a Triton repository; recommend via the client."),
    "pipeline": ("components.pipeline.cli", "Run one production step by hand, as the DAGs do (gate included)."),
    "local": ("components.local.cli", "Local servers on 127.0.0.1: Airflow, Triton, S3."),
}


class _App(typer.Typer):
    """The sidrec Typer; called as the console script, it prints expected errors as one line (module docstring)."""

    def __call__(self, *args, **kwargs):
        from pydantic import ValidationError

        from components.config import CONFIG_NOTE
        from components.errors import SidrecError

        try:
            return super().__call__(*args, **kwargs)
        except SidrecError as exc:
            if os.environ.get("SIDREC_DEBUG"):
                raise
            typer.secho(f"error: {exc}".splitlines()[0], fg="red", err=True)
            sys.exit(2)
        except ValidationError as exc:  # a deployment file load_config refused: as expected as a SidrecError
            source = next((n for n in getattr(exc, "__notes__", []) if n.startswith(CONFIG_NOTE)), None)
            if source is None or os.environ.get("SIDREC_DEBUG"):
                raise
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "(top level)"
            more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
            typer.secho(f"error: {source}: {where}: {first['msg']}{more}; fix that setting", fg="red", err=True)
            sys.exit(2)


app = _App(
    name="sidrec",
    help="LLM generative recommender with Semantic IDs: data, SIDs, training, reasoning, serving, pipeline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
for _name, (_module, _help) in GROUPS.items():
    app.add_typer(importlib.import_module(_module).app, name=_name, help=_help)


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", help="Show the traceback of expected errors too.")) -> None:
    """LLM generative recommender with Semantic IDs."""
    import logging

    from components.logs import quiet_third_party

    if debug:
        os.environ["SIDREC_DEBUG"] = "1"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_third_party()


@app.command()
def demo(
    config: str = typer.Option(None, help="Deployment YAML (default: configs/demo.yaml)."),
    quick: bool = typer.Option(False, help="60 training steps and 20 users: a smoke run of a few minutes."),
) -> None:
    """Run the production pipeline end to end on the bundled amazon-industrial data, then serve three users."""
    from components.demo import run_demo

    run_demo(config, quick=quick)


@app.command("benchmark")
def benchmark(
    config: str = typer.Option("configs/benchmark.yaml", help="Benchmark YAML: dataset, model and `benchmark:`."),
    out: str = typer.Option("runs/benchmark", help="Where table.md and metrics.json go."),
    valid_only: bool = typer.Option(False, help="Only the valid half (selection): no retrain, no test reading."),
    overrides: str = typer.Option(None, help='JSON merged into the config, e.g. \'{"train": {"epochs": 3}}\'.'),
    sid_maps: str = typer.Option(
        None,
        help="Reuse an earlier run's SID maps (DIR/train, DIR/final), e.g. docs/results/benchmark/sid_maps, the "
        "headline's: maps differ across machines, so numbers then compare with the headline's.",
    ),
) -> None:
    """Train and score the generative model and every baseline on a dataset's splits; write a table."""
    import json
    from pathlib import Path

    from experiments.benchmark import run_benchmark  # the CLI's one link to the experiment side

    run_benchmark(
        config,
        out,
        valid_only=valid_only,
        overrides=json.loads(overrides) if overrides else None,
        sid_maps=Path(sid_maps) if sid_maps else None,
    )


if __name__ == "__main__":
    app()
