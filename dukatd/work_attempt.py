"""One attempt of a dispatch task on its way to a worker and back, and the states it goes
through; every change of state passes through `move`.

    WAITING ──a worker with credit takes it──▶ ASSIGNED ──its result, or the worker lost──▶ DONE
       ▲                                        │
       └── its worker drains before it is sent ─┘
    WAITING or ASSIGNED ──the engine stops waiting (job cancelled, timeout)──▶ GIVEN_UP

DONE and GIVEN_UP are final. `move` checks each change against `TRANSITIONS` and raises
`AttemptStateError` for one the table does not hold: that is a bug of the daemon, never a
worker's doing (what a worker sends is matched and checked before it moves anything).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Protocol

from dukat.actions import DispatchAction, DispatchResult
from dukat.core.context import TaskContext
from dukat.errors import AttemptStateError

__all__ = [
    "ASSIGNED",
    "DONE",
    "GIVEN_UP",
    "TRANSITIONS",
    "WAITING",
    "Attempt",
    "AttemptKey",
    "AttemptState",
    "Holder",
    "move",
]

AttemptKey = tuple[str, str, int]
"""(job_id, task_id, attempt): how an attempt is named on the wire, its fencing token."""


class AttemptState(enum.Enum):
    WAITING = "waiting"
    """On its queue, for a worker with credit."""
    ASSIGNED = "assigned"
    """Held by a worker session: to be sent, or sent and running there."""
    DONE = "done"
    """Its outcome is in: a result, or its worker was lost."""
    GIVEN_UP = "given up"
    """The engine stopped waiting for it; a result that still comes only frees its slot."""

    # By identity, in C: Enum's own hash is a Python call, and `move` runs twice an attempt.
    __hash__ = object.__hash__


WAITING, ASSIGNED, DONE, GIVEN_UP = AttemptState  # the states by their names, for short

TRANSITIONS: Mapping[AttemptState, frozenset[AttemptState]] = MappingProxyType(
    {
        WAITING: frozenset({ASSIGNED, GIVEN_UP}),
        ASSIGNED: frozenset({DONE, GIVEN_UP, WAITING}),
        DONE: frozenset(),
        GIVEN_UP: frozenset(),
    }
)
"""Each state, and the states an attempt may go to from it."""


class Holder(Protocol):
    """Who holds an ASSIGNED attempt: a worker's session (`dukatd.work_session`), which
    imports this module, so the attempt knows it by what it is asked to do."""

    def take_back(self, attempt: Attempt) -> None:
        """The daemon gave `attempt` up; tell the worker if it has it already."""
        ...


class Attempt:
    """One attempt of a dispatch task: what the engine awaits, and where it is."""

    __slots__ = ("action", "context", "deadline", "future", "key", "sent", "session", "state")

    def __init__(
        self, context: TaskContext, future: asyncio.Future[DispatchResult], deadline: float | None
    ) -> None:
        self.context = context
        self.action: DispatchAction = context.action
        self.key: AttemptKey = (context.job_id, context.task_id, context.attempt)
        self.future = future
        self.deadline = deadline
        """When its timeout runs out, on the hub's clock; None: no limit."""
        self.state = WAITING
        self.session: Holder | None = None
        """The session holding it while ASSIGNED."""
        self.sent = False
        """Its assignment went out on the session's stream (a give-up then sends a cancel)."""

    def __repr__(self) -> str:
        return f"<Attempt {'/'.join(map(str, self.key))} {self.state.name}>"


def move(attempt: Attempt, to: AttemptState) -> AttemptState:
    """Move `attempt` to state `to` and return the state it was in; AttemptStateError, and
    nothing changed, for a move `TRANSITIONS` does not allow."""
    state = attempt.state
    if to not in TRANSITIONS[state]:
        raise AttemptStateError(attempt.key, state.name, to.name)
    attempt.state = to
    return state
