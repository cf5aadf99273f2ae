"""No module of the product reaches into another's private names, read from the source (AST).

A name with a leading underscore is its module's own: `from m import _x`, or `m._x` on a
module or class imported from another first-party module, is a dependency its owner cannot
see. A module with a leading underscore (`dukat.client._worker`) is its package's own: only
modules of that package import from it. The tests are not scanned: a test may reach into
the module it tests.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("dukat", "dukatd", "bench", "examples")
GENERATED = ROOT / "dukat" / "v1"
FIRST_PARTY = ("dukat", "dukatd", "bench")
# The underscore API of a named tuple is public (collections.namedtuple's documentation).
NAMED_TUPLE_API = {"_asdict", "_field_defaults", "_fields", "_make", "_replace"}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_owner(module: str) -> str | None:
    """The package whose private module `module` is, if it is one."""
    parts = module.split(".")
    for index, part in enumerate(parts):
        if private(part):
            return ".".join(parts[:index])
    return None


def reaches(path: Path, root: Path = ROOT) -> Iterator[str]:
    """Each place `path` (a module under `root`) reaches into another's private names."""
    me = module_name(path, root)
    relative = path.relative_to(root).as_posix()
    tree = ast.parse(path.read_text(), str(path))
    bound: dict[str, str] = {}  # a name imported here -> what it is, dotted
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            owner = private_owner(node.module)
            if owner is not None and me != owner and not me.startswith(f"{owner}."):
                yield f"{relative}: from {node.module} (a private module)"
            for alias in node.names:
                if private(alias.name) and node.module != me:
                    yield f"{relative}: from {node.module} import {alias.name}"
                bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                owner = private_owner(alias.name)
                if owner is not None and me != owner and not me.startswith(f"{owner}."):
                    yield f"{relative}: import {alias.name} (a private module)"
                if alias.asname:
                    bound[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and private(node.attr)
            and node.attr not in NAMED_TUPLE_API
            and isinstance(node.value, ast.Name)
            and node.value.id in bound
            and bound[node.value.id].split(".")[0] in FIRST_PARTY
        ):
            yield f"{relative}: {node.value.id}.{node.attr} ({bound[node.value.id]})"


def scanned() -> list[Path]:
    return [
        path
        for top in SCANNED
        for path in sorted((ROOT / top).rglob("*.py"))
        if GENERATED not in path.parents
    ]


def test_no_module_reaches_into_another_modules_private_names() -> None:
    found = {reach for path in scanned() for reach in reaches(path)}
    assert sorted(found) == []


def test_the_scan_sees_each_way_of_reaching_in(tmp_path: Path) -> None:
    # The scan must not pass by seeing nothing: each form is caught in a module of its own.
    package = tmp_path / "dukat" / "thing"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "_inner.py").write_text("X = 1\n_y = 2\n")
    (package / "sibling.py").write_text("from dukat.thing._inner import X\n")  # its package's
    outside = tmp_path / "dukatd"
    outside.mkdir()
    (outside / "user.py").write_text(
        "from dukat.thing._inner import X\n"
        "from dukat.thing.sibling import _hidden\n"
        "from dukat.thing import sibling as s\n"
        "s._hidden\n"
        "from dukat.core.spec import TaskSpec\n"
        "TaskSpec._field_defaults\n"
    )
    assert list(reaches(package / "sibling.py", tmp_path)) == []
    assert sorted(reaches(outside / "user.py", tmp_path)) == [
        "dukatd/user.py: from dukat.thing._inner (a private module)",
        "dukatd/user.py: from dukat.thing.sibling import _hidden",
        "dukatd/user.py: s._hidden (dukat.thing.sibling)",
    ]
