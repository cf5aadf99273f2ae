"""dukatd.status, the one table from errors to gRPC statuses: the daemon's own refusals
(`dukat.errors.Refused`) name their code as a string, and each must be a real one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from google.rpc import code_pb2

import dukatd
from dukat.errors import FellBehind, Refused
from dukatd.status import to_status

DAEMON = Path(dukatd.__file__).parent


@pytest.mark.parametrize(
    "code", ["PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "UNAVAILABLE", "FAILED_PRECONDITION"]
)
def test_a_refusal_gets_the_status_it_names(code: str) -> None:
    status = to_status(Refused(code, "no"))
    assert status is not None
    assert (status.code, status.message) == (code_pb2.Code.Value(code), "no")


def test_a_watcher_that_fell_behind_is_resource_exhausted() -> None:
    status = to_status(FellBehind(lost=5, capacity=10))
    assert status is not None and status.code == code_pb2.RESOURCE_EXHAUSTED


def refusal_codes() -> list[tuple[str, int, ast.expr]]:
    """The first argument of every `Refused(...)` in the daemon's source, with its place."""
    found = []
    for path in sorted(DAEMON.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Refused":
                found.append((path.name, node.lineno, node.args[0]))
    return found


def test_every_refusal_of_the_daemon_names_a_status_code_grpc_knows() -> None:
    # A misspelt name would fail only when the refusal is made, as UNKNOWN: read them all.
    codes = refusal_codes()
    known = set(code_pb2.Code.keys())
    assert len(codes) > 10
    for name, line, argument in codes:
        where = f"{name}:{line}"
        branches = (
            [argument.body, argument.orelse] if isinstance(argument, ast.IfExp) else [argument]
        )
        for branch in branches:
            assert isinstance(branch, ast.Constant), f"{where}: name the code as a string"
            assert branch.value in known, f"{where}: {branch.value!r}"
            assert branch.value not in ("OK", "UNKNOWN"), where
