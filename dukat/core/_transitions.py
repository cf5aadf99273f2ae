"""The one place a task or a job changes state: check the table, swap, record the event.

Every change of a record's `state` goes through here (`tests/core/test_layers.py` checks no
other module assigns one). `Transitions.task` and `Transitions.job` are the changes that
happen, each an event in the job's log and a call to every listener; `put_back` and
`put_back_job` are the silent ones of a record brought back as it was (a restart's job, a
rerun's carried task), whose events are in a log already or told apart: they check that the
table could have taken the record there, and record nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dukat.core._runs import JobRun, TaskRun
from dukat.core.events import JobStateChanged, TaskStateChanged
from dukat.core.states import (
    JOB_REACHABLE,
    JOB_TRANSITIONS,
    TASK_REACHABLE,
    TASK_TRANSITIONS,
    JobState,
    TaskState,
)

__all__ = ["RecordListener", "Transitions", "put_back", "put_back_job"]

RecordListener = Callable[[str, tuple[Any, ...]], None]
"""`listener(job_id, record)`: an event in its compact form, `(EventClass, sequence, time,
*the class's own fields)` (see `EventLog`), for listeners on the hot path (metrics)."""


class Transitions:
    """State changes and the events they make, told to the job's log and to `listeners`."""

    __slots__ = ("_wall", "listeners")

    def __init__(self, wall: Callable[[], float]) -> None:
        self._wall = wall
        self.listeners: list[RecordListener] = []  # event listeners too, adapted

    def record(self, job: JobRun, record: tuple[Any, ...]) -> None:
        """Append `(EventClass, sequence, time, *fields)` to the job's log; tell listeners."""
        job.log.append(record)
        for listener in self.listeners:
            listener(job.id, record)

    def task(
        self, run: TaskRun, to: TaskState, message: str = "", moment: float | None = None
    ) -> None:
        """The one place a task changes state: check the table, swap, record the event.

        `moment`: the time the task keeps for it (its start or end), to be the event's too:
        a journal keeps the event's, and a restart must show the same time as before it."""
        if to not in TASK_TRANSITIONS[run.state]:
            raise RuntimeError(f"task {run.id!r}: {run.state.name} -> {to.name} is not allowed")
        run.state = to
        job = run.job
        job.sequence = sequence = job.sequence + 1
        if moment is None:
            moment = self._wall()
        record = (TaskStateChanged, sequence, moment, run.id, to, run.attempts, message)
        log = job.log
        # EventLog.append, inline: three of these happen for every task. The record is as
        # wide as the log's (RECORD_WIDTH), so it needs no padding.
        log.items.extend(record)
        if sequence >= log.full_at or log.waiters:
            log.appended()
        for listener in self.listeners:  # record()'s work, inline too
            listener(job.id, record)

    def job(
        self, job: JobRun, to: JobState, message: str = "", moment: float | None = None
    ) -> None:
        """The one place a job changes state, as `task` for a task."""
        if to not in JOB_TRANSITIONS[job.state]:
            raise RuntimeError(f"job {job.id!r}: {job.state.name} -> {to.name} is not allowed")
        job.state = to
        job.message = message
        job.sequence += 1
        moment = self._wall() if moment is None else moment
        self.record(job, (JobStateChanged, job.sequence, moment, to, message))

    def __repr__(self) -> str:
        return f"<Transitions listeners:{len(self.listeners)}>"


def put_back(run: TaskRun, to: TaskState) -> None:
    """Put a task back in the state it had reached (a restart's, a rerun's carried task),
    without an event: RuntimeError unless the table leads there from where it is."""
    if to not in TASK_REACHABLE[run.state]:
        raise RuntimeError(f"task {run.id!r}: {run.state.name} cannot lead to {to.name}")
    run.state = to


def put_back_job(job: JobRun, to: JobState) -> None:
    """Put a job back in the state it had reached, without an event, as `put_back`."""
    if to not in JOB_REACHABLE[job.state]:
        raise RuntimeError(f"job {job.id!r}: {job.state.name} cannot lead to {to.name}")
    job.state = to
