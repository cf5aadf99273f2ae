"""The engine's layering, read off its source: nothing imported from above it (not even
lazily, not even through `TYPE_CHECKING`), and every record's state changed in one place.
No import circle among its modules is checked with the whole product's
(`tests/test_layers.py`, whose reading of imports this shares).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dukat.core
from tests.test_layers import imported

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


@pytest.mark.parametrize("name", sorted(core_modules()))
def test_the_engine_imports_nothing_from_above_it(name: str) -> None:
    path = core_modules()[name]
    for target, line in imported(path, set(core_modules())):
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
