"""The import graph keeps the architecture the README draws: the core at the bottom, adapters
around it, one composition root on top. Read from the source with `ast`, so a new import that
breaks the rule fails here before it grows roots."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SERVICE = Path(__file__).resolve().parents[2] / "service"
CORE = "domain"
ADAPTERS = frozenset({"kafka", "push", "http", "wire", "state", "observability"})
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"__main__"}),
    frozenset({"app"}),
    frozenset({"config_builders"}),
    frozenset({"kafka", "http"}),
    frozenset({"partition", "push"}),
    frozenset({"observability", "state"}),
    frozenset({"wire"}),
    frozenset({"domain"}),
)
"""Top to bottom, as the README's Design section draws them: a unit imports only lower layers."""
LEAVES = frozenset({"settings", "clock", "errors", "backoff", "gc_policy"})
"""Modules any layer may use; they import nothing of the service but each other."""


def _unit(module: str) -> str:
    """The architectural unit of a module: its subpackage (`service.push.fcm` -> `push`) or, for
    a top-level module, its name (`service.settings` -> `settings`)."""
    return module.split(".")[1]


def _module_name(path: Path) -> str:
    relative = path.relative_to(SERVICE.parent).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """Unit -> units it imports (within `service`), from every module's import statements."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in SERVICE.rglob("*.py"):
        source = _module_name(path)
        if source == "service":  # the package's own __init__: a docstring
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            for target in targets:
                if target.startswith("service.") and _unit(target) != _unit(source):
                    graph[_unit(source)].add(_unit(target))
        graph.setdefault(_unit(source), set())
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle between units, each as the path that closes it."""
    found: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt == path[0]:
                found.append([*path, nxt])
            elif nxt not in path and nxt > path[0]:  # report each cycle once, from its smallest unit
                visit(nxt, [*path, nxt])

    for start in sorted(graph):
        visit(start, [start])
    return found


def test_the_core_imports_no_adapter_and_nothing_outside_itself() -> None:
    graph = import_graph()
    assert graph[CORE] == set(), f"service/domain imports {sorted(graph[CORE])}"


def test_no_cycle_between_packages() -> None:
    assert cycles(import_graph()) == []


def test_adapters_do_not_import_the_composition_root() -> None:
    graph = import_graph()
    offenders = {unit: sorted(graph[unit] & {"app", "__main__"}) for unit in ADAPTERS}
    assert {unit: names for unit, names in offenders.items() if names} == {}


def upward_edges(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Edges from a unit to one of its own layer or a higher one (leaves aside)."""
    rank = {unit: depth for depth, layer in enumerate(LAYERS) for unit in layer}
    return sorted(
        (source, target)
        for source, targets in graph.items()
        for target in targets
        if source in rank and target in rank and rank[target] <= rank[source]
    )


def test_every_unit_has_a_place_in_the_drawing() -> None:
    placed = set().union(*LAYERS) | LEAVES
    assert set(import_graph()) - placed == set(), "add the new package to LAYERS (and the README)"


def test_layers_import_only_downward_and_leaves_import_no_layer() -> None:
    graph = import_graph()
    assert upward_edges(graph) == []
    assert {leaf: sorted(graph[leaf] - LEAVES) for leaf in LEAVES if graph.get(leaf, set()) - LEAVES} == {}


def test_the_checks_see_a_cycle_and_an_upward_import() -> None:
    """The graph walk itself can fail: a made-up graph with both faults is caught."""
    graph = {"domain": {"push"}, "push": {"observability"}, "observability": {"push"}}
    assert cycles(graph) == [["observability", "push", "observability"]]
    assert graph[CORE] == {"push"}
    assert upward_edges(graph) == [("domain", "push"), ("observability", "push")]
