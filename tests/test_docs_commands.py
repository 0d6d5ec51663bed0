"""Every command the README and docs show exists as written: its subcommand path and its options; the CLI
reference in docs/cli.md is the CLI's own (regenerate with `typer components.cli utils docs --name sidrec
--output docs/cli.md`)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from components.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _commands(path: Path) -> list[str]:
    """`sidrec ...` and `python -m experiments...` commands in code spans and code blocks of a markdown file."""
    text = path.read_text()
    spans = re.findall(r"`([^`\n]+)`", text)
    blocks = [line for block in re.findall(r"```(?:bash|console)?\n(.*?)```", text, re.S) for line in block.split("\n")]
    out = []
    for candidate in [*spans, *blocks]:
        command = candidate.split("#")[0].strip()
        if re.match(r"sidrec [\w-]+: ", command):  # a quoted task-log line (`sidrec gate: {...}`)
            continue
        if command.startswith("sidrec ") or command.startswith("python -m experiments."):
            out.append(command)
    return sorted(set(out))


def _is_group(command: object) -> bool:
    """Duck-typed: typer >= 0.29 vendors its own click, so isinstance(click.Group) no longer holds."""
    return hasattr(command, "list_commands") and hasattr(command, "get_command")


def _resolve(words: list[str]) -> tuple[object, list[str]]:
    """The click command a word list names (descending through groups), and the words after it."""
    command = typer.main.get_command(app)
    rest = list(words)
    while _is_group(command) and rest and rest[0] in command.list_commands(None):  # type: ignore[arg-type]
        command = command.get_command(None, rest.pop(0))  # type: ignore[arg-type]
    return command, rest


# docs/cli.md is generated from the CLI itself (checked by test_cli_reference_is_current); its headings name groups
CASES = [(path.name, command) for path in DOCS if path.name != "cli.md" for command in _commands(path)]


def test_the_docs_show_commands():
    assert len(CASES) > 20 and any(name == "README.md" for name, _ in CASES)


@pytest.mark.parametrize("doc,command", CASES)
def test_a_documented_command_exists_with_its_options(doc, command):
    words = shlex.split(command.replace("...", "x"))
    if words[0] == "python":
        proc = subprocess.run([sys.executable, *words[1:3], "--help"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"{doc}: {command}: {proc.stderr[-500:]}"
        return
    cmd, rest = _resolve(words[1:])
    assert not _is_group(cmd), f"{doc}: `{command}` names a group, not a command"
    options = {opt for param in cmd.params for opt in param.opts + param.secondary_opts}
    for word in rest:
        if word.startswith("-"):
            assert word.split("=")[0] in options, f"{doc}: `{command}`: {word} is not an option of {cmd.name}"


def test_cli_reference_is_current(tmp_path):
    out = tmp_path / "cli.md"
    subprocess.run(
        [sys.executable, "-m", "typer", "components.cli", "utils", "docs", "--name", "sidrec", "--output", str(out)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert out.read_text() == (ROOT / "docs" / "cli.md").read_text(), (
        "regenerate: typer components.cli utils docs --name sidrec --output docs/cli.md"
    )
