"""The layout of DESIGN.md holds: no import cycle between packages, and a thin HTTP layer."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "jobs", "identity", "content", "notifications", "custody", "compliance", "support", "api",
            "scanner", "signer", "devnet", "cli")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES)


def cycles(graph: grimp.ImportGraph, depth: int) -> list[list[str]]:
    """The strongly connected groups of the import graph with modules cut to ``depth`` parts:
    every group of two or more is a cycle between packages (or top-level modules)."""
    edges: dict[str, set[str]] = defaultdict(set)
    for module in graph.modules:
        source = ".".join(module.split(".")[:depth])
        for imported in graph.find_modules_directly_imported_by(module):
            target = ".".join(imported.split(".")[:depth])
            if target != source and target.split(".")[0] in PACKAGES:
                edges[source].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan; the graph is a few hundred nodes, recursion is fine
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in list(edges):
        if node not in index:
            visit(node)
    return groups


@pytest.mark.parametrize("depth", [1, 2])
def test_no_import_cycle_between_packages(graph: grimp.ImportGraph, depth: int) -> None:
    assert cycles(graph, depth) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    class TwoWay:
        modules = {"custody.a", "compliance.b"}

        def find_modules_directly_imported_by(self, module: str) -> set[str]:
            return {"compliance.b"} if module == "custody.a" else {"custody.a"}

    assert cycles(TwoWay(), 1) == [["compliance", "custody"]]  # type: ignore[arg-type]


def test_http_packages_hold_only_routes_and_schemas() -> None:
    extra = [str(path.relative_to(ROOT)) for path in (ROOT / "api").glob("*/*.py")
             if path.name not in ("__init__.py", "routes.py", "schemas.py")]
    assert extra == []


def _defines(path: Path) -> list[str]:
    """Models (``__tablename__``), actors (``@job``) and state tables (``TRANSITIONS``) in a module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found += [f"{path.name}: {target.id}" for target in targets
                      if isinstance(target, ast.Name) and target.id in ("__tablename__", "TRANSITIONS")]
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for decorator in node.decorator_list:
                call = decorator.func if isinstance(decorator, ast.Call) else decorator
                if isinstance(call, ast.Name | ast.Attribute) and getattr(call, "id", getattr(call, "attr", "")) == "job":
                    found.append(f"{path.name}: @job {node.name}")
    return found


def test_no_model_actor_or_state_table_under_api() -> None:
    assert [found for path in sorted((ROOT / "api").rglob("*.py")) for found in _defines(path)] == []


def test_the_detector_sees_models_actors_and_state_tables() -> None:
    assert _defines(ROOT / "custody" / "withdrawals" / "models.py")
    assert _defines(ROOT / "custody" / "withdrawals" / "actors.py")
    assert _defines(ROOT / "custody" / "withdrawals" / "states.py")
