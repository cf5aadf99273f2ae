"""The product's layering, read off its source: no import circle among the modules of `dukat`
and `dukatd` (not even through `TYPE_CHECKING`, not even lazily). The engine's own rules
(nothing imported from above it) are in `tests/core/test_layers.py`, on the same reading.

The imports are every `import` statement in a module's syntax tree, wherever it stands (at
the top, under `if TYPE_CHECKING:`, inside a function), and every `importlib.import_module`
or `__import__` of a constant name: a circle through any of them is coupling all the same.
`from package import module` imports the module, not the package's own names; the
generated stubs (`dukat/v1`) are not ours to arrange and are left out.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("dukat", "dukatd")
GENERATED = ROOT / "dukat" / "v1"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def product_modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the product by its dotted name."""
    return {
        module_name(path, root): path
        for top in PRODUCT
        for path in sorted((root / top).rglob("*.py"))
        if GENERATED not in path.parents
    }


def imported(path: Path, modules: set[str], root: Path = ROOT) -> Iterator[tuple[str, int]]:
    """The modules that the module at `path` imports, wherever the import stands, with its
    line. `modules` are the names known to be modules (to tell `from p import m` apart)."""
    me = module_name(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            source = ".".join(part for part in (base, node.module or "") if part)
            submodules = [f"{source}.{alias.name}" for alias in node.names]
            known = [name for name in submodules if name in modules]
            yield from ((name, node.lineno) for name in known)
            if len(known) < len(submodules):  # a name of the module itself
                yield source, node.lineno
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


def import_graph(modules: dict[str, Path], root: Path = ROOT) -> dict[str, dict[str, int]]:
    """Each module -> the modules among `modules` it imports (and the line of the first)."""
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        edges: dict[str, int] = {}
        for target, line in imported(path, set(modules), root):
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


def test_no_import_circle_in_the_product() -> None:
    graph = import_graph(product_modules())
    circle = find_circle(graph)
    if circle is not None:
        steps = [f"{a} (line {graph[a][b]})" for a, b in itertools.pairwise(circle)]
        pytest.fail("import circle: " + " -> ".join([*steps, circle[-1]]))


def test_the_circle_finder_finds_one(tmp_path: Path) -> None:
    """The check above can fail: a circle through a TYPE_CHECKING or a lazy import counts,
    and so does one through a package's own names, but not a package's modules."""
    package = tmp_path / "dukat" / "thing"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("from dukat.thing.a import A\nNAME = 1\n")
    (package / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from dukat.thing import b\n"
        "if TYPE_CHECKING:\n"
        "    from dukat.thing.b import B\n"
    )
    (package / "b.py").write_text(
        "def later():\n    import importlib\n    return importlib.import_module('dukat.thing.a')\n"
    )
    (package / "c.py").write_text("from dukat.thing import NAME, b\n")
    modules = {module_name(path, tmp_path): path for path in sorted(package.glob("*.py"))}
    graph = import_graph(modules, tmp_path)
    assert graph == {
        "dukat.thing": {"dukat.thing.a": 1},
        "dukat.thing.a": {"dukat.thing.b": 2},
        "dukat.thing.b": {"dukat.thing.a": 3},
        "dukat.thing.c": {"dukat.thing.b": 1, "dukat.thing": 1},
    }
    assert find_circle(graph) == ["dukat.thing.a", "dukat.thing.b", "dukat.thing.a"]
    del graph["dukat.thing.b"]["dukat.thing.a"]
    assert find_circle(graph) is None
