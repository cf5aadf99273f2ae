"""The states of tasks and jobs, and which transitions between them are allowed.

A state machine is data: an enum of states and a table of allowed transitions. The scheduler
passes every change through one module that checks this table (`dukat.core._transitions`).
"""

from __future__ import annotations

import enum
from typing import TypeVar

__all__ = ["JobState", "TaskState", "TriggerRule"]


class TaskState(enum.Enum):
    """Where a task is in its life: PENDING → READY → RUNNING → a terminal state."""

    PENDING = "pending"  # upstream tasks have not finished yet
    READY = "ready"  # runnable: queued for a slot, resources or a breaker
    RUNNING = "running"  # an attempt is in progress
    RETRYING = "retrying"  # an attempt failed; waiting out the backoff before the next
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"  # an upstream task did not succeed

    # Members are singletons: hashing by identity keeps the scheduler's table lookups in C
    # (Enum's own __hash__ is Python code, and it runs several times per task).
    __hash__ = object.__hash__

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL_TASK_STATES


class JobState(enum.Enum):
    """A job is RUNNING until every task is terminal, then SUCCEEDED, FAILED or CANCELLED."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    __hash__ = object.__hash__

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL_JOB_STATES


class TriggerRule(enum.Enum):
    """When a task may run, given how its upstream tasks ended."""

    ALL_SUCCESS = "all_success"  # every upstream succeeded (the default)
    ALL_DONE = "all_done"  # every upstream is terminal, whatever the outcome (clean-up steps)


_TERMINAL_TASK_STATES = frozenset(
    {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED, TaskState.SKIPPED}
)
_TERMINAL_JOB_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})

_State = TypeVar("_State", TaskState, JobState)

_S = TaskState
TASK_TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    _S.PENDING: frozenset({_S.READY, _S.SKIPPED, _S.CANCELLED}),
    # READY → FAILED/RETRYING: refused by an open breaker without ever running.
    _S.READY: frozenset({_S.RUNNING, _S.FAILED, _S.RETRYING, _S.CANCELLED}),
    _S.RUNNING: frozenset({_S.SUCCEEDED, _S.FAILED, _S.RETRYING, _S.CANCELLED}),
    _S.RETRYING: frozenset({_S.READY, _S.CANCELLED}),
    _S.SUCCEEDED: frozenset(),
    _S.FAILED: frozenset(),
    _S.CANCELLED: frozenset(),
    _S.SKIPPED: frozenset(),
}

JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.RUNNING, JobState.CANCELLED}),
    JobState.RUNNING: frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


def _reachable(table: dict[_State, frozenset[_State]]) -> dict[_State, frozenset[_State]]:
    """Each state's successors through any number of allowed transitions (one or more)."""
    found = {}
    for start in table:
        seen: set[_State] = set()
        stack = list(table[start])
        while stack:
            state = stack.pop()
            if state not in seen:
                seen.add(state)
                stack.extend(table[state])
        found[start] = frozenset(seen)
    return found


TASK_REACHABLE = _reachable(TASK_TRANSITIONS)
"""Where a task may get to from each state through allowed transitions: what a record put
back as it was (a restart's, a rerun's carried task) is checked against."""
JOB_REACHABLE = _reachable(JOB_TRANSITIONS)
