"""The package's shape, measured from its imports: every module has a layer (the table in
docs/architecture.md), no import runs from a lower layer up to a higher one, no import goes round
in a circle, no module is over 500 lines, and the package root holds only the public face.

Imports inside functions count (they are still a dependency, only a later one); imports under
``if TYPE_CHECKING:`` do not (they never run). Known offenders are listed below with the issue
that removes them; a fixed one must leave the list (the tests fail on a stale entry).
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "edgekit"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
MAX_LINES = 500
# The package root: what `import edgekit` users reach by name. Everything else lives in a room.
PUBLIC_FACE = {"edgekit", "edgekit.__main__", "edgekit.errors", "edgekit.model"}

# Offenders that another issue removes: {module: issue}. Nothing else belongs here.
TOO_LONG: dict[str, int] = {}
UPWARD: dict[tuple[str, str], int] = {}
CIRCLES: dict[frozenset[str], int] = {}
AT_ROOT: dict[str, int] = {}


def _layers() -> list[tuple[int, str]]:
    """(layer, module prefix) from the architecture page's table, longest prefix first."""
    found = []
    for line in ARCHITECTURE.read_text().splitlines():
        row = re.fullmatch(r"\|\s*(\d+)\s*\|[^|]*\|(.*)\|", line.strip())
        if row:
            found += [(int(row.group(1)), name) for name in re.findall(r"`([\w.]+)`", row.group(2))]
    assert found, f"{ARCHITECTURE}: no layer table"
    return sorted(found, key=lambda item: -len(item[1]))


LAYERS = _layers()


def _layer(module: str) -> int | None:
    for layer, prefix in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return layer
    return None


def _modules() -> dict[str, Path]:
    """Every Python module of the package by dotted name (the Ansible role's plugin, which runs
    inside Ansible, is data, not a module)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if "ansible" in parts:
            continue
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str:
    """The module that ``name`` (a module, or a name inside one) lives in."""
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """The import statements that run: those under ``if TYPE_CHECKING:`` left out."""
    found, todo = [], [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo += node.orelse
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        todo += ast.iter_child_nodes(node)
    return found


def _imports(module: str) -> set[str]:
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names]
        found |= {_resolve(n) for n in names if n == "edgekit" or n.startswith("edgekit.")}
    found.discard(module)
    return found


GRAPH = {module: _imports(module) for module in MODULES}


def _circles() -> list[frozenset[str]]:
    """The graph's strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(GRAPH[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    return found


def test_every_module_has_a_layer() -> None:
    missing = sorted(m for m in MODULES if _layer(m) is None)
    assert not missing, f"give these a layer in {ARCHITECTURE.relative_to(ROOT)}: {missing}"


def test_no_import_runs_up_a_layer() -> None:
    upward = sorted((m, t) for m, targets in GRAPH.items() for t in targets
                    if (_layer(m) or 0) < (_layer(t) or 0))
    found = {edge: f"layer {_layer(edge[0])} imports layer {_layer(edge[1])}" for edge in upward}
    assert set(found) - set(UPWARD) == set(), {e: found[e] for e in set(found) - set(UPWARD)}
    assert set(UPWARD) - set(found) == set(), f"fixed, take off UPWARD: {set(UPWARD) - set(found)}"


def test_no_import_circle() -> None:
    found = set(_circles())
    assert found - set(CIRCLES) == set(), sorted(sorted(c) for c in found - set(CIRCLES))
    assert set(CIRCLES) - found == set(), f"fixed, take off CIRCLES: {set(CIRCLES) - found}"


def test_no_module_over_500_lines() -> None:
    long = {m for m, path in MODULES.items() if len(path.read_text().splitlines()) > MAX_LINES}
    assert long - set(TOO_LONG) == set(), sorted(long - set(TOO_LONG))
    assert set(TOO_LONG) - long == set(), f"fixed, take off TOO_LONG: {set(TOO_LONG) - long}"


def test_the_package_root_holds_only_the_public_face() -> None:
    root = {m for m in MODULES if m.count(".") == 1 and MODULES[m].name != "__init__.py"}
    loose = root - PUBLIC_FACE
    assert loose - set(AT_ROOT) == set(), f"move into a room: {sorted(loose - set(AT_ROOT))}"
    assert set(AT_ROOT) - loose == set(), f"moved, take off AT_ROOT: {set(AT_ROOT) - loose}"


def test_the_graph_counts_lazy_imports_and_leaves_out_type_hints() -> None:
    """An import inside a function is a dependency; one under ``if TYPE_CHECKING:`` is not."""
    code = ("from typing import TYPE_CHECKING\nimport os\nif TYPE_CHECKING:\n"
            "    from edgekit.cli import cli\nelse:\n    import json\n"
            "def f():\n    from edgekit.loop import run\n")
    seen = [ast.unparse(n) for n in _runtime_nodes(ast.parse(code))]
    assert sorted(seen) == sorted(["from typing import TYPE_CHECKING", "import os",
                                   "import json", "from edgekit.loop import run"])
    assert any(t.endswith(".telemetry") for t in GRAPH["edgekit.backends.onnxruntime"])
