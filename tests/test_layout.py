"""The package layout keeps its layering: no module-level import cycles anywhere in
``harness`` or ``leaderboard`` (a cycle means two modules need something that belongs a level
below both), and ``commands`` never reaches back up into ``cli``."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str, modules: set[str], top_level_only: bool) -> set[str]:
    """Modules of ours that ``path`` imports (at module level, or anywhere)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found |= {target} | {f"{target}.{a.name}" for a in node.names}
    # importing a submodule runs its package's __init__ first: that is not an edge back up
    return {m for m in found & modules if m != name and not name.startswith(m + ".")}


def _graph(top_level_only: bool = True) -> dict[str, set[str]]:
    paths = {_module_name(p): p for pkg in ("harness", "leaderboard") for p in (ROOT / pkg).rglob("*.py")}
    return {n: _imports(p, n, set(paths), top_level_only) for n, p in paths.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_sees_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_level_import_cycles():
    graph = _graph()
    assert "harness.datasets.base" in graph and "harness.models.fusion.model" in graph
    assert _cycles(graph) == []


def test_commands_do_not_import_cli():
    graph = _graph(top_level_only=False)
    assert "harness.commands" in graph["harness.cli"]
    assert "harness.cli" not in graph["harness.commands"]
