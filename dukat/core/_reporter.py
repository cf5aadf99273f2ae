"""Where a task's context sends what it says: progress, output lines, what it waits for.

The narrow side of the engine a `TaskContext` holds (`context.AttemptReporter`): it reaches
the job's log through `Transitions.record` and nothing else of the scheduler.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from dukat.core._runs import JobRun, TaskRun
from dukat.core._task_states import READY, RUNNING
from dukat.core.events import Event, TaskOutput, TaskProgress, TaskWaiting

__all__ = ["Reporter"]


class Reporter:
    """Reports from inside attempts, as events of their jobs (`context.AttemptReporter`)."""

    __slots__ = ("_record", "_wall", "loop", "loop_thread")

    def __init__(
        self,
        record: Callable[[JobRun, tuple[Any, ...]], None],
        wall: Callable[[], float],
    ) -> None:
        self._record = record
        self._wall = wall
        self.loop: asyncio.AbstractEventLoop | None = None  # the loop the tasks run on
        self.loop_thread = 0  # and its thread, to tell a report from a worker thread

    def report(self, run: TaskRun, attempt: int, kind: str, payload: Any) -> None:
        """Progress and output from inside an attempt (ignored once the attempt is over)."""
        if run.state is not RUNNING or run.attempts != attempt:
            return
        job = run.job
        job.sequence += 1
        if kind == "progress":
            job.progress[run.id] = payload
            kind_of_event: type[Event] = TaskProgress
        else:
            kind_of_event = TaskOutput
        self._record(job, (kind_of_event, job.sequence, self._wall(), run.id, *payload))

    def waiting(self, run: TaskRun, attempt: int, waiting_for: str, queue: str = "") -> None:
        """A READY task waits for something that may never come by itself (its runner says
        so, from `admit`): a `TaskWaiting` event, once per task."""
        if run.state is not READY or run.attempts + 1 != attempt or run.said_waiting:
            return
        run.said_waiting = True
        job = run.job
        job.sequence += 1
        self._record(job, (TaskWaiting, job.sequence, self._wall(), run.id, waiting_for, queue))

    def __repr__(self) -> str:
        return f"<Reporter loop_thread:{self.loop_thread}>"
