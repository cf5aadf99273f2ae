"""An attempt's states and the one function that moves it between them."""

from __future__ import annotations

import ast
import asyncio
import itertools
from pathlib import Path
from types import SimpleNamespace

import pytest

from dukat.actions import DispatchAction
from dukat.errors import AttemptStateError
from dukatd import work_attempt
from dukatd.work_attempt import TRANSITIONS, Attempt, AttemptState, move

ALLOWED = {
    (AttemptState.WAITING, AttemptState.ASSIGNED),
    (AttemptState.WAITING, AttemptState.GIVEN_UP),
    (AttemptState.ASSIGNED, AttemptState.DONE),
    (AttemptState.ASSIGNED, AttemptState.GIVEN_UP),
    (AttemptState.ASSIGNED, AttemptState.WAITING),  # drained before it was sent
}


def attempt_in(state: AttemptState) -> Attempt:
    context = SimpleNamespace(job_id="j", task_id="t", attempt=2, action=DispatchAction("q"))
    future = asyncio.get_running_loop().create_future()
    attempt = Attempt(context, future, None)  # type: ignore[arg-type]
    attempt.state = state  # set as a test's starting point, not a move
    return attempt


def test_the_table_holds_exactly_the_documented_moves() -> None:
    assert set(TRANSITIONS) == set(AttemptState)
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == ALLOWED
    assert not TRANSITIONS[AttemptState.DONE] and not TRANSITIONS[AttemptState.GIVEN_UP]


async def test_a_new_attempt_waits() -> None:
    context = SimpleNamespace(job_id="j", task_id="t", attempt=2, action=DispatchAction("q"))
    attempt = Attempt(context, asyncio.get_running_loop().create_future(), None)  # type: ignore[arg-type]
    assert attempt.state is AttemptState.WAITING
    assert attempt.key == ("j", "t", 2)
    assert repr(attempt) == "<Attempt j/t/2 WAITING>"


@pytest.mark.parametrize(
    ("state", "to"), list(itertools.product(AttemptState, repeat=2)), ids=lambda s: s.name
)
async def test_move_makes_an_allowed_move_and_refuses_any_other_changing_nothing(
    state: AttemptState, to: AttemptState
) -> None:
    attempt = attempt_in(state)
    if (state, to) in ALLOWED:
        assert move(attempt, to) is state
        assert attempt.state is to
    else:
        with pytest.raises(AttemptStateError) as refused:
            move(attempt, to)
        assert attempt.state is state
        assert refused.value.key == ("j", "t", 2)
        assert str(refused.value) == (
            f"attempt 2 of task 't' (job 'j') cannot go from {state.name} to {to.name}"
        )


def test_no_dispatch_module_sets_an_attempt_state_but_through_move() -> None:
    # `move` is the one place a state changes: no `x.state = ...` anywhere else in dukatd.
    package = Path(work_attempt.__file__).parent
    setters = [
        f"{path.name}:{node.lineno}"
        for path in sorted(package.glob("*.py"))
        if path.name != "work_attempt.py"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign))
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Attribute) and target.attr == "state"
    ]
    assert setters == []
