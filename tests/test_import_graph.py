"""The import graph of ``ledger`` and ``processors`` has no cycles, and ``ledger`` never imports ``processors``.

grimp reads every import statement, including those inside functions and ``if TYPE_CHECKING`` blocks,
so a cycle hidden by a lazy import counts as a cycle here.
"""

from __future__ import annotations

import itertools

import grimp
import pytest


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("ledger", "processors", include_external_packages=False)


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative), plus self-imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    component.append(m)
                    if m == node:
                        break
                if len(component) > 1 or node in graph.find_modules_directly_imported_by(node):
                    found.append(sorted(component))
    return found


def _chain(graph: grimp.ImportGraph, component: list[str]) -> str:
    """One import path around the cycle, with the lines that make it, for the failure message."""
    a, b = component[0], component[1]
    there = graph.find_shortest_chain(importer=a, imported=b) or ()
    back = graph.find_shortest_chain(importer=b, imported=a) or ()
    path = [*there, *back[1:]]
    steps = []
    for x, y in itertools.pairwise(path):
        lines = graph.get_import_details(importer=x, imported=y)
        where = ", ".join(f"line {d['line_number']}: {d['line_contents']}" for d in lines)
        steps.append(f"{x} -> {y} ({where})")
    return "\n  ".join(steps)


def test_the_finder_sees_a_cycle_made_by_a_function_level_import() -> None:
    g = grimp.ImportGraph()
    for m in ("pkg", "pkg.a", "pkg.b", "pkg.c"):
        g.add_module(m)
    g.add_import(importer="pkg.a", imported="pkg.b", line_number=1, line_contents="import pkg.b")
    g.add_import(importer="pkg.b", imported="pkg.c", line_number=1, line_contents="import pkg.c")
    assert _cycles(g) == []
    g.add_import(importer="pkg.c", imported="pkg.a", line_number=9, line_contents="    from pkg import a")
    assert _cycles(g) == [["pkg.a", "pkg.b", "pkg.c"]]


def test_no_import_cycles(graph: grimp.ImportGraph) -> None:
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(f"{c}\n  {_chain(graph, c)}" for c in cycles)


def test_ledger_never_imports_processors(graph: grimp.ImportGraph) -> None:
    bad = sorted(
        f"{importer} -> {imported} (line {d['line_number']}: {d['line_contents']})"
        for importer in graph.find_children("ledger") | graph.find_descendants("ledger")
        for imported in graph.find_modules_directly_imported_by(importer)
        if imported == "processors" or imported.startswith("processors.")
        for d in graph.get_import_details(importer=importer, imported=imported)
    )
    assert not bad, "ledger imports processors:\n" + "\n".join(bad)


def test_the_graph_covers_both_packages(graph: grimp.ImportGraph) -> None:
    # a graph of nothing has no cycles: make sure the modules this file is about were found
    assert {"ledger.cli.app", "ledger.cli.output", "processors.cli", "processors.report.model"} <= graph.modules
