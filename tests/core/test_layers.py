"""The engine's layering, read off its source: no import circle among `dukat.core`'s modules
(not even through `TYPE_CHECKING`), nothing imported from above it (not even lazily), and
every record's state changed in one place.

The imports are every `import` statement in a module's syntax tree, wherever it stands (at
the top, under `if TYPE_CHECKING:`, inside a function), and every `importlib.import_module`
or `__import__` of a constant name: a circle through any of them is coupling all the same.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

import dukat.core

CORE = Path(dukat.core.__file__).parent
PACKAGE = "dukat.core"

# What the engine may import of dukat outside itself.
ALLOWED_OUTSIDE = ("dukat.errors",)
# Above it, or the wire: never, in any form.
FORBIDDEN = ("dukat.client", "dukat.v1", "dukat.cli", "dukatd", "grpc", "google")


def module_name(path: Path) -> str:
    return PACKAGE if path.name == "__init__.py" else f"{PACKAGE}.{path.stem}"


def core_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(CORE.glob("*.py"))}


def imported(tree: ast.AST, modules: set[str]) -> Iterator[tuple[str, int]]:
    """The modules a syntax tree imports, wherever the import stands, with its line."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = PACKAGE if node.level == 1 else PACKAGE.rsplit(".", node.level - 1)[0]
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            yield source, node.lineno
            for alias in node.names:  # `from dukat.core import _runs` imports a module
                if f"{source}.{alias.name}" in modules:
                    yield f"{source}.{alias.name}", node.lineno
        elif (
            isinstance(node, ast.Call)
            and _names_a_dynamic_import(node.func)
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            yield str(node.args[0].value), node.lineno


def _names_a_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Attribute):
        return func.attr == "import_module"
    return isinstance(func, ast.Name) and func.id in {"import_module", "__import__"}


def import_graph() -> dict[str, dict[str, int]]:
    """Each core module -> the core modules it imports (and the line of the first import)."""
    modules = core_modules()
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        edges: dict[str, int] = {}
        for target, line in imported(ast.parse(path.read_text()), set(modules)):
            if target in modules and target != name:
                edges.setdefault(target, line)
        graph[name] = edges
    return graph


def find_circle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One import circle, as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (circle := visit(target)) is not None:
                return circle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (circle := visit(node)) is not None:
            return circle
    return None


def test_no_import_circle_in_the_engine() -> None:
    graph = import_graph()
    circle = find_circle(graph)
    if circle is not None:
        steps = [f"{a} (line {graph[a][b]})" for a, b in itertools.pairwise(circle)]
        pytest.fail("import circle: " + " -> ".join([*steps, circle[-1]]))


def test_the_circle_finder_finds_one() -> None:
    """The check above can fail: a circle through a TYPE_CHECKING or a lazy import counts."""
    source = """
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from dukat.core.b import B
def later():
    import importlib
    return importlib.import_module("dukat.core.a")
"""
    modules = {"dukat.core.a", "dukat.core.b"}
    edges = {target for target, _ in imported(ast.parse(source), modules)}
    assert {"dukat.core.b", "dukat.core.a"} <= edges
    graph = {"dukat.core.a": {"dukat.core.b": 4}, "dukat.core.b": {"dukat.core.a": 7}}
    assert find_circle(graph) == ["dukat.core.a", "dukat.core.b", "dukat.core.a"]
    assert find_circle({"dukat.core.a": {"dukat.core.b": 1}, "dukat.core.b": {}}) is None


@pytest.mark.parametrize("name", sorted(core_modules()))
def test_the_engine_imports_nothing_from_above_it(name: str) -> None:
    path = core_modules()[name]
    for target, line in imported(ast.parse(path.read_text()), set(core_modules())):
        where = f"{path.name}:{line} imports {target}"
        assert not target.startswith(FORBIDDEN), where
        if target.startswith("dukat.") or target == "dukat":
            assert target.startswith(PACKAGE) or target in ALLOWED_OUTSIDE, where


def test_only_the_transitions_module_sets_a_record_state() -> None:
    """Tasks and jobs change state through `dukat.core._transitions` only: no other module
    assigns `.state` on anything but itself (a class keeping its own, as the progress fold
    does), and the records set theirs in their constructors only."""
    found = []
    for name, path in core_modules().items():
        if name == f"{PACKAGE}._transitions":
            continue
        tree = ast.parse(path.read_text())
        constructors = {
            id(node)
            for function in ast.walk(tree)
            if isinstance(function, ast.FunctionDef) and function.name == "__init__"
            for node in ast.walk(function)
        }
        for node in ast.walk(tree):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = [t for target in node.targets for t in _unpacked(target)]
            elif isinstance(node, ast.AnnAssign | ast.AugAssign):
                targets = [node.target]
            for target in targets:
                if not (isinstance(target, ast.Attribute) and target.attr == "state"):
                    continue
                on_self = isinstance(target.value, ast.Name) and target.value.id == "self"
                if not on_self or (name == f"{PACKAGE}._runs" and id(node) not in constructors):
                    found.append(f"{path.name}:{node.lineno}")
    assert found == []


def _unpacked(target: ast.expr) -> list[ast.expr]:
    if isinstance(target, ast.Tuple | ast.List):
        return [t for element in target.elts for t in _unpacked(element)]
    return [target]
