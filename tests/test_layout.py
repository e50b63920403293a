"""The package layout keeps its layering (docs/architecture.md): no import cycles anywhere in
``harness`` or ``leaderboard``, counting imports inside functions (a cycle means two modules
need something that belongs a level below both), no import that climbs the layer order declared
in ``harness.layers``, and the runner names no task and no model kind."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
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


def _graph(top_level_only: bool = False, root: Path = ROOT,
           packages: tuple[str, ...] = ("harness", "leaderboard")) -> dict[str, set[str]]:
    paths = {_module_name(p, root): p for pkg in packages for p in (root / pkg).rglob("*.py")}
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


def test_no_import_cycles_counting_imports_inside_functions():
    graph = _graph()
    assert "harness.datasets.base" in graph and "harness.models.fusion.model" in graph
    assert sum(len(v) for v in graph.values()) > 300  # the walk saw the imports inside functions too
    assert _cycles(graph) == []


def test_a_hand_made_cycle_inside_functions_is_found(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg import b\n")
    (pkg / "b.py").write_text("import os\n\ndef g():\n    from pkg.a import f\n    return f\n")
    graph = _graph(root=tmp_path, packages=("pkg",))
    assert _cycles(graph) == [["pkg.a", "pkg.b"]]
    assert _cycles(_graph(top_level_only=True, root=tmp_path, packages=("pkg",))) == []  # the old test's blind spot


def _upward(graph: dict[str, set[str]]) -> list[str]:
    from harness.layers import layer_of

    return sorted(f"{m} -> {t}" for m, targets in graph.items() for t in targets if layer_of(t) > layer_of(m))


def test_no_import_climbs_the_declared_layers():
    graph = _graph()
    assert _upward(graph) == []
    planted = {**graph, "harness.core.registry": graph["harness.core.registry"] | {"harness.run.runner"}}
    assert _upward(planted) == ["harness.core.registry -> harness.run.runner"]


def test_models_never_import_tasks_datasets_or_the_store():
    graph = _graph()
    bad = {f"{m} -> {t}" for m, ts in graph.items() if m.startswith("harness.models")
           for t in ts if t.startswith(("harness.tasks", "harness.datasets", "harness.results.store", "harness.training"))}
    assert bad == set()


def test_the_runner_names_no_task_and_no_model_kind():
    from harness.core.interfaces import ModelKind
    from harness.tasks import TASKS

    names = set(TASKS.names()) | {a for n in TASKS.names() for a in TASKS.aliases(n)} | {k.value for k in ModelKind}
    for path in (ROOT / "harness" / "run" / name for name in ("runner.py", "executors.py")):
        found = [(node.lineno, node.value) for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                 if isinstance(node, ast.Constant) and node.value in names]
        assert found == [], f"{path.name} names tasks or model kinds: {found}"


def test_commands_do_not_import_cli():
    graph = _graph(top_level_only=False)
    assert "harness.cli.commands" in graph["harness.cli.main"]
    assert "harness.cli.main" not in graph["harness.cli.commands"]
