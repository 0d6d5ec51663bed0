"""CLI for exporting to Triton (commands are added by components.serving.export)."""

import typer

app = typer.Typer(no_args_is_help=True)
