"""`sidrec pipeline`: run one production step by hand, exactly as the DAGs run it.

Every command that changes what production serves is here and goes through the same step function as the DAGs:
`train` stages a candidate, `gate` promotes it only if it passes, `promote` is the logged ops override, `export`
serves a promoted version. Versions default to what LATEST names, resolved once here and printed.
"""

from __future__ import annotations

import json

import typer

from components.pipeline import steps

app = typer.Typer(no_args_is_help=True)
ConfigOpt = typer.Option(None, help="Deployment YAML (default: configs/local.yaml).")


def _version(config: str | None, name: str, given: str | None) -> str:
    if given:
        return given
    version = steps.resolve(config, None, name)
    if version is None:
        raise typer.BadParameter(f"no '{name}' artifact is published yet: run the step that produces it first")
    typer.echo(f"using {name} {version} (latest)", err=True)
    return version


def _echo(result: dict) -> None:
    typer.echo(json.dumps(result, indent=2, default=str))


@app.command()
def ingest(config: str = ConfigOpt) -> None:
    """Validate the configured catalog/events and publish the curated snapshot."""
    _echo(steps.ingest(config))


@app.command()
def sids(config: str = ConfigOpt, curated_version: str = typer.Option(None, help="Default: latest.")) -> None:
    """Refresh the SID map for a curated snapshot (or rebuild it when drift says so)."""
    _echo(steps.sid_refresh(config, curated_version=_version(config, "curated", curated_version)))


@app.command()
def features(
    config: str = ConfigOpt,
    curated_version: str = typer.Option(None, help="Default: latest."),
    sid_version: str = typer.Option(None, help="Default: latest."),
    prefixes_version: str = typer.Option(None, help="Think-ahead prefixes to load (default: none)."),
) -> None:
    """Write the Feast sources of these versions, apply the repository and materialize the online store."""
    _echo(
        steps.features_materialize(
            config,
            None,
            _version(config, "curated", curated_version),
            _version(config, "sid_map", sid_version),
            prefixes_version,
        )
    )


@app.command()
def examples(
    config: str = ConfigOpt,
    curated_version: str = typer.Option(None, help="Default: latest."),
    sid_version: str = typer.Option(None, help="Default: latest."),
) -> None:
    """Point-in-time training examples (train / select / gate rows), published as 'examples'."""
    _echo(
        steps.build_examples(
            config, None, _version(config, "curated", curated_version), _version(config, "sid_map", sid_version)
        )
    )


@app.command()
def train(
    config: str = ConfigOpt,
    examples_version: str = typer.Option(None, help="Default: latest."),
    sid_version: str = typer.Option(None, help="Default: latest."),
    curated_version: str = typer.Option(None, help="Default: latest."),
) -> None:
    """Train on the examples and stage a 'model_candidate' (never what is served: `gate` decides)."""
    _echo(
        steps.train(
            config,
            None,
            _version(config, "examples", examples_version),
            _version(config, "sid_map", sid_version),
            _version(config, "curated", curated_version),
        )
    )


@app.command()
def gate(
    config: str = ConfigOpt,
    candidate_version: str = typer.Option(None, help="Default: latest."),
    examples_version: str = typer.Option(None, help="Default: latest."),
) -> None:
    """Compare the candidate with production and the baselines on the gate rows; promote it if it passes."""
    _echo(
        steps.evaluate_and_gate(
            config,
            None,
            _version(config, "model_candidate", candidate_version),
            _version(config, "examples", examples_version),
        )
    )


@app.command()
def promote(
    reason: str = typer.Option(..., help="Why the gate is overridden (recorded with the version)."),
    config: str = ConfigOpt,
    candidate_version: str = typer.Option(None, help="Default: latest."),
) -> None:
    """Ops override: promote a candidate without the gate (a first model, a rollback); logged as such."""
    _echo(steps.promote(config, None, _version(config, "model_candidate", candidate_version), reason))


@app.command()
def export(config: str = ConfigOpt, model_version: str = typer.Option(None, help="Default: latest.")) -> None:
    """Export a promoted model version to the deployment's Triton repository (checked before it is served)."""
    _echo(steps.export(config, None, _version(config, "model", model_version)))


@app.command("think-ahead")
def think_ahead(
    config: str = ConfigOpt,
    model_version: str = typer.Option(None, help="Default: latest."),
    examples_version: str = typer.Option(None, help="Default: latest."),
    curated_version: str = typer.Option(None, help="Default: latest."),
    sid_version: str = typer.Option(None, help="Default: latest."),
    shards: int = typer.Option(1, help="Shards to split the users into (run one after the other here)."),
) -> None:
    """The reasoning model of a promoted model (trained once), its gate against full decoding, then think-ahead
    for every active user and the prefixes published, or withdrawn when the gate refuses them."""
    model = _version(config, "model", model_version)
    examples = _version(config, "examples", examples_version)
    curated = _version(config, "curated", curated_version)
    sids = _version(config, "sid_map", sid_version)
    reasoner = steps.train_reasoner(config, None, model, examples, curated)["reasoning_version"]
    gate = steps.gate_reasoner(config, None, reasoner, model, examples)
    typer.echo(json.dumps({k: v for k, v in gate.items() if k != "reasoning_version"}, indent=2, default=str))
    if not gate["passed"]:
        _echo(steps.clear_prefixes(config, None, curated, sids, gate["reason"]))
        return
    done = [
        steps.think_ahead(config, None, reasoner, curated, shard, shards, examples)["shard_version"]
        for shard in range(shards)
    ]
    _echo(steps.publish_prefixes(config, None, done, reasoner, curated, sids))
