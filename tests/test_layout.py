"""The package's layout: imports flow one way (no cycle among ltf's modules).

The import graph is read from the source (ast), not from sys.modules, so a cycle that Python
happens to tolerate at import time still fails here. Importing `a.b.c` also runs the package
files `a/__init__.py` and `a/b/__init__.py`, so those count as edges too.
"""

import ast
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "ltf"
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def ltf_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(path: Path, modules: dict[str, Path]) -> set[str]:
    """The ltf modules a file imports, each with the packages above it."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from ..a import b
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:  # `from pkg import mod` imports the module pkg.mod
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in modules else base)
    edges = set()
    for target in targets:
        parts = target.split(".")
        edges.update(".".join(parts[:k]) for k in range(1, len(parts) + 1))
    return {t for t in edges if t in modules and t != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_one_and_only_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle_among_ltf_modules():
    modules = ltf_modules()
    graph = {name: imported(path, modules) for name, path in modules.items()}
    assert "ltf.tasks.base" in graph["ltf.tasks.registry"] | set().union(
        *(graph[m] for m in graph["ltf.tasks.registry"]))  # the walk sees real imports
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_data_imports_nothing_above_it():
    """Data feeds tasks and imports nothing above it (models, tasks, training)."""
    modules = ltf_modules()
    above = ("ltf.tasks", "ltf.models", "ltf.train", "ltf.cells", "ltf.rnn", "ltf.config_lib")
    for name, path in modules.items():
        if name.startswith("ltf.data"):
            bad = sorted(t for t in imported(path, modules) if t.startswith(above))
            assert not bad, f"{name} imports {bad}"


@pytest.mark.parametrize("folder", ["ltf", "scripts", "configs"])
def test_modules_stay_under_the_limit(folder):
    long = {str(p.relative_to(REPO)): n for p in sorted((REPO / folder).rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by job): {long}"
