"""CLI for the store step (commands are added by the step's module)."""

import typer

app = typer.Typer(no_args_is_help=True)
