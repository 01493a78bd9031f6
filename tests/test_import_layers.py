"""Imports run one way: no cycles inside a package, no layer importing one above it.

DESIGN.md stacks the packages ``ksync`` <- ``workqueue`` <- ``tdpmmu`` <- ``tools``,
each importing only those below it.  Inside a package the modules must form a
DAG too: a cycle, even one dodged with a function-local ("late") import, makes
import order matter and hides which module is the lower one.

The graph is built from the source with ``ast``, so it sees every import
statement wherever it sits -- module level, class body or function body --
except those under ``if TYPE_CHECKING:`` (annotations only, never executed).
``from pkg import name`` is an edge to the submodule ``pkg.name`` when there
is one, else to ``pkg`` itself (its ``__init__``, which runs the re-exports).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Bottom layer first (DESIGN.md "Layers").
LAYERS = ("ksync", "workqueue", "tdpmmu", "tools")

#: Cycles tolerated for now, each a frozenset of module names with the reason.
#: Keep it empty: an entry is a debt, not a design.
ALLOWED_CYCLES: dict[frozenset[str], str] = {}

Graph = dict[str, dict[str, list[int]]]


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _import_nodes(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under ``node``, at any depth, outside ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.orelse:    # the else branch does run
                if isinstance(stmt, ast.Import | ast.ImportFrom):
                    yield stmt
                yield from _import_nodes(stmt)
            continue
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        yield from _import_nodes(child)


def _targets(node: ast.Import | ast.ImportFrom, me: str, is_pkg: bool,
             modules: set[str]) -> Iterator[str]:
    """The project modules one import statement makes ``me`` depend on."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = (me if is_pkg else me.rpartition(".")[0]).split(".")
            if node.level > 1:
                base = base[:len(base) - (node.level - 1)]
            mod = ".".join(base + ([node.module] if node.module else []))
        else:
            mod = node.module or ""
        subs = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in modules]
        names = subs if len(subs) == len(node.names) else [*subs, mod]
    for name in names:
        # ``import a.b.c`` of a function-free path: the longest known module prefix.
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name and name != me:
            yield name


def build_graph(root: Path = ROOT) -> Graph:
    """module -> {imported project module: [line numbers]} for every layer's modules."""
    files = [p for layer in LAYERS for p in sorted((root / layer).rglob("*.py"))]
    modules = {module_name(p, root) for p in files}
    graph: Graph = {m: {} for m in modules}
    for path in files:
        me = module_name(path, root)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in _import_nodes(tree):
            for target in _targets(node, me, path.name == "__init__.py", modules):
                graph[me].setdefault(target, []).append(node.lineno)
    return graph


def find_cycles(graph: Graph) -> list[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                scc.add(w)
                if w == v:
                    break
            if len(scc) > 1:
                out.append(frozenset(scc))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def describe(graph: Graph, cycle: frozenset[str]) -> str:
    """Each edge inside ``cycle`` with the lines that make it, for the failure message."""
    lines = [" <-> ".join(sorted(cycle))]
    for a in sorted(cycle):
        for b, at in sorted(graph[a].items()):
            if b in cycle:
                lines.append(f"    {a} -> {b} (line {', '.join(map(str, at))})")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def graph() -> Graph:
    return build_graph()


@pytest.mark.parametrize("layer", LAYERS[:-1])
def test_no_import_cycle_inside_a_package(graph: Graph, layer: str) -> None:
    cycles = [c for c in find_cycles(graph)
              if next(iter(c)).split(".")[0] == layer and c not in ALLOWED_CYCLES]
    assert not cycles, "import cycles:\n" + "\n".join(describe(graph, c) for c in cycles)


def test_no_layer_imports_one_above_it(graph: Graph) -> None:
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    upward = [f"{a} -> {b} (line {', '.join(map(str, at))})"
              for a in sorted(graph) for b, at in sorted(graph[a].items())
              if rank[b.split(".")[0]] > rank[a.split(".")[0]]]
    assert not upward, "imports of a higher layer:\n" + "\n".join(upward)


def test_allowlist_names_only_live_cycles(graph: Graph) -> None:
    # A fixed cycle must leave the allowlist, or it would hide its return.
    stale = [sorted(c) for c in ALLOWED_CYCLES if c not in find_cycles(graph)]
    assert not stale, f"allowlisted cycles that no longer exist: {stale}"


def test_the_checker_sees_late_imports_and_skips_type_checking(tmp_path: Path) -> None:
    # The test above is only as good as its parser: pin what counts as an edge.
    pkg = tmp_path / "ksync"
    pkg.mkdir()
    for layer in LAYERS[1:]:
        (tmp_path / layer).mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import x\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\n"
                              "if TYPE_CHECKING:\n    from .d import D\n")
    (pkg / "d.py").write_text("from .c import C\n")
    g = build_graph(tmp_path)
    assert g["ksync.b"] == {"ksync.a": [2]}
    assert "ksync.d" not in g["ksync.c"]
    assert find_cycles(g) == [frozenset({"ksync.a", "ksync.b"})]
