"""The architecture holds: dependencies point one way, imports sit at module top, experiments stay apart.

Every import is read from the source (ast), function-level ones included, so a cycle cannot hide inside a
function. The layers, lowest first: a package may import from its own layer's foundation modules and any lower
layer, never from a higher one.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPONENTS = ROOT / "components"
# lowest first; a module of components/ that is not a package belongs to the layer named after it
LAYERS = [
    {"config", "errors", "logs", "metrics", "pretrained"},
    {"store", "local"},
    {"data"},
    {"sids"},
    {"runtime"},
    {"features"},
    {"training"},
    {"evaluation"},
    {"reasoning"},
    {"serving"},
    {"pipeline"},
    {"demo", "cli"},
]


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(module, at module top) for every import in a file, function-level ones included."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, id(node) in top))
        elif isinstance(node, ast.Import):
            out += [(alias.name, id(node) in top) for alias in node.names]
    return out


def _unit(path: Path) -> str:
    rel = path.relative_to(COMPONENTS).parts
    return rel[0] if len(rel) > 1 else rel[0].removesuffix(".py")


def _edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in COMPONENTS.rglob("*.py"):
        src = _unit(path)
        for module, _ in _imports(path):
            parts = module.split(".")
            if parts[0] == "components" and len(parts) > 1 and parts[1] != src:
                edges.setdefault(src, set()).add(parts[1])
    return edges


def test_every_unit_has_a_layer():
    units = {_unit(p) for p in COMPONENTS.rglob("*.py")} - {"__init__"}
    assert units <= set().union(*LAYERS), units - set().union(*LAYERS)


def test_no_package_level_import_cycle():
    edges = _edges()

    def reaches(a: str, b: str, seen: frozenset = frozenset()) -> bool:
        return any(n == b or (n not in seen and reaches(n, b, seen | {n})) for n in edges.get(a, ()))

    cycles = sorted((a, b) for a, targets in edges.items() for b in targets if reaches(b, a))
    assert not cycles, f"import cycles between packages: {cycles}"


def test_dependencies_point_down_the_layers():
    layer = {name: i for i, names in enumerate(LAYERS) for name in names}
    upward = sorted((src, dst) for src, targets in _edges().items() for dst in targets if layer[dst] > layer[src])
    assert not upward, f"imports that point up the layers: {upward}"


def test_project_imports_sit_at_module_top_outside_cli_files():
    """Function-level imports hide dependencies; only the thin CLI files import lazily (`sidrec --help` is fast)."""
    hidden = sorted(
        f"{path.relative_to(ROOT)}: {module}"
        for path in COMPONENTS.rglob("*.py")
        if path.name != "cli.py" and path.name != "demo.py"
        for module, at_top in _imports(path)
        if module.startswith("components") and not at_top
    )
    assert not hidden, hidden


def test_the_product_never_imports_the_experiments():
    """experiments/ imports components; components imports experiments only for the `sidrec benchmark` command."""
    offenders = sorted(
        str(path.relative_to(ROOT))
        for path in COMPONENTS.rglob("*.py")
        if path != COMPONENTS / "cli.py" and any(m.split(".")[0] == "experiments" for m, _ in _imports(path))
    )
    assert not offenders, offenders


def test_no_script_or_experiment_imports_a_private_name():
    offenders = []
    for folder in ("experiments", "scripts", "dags", "infra"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("components"):
                    offenders += [f"{path.relative_to(ROOT)}: {a.name}" for a in node.names if a.name.startswith("_")]
    assert not offenders, offenders
