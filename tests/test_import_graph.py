"""No import circles in claimroom: the Store contract imports no backend, no tui part imports the app.

The graph is read from the source with ``ast``, so an import counts wherever it is written:
at the top of a module, inside a function, or under ``if TYPE_CHECKING``. A circle hidden in a
function or behind TYPE_CHECKING still ties the modules together (each needs the other to be
read, typed or changed), so it is one here too. There is no allowance list: every circle
found so far was removed (the store and its backends through ``core/backends.py``, the store
and the reaper through ``reaper.Reapable``, the file store's ops, cascade and retention
through ``file/tx.py`` and ``file/states.py``, the tui parts and the app through ``tui/room.py``).

What an import statement depends on is what Python runs for it: the module it names
(``from pkg import name`` names ``pkg.name`` when that is a module, else ``pkg``), and the
packages above that module, except those the importing module is itself inside (they are
loaded before it).
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from claimroom.core.backends import BACKENDS
from claimroom.core.store import Store

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "claimroom"
TOPS = ("core", "tui", "themes")  # the folders setup.py maps to claimroom.core, .tui, .themes


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target``, at ``line`` of ``path``."""

    source: str
    target: str
    path: str
    line: int


def modules(root: Path, package: str, tops: Iterable[str]) -> dict[str, Path]:
    """Every module under the top folders, by its installed dotted name."""
    found = {}
    for top in tops:
        for path in sorted((root / top).rglob("*.py")):
            parts = (package, *path.relative_to(root).with_suffix("").parts)
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _named(
    node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: dict[str, Path]
) -> list[str]:
    """The dotted names one import statement loads, before the packages above them."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        here = module.split(".") if is_package else module.split(".")[:-1]
        anchor = here[: len(here) - node.level + 1]
        base = ".".join([*anchor, base] if base else anchor)
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]


def import_edges(known: dict[str, Path], root: Path = ROOT) -> list[Edge]:
    """Every import among ``known`` modules: module level, in functions, under TYPE_CHECKING."""
    edges = []
    for module, path in known.items():
        is_package = path.name == "__init__.py"
        inside = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 2)}
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for name in _named(node, module, is_package, known):
                while name not in known and "." in name:  # an attribute of a module: that module
                    name = name.rsplit(".", 1)[0]
                parts = name.split(".")
                loads = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
                for target in loads:
                    if target in known and target not in inside:
                        edges.append(Edge(module, target, str(path.relative_to(root)), node.lineno))
    return edges


def cycles(edges: list[Edge]) -> list[list[Edge]]:
    """One circle through each strongly connected group of modules (Tarjan), as its edges."""
    graph: dict[str, dict[str, Edge]] = {}
    for e in edges:
        graph.setdefault(e.source, {}).setdefault(e.target, e)
        graph.setdefault(e.target, {})
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_circle(graph, group) for group in groups]


def _circle(graph: dict[str, dict[str, Edge]], group: set[str]) -> list[Edge]:
    """A shortest circle from the group's first module back to it (breadth first)."""
    start = min(group)
    paths: dict[str, list[Edge]] = {start: []}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w, e in sorted(graph[v].items()):
                if w == start:
                    return [*paths[v], e]
                if w in group and w not in paths:
                    paths[w] = [*paths[v], e]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no circle through {start}")  # a strongly connected group always has one


def said(circle: list[Edge]) -> str:
    return "\n".join(f"  {e.source} -> {e.target}  ({e.path}:{e.line})" for e in circle)


def test_no_import_circles_in_core_tui_and_themes() -> None:
    known = modules(ROOT, PACKAGE, TOPS)
    assert "claimroom.core.store" in known and "claimroom.tui.app" in known  # the walk found the code
    found = cycles(import_edges(known))
    assert not found, "import circles:\n" + "\n\n".join(said(c) for c in found)


def test_the_store_contract_imports_no_backend() -> None:
    known = modules(ROOT, PACKAGE, TOPS)
    backends = ("claimroom.core.redis", "claimroom.core.file")
    edges = import_edges(known)
    # The contract spans store, store_admin and store_ops; nothing they reach, directly or
    # through another module, may be a backend (Store.from_url finds one by scheme).
    reached, todo = set(), ["claimroom.core.store", "claimroom.core.store_admin", "claimroom.core.store_ops"]
    while todo:
        source = todo.pop()
        for e in edges:
            if e.source == source and e.target not in reached:
                reached.add(e.target)
                todo.append(e.target)
    assert not {t for t in reached if t.startswith(backends)}


@pytest.mark.parametrize("scheme", sorted(BACKENDS))
def test_each_backend_named_by_scheme_is_a_store(scheme: str) -> None:
    module, _, name = BACKENDS[scheme].partition(":")
    backend = getattr(importlib.import_module(module, "claimroom.core"), name)
    assert issubclass(backend, Store) and backend is not Store


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def test_the_graph_sees_circles_through_functions_and_type_checking(tmp_path: Path) -> None:
    # The check above passes only if it can fail: circles written each way it must catch.
    _write(
        tmp_path,
        {
            "top/__init__.py": "",
            "top/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n",
            "top/b.py": "def f():\n    from pkg.top import a\n",  # absolute, inside a function
            "top/c.py": "from . import d\n",
            "top/d.py": "import pkg.top.c\n",  # the installed name, a plain import
            "top/sub/__init__.py": "from .e import E\n",
            "top/sub/e.py": "from . import f\n",  # inside its own package: no edge to sub/__init__
            "top/sub/f.py": "",
            "top/g.py": "from .sub.f import x\n",  # from outside: sub/__init__ runs too
            "top/h.py": "from .g import y\n",
        },
    )
    known = modules(tmp_path, "pkg", ["top"])
    edges = import_edges(known, tmp_path)
    found = sorted(sorted({e.source for e in c}) for c in cycles(edges))
    assert found == [["pkg.top.a", "pkg.top.b"], ["pkg.top.c", "pkg.top.d"]], found
    targets = {(e.source, e.target) for e in edges}
    assert ("pkg.top.g", "pkg.top.sub") in targets and ("pkg.top.sub.e", "pkg.top.sub") not in targets
