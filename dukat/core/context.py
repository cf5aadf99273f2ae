"""What a running task can see of itself and say about its progress.

The scheduler sets a context variable around every attempt, so code inside a task (and any
helper it calls, in the same task or a thread started by it) can report progress without
having a context object passed in:

    from dukat.core import report_progress
    report_progress(0.5, "halfway")
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from typing import Any, Protocol

from dukat.core._runs import JobRun, TaskRun
from dukat.core.results import TaskResult

__all__ = [
    "AttemptReporter",
    "TaskContext",
    "current_task",
    "report_progress",
    "reset_current_task",
    "set_current_task",
]


class AttemptReporter(Protocol):
    """All a task's context holds of the engine: where its reports go.

    Reports of an attempt that is over (the task moved on) are dropped. `report` and
    `waiting` are called on `loop`, whose thread is `loop_thread`: a report from another
    thread is handed to the loop first."""

    loop: asyncio.AbstractEventLoop | None
    loop_thread: int

    def report(self, run: TaskRun, attempt: int, kind: str, payload: Any) -> None:
        """Progress (`kind` "progress", payload `(fraction, message)`) or a line of output
        ("output", `(stream, text)`) from inside an attempt."""
        ...

    def waiting(self, run: TaskRun, attempt: int, waiting_for: str, queue: str) -> None:
        """The READY task waits for something that may never come by itself."""
        ...


class TaskContext:
    """One attempt of a task: its ids, its action, upstream results, and a way to report.

    Made for every attempt, so it is only a view over the scheduler's record of the task,
    and a reporter to say things back (`AttemptReporter`), never the scheduler itself.
    """

    __slots__ = ("_reporter", "_run", "action", "attempt")

    def __init__(self, reporter: AttemptReporter, run: TaskRun, attempt: int) -> None:
        self._reporter = reporter
        self._run = run
        self.attempt = attempt
        self.action: Any = run.spec.action

    @property
    def job_id(self) -> str:
        return self._job().id

    @property
    def task_id(self) -> str:
        return self._run.id

    @property
    def labels(self) -> Mapping[str, str]:
        return self._run.spec.labels

    @property
    def upstream_results(self) -> Mapping[str, Any]:
        """Results of the upstream tasks that succeeded, by task id."""
        self._job()  # still there
        return self._run.upstream_results()

    @property
    def upstream_outcomes(self) -> tuple[TaskResult, ...]:
        """How each dependency ended, in the order of the task's `dependencies`.

        Unlike `upstream_results`, dependencies that did not succeed are there too (a task
        with trigger rule ALL_DONE runs after them): a remote worker is told about each.
        """
        run = self._run
        tasks = self._job().tasks
        return tuple(tasks[dep].outcome() for dep in run.spec.dependencies)

    def _job(self) -> JobRun:
        job = self._run.job
        if job is None:
            raise RuntimeError(
                f"task {self._run.id!r}: its job has ended and been dropped; a task's context "
                "is for use during its attempt"
            )
        return job

    @property
    def timeout(self) -> float | None:
        """Seconds this attempt may run (the task's `timeout`); None: no limit."""
        return self._run.spec.timeout

    def report_progress(self, fraction: float | None = None, message: str = "") -> None:
        """Say how far the task is (0.0 to 1.0) and/or what it is doing. Thread-safe."""
        if fraction is not None:
            if not 0.0 <= fraction <= 1.0:
                raise ValueError(f"progress fraction must be between 0 and 1, not {fraction!r}")
            fraction = float(fraction)
        self._send("progress", (fraction, str(message)))

    def report_waiting(self, waiting_for: str, queue: str = "") -> None:
        """Say what this task, READY, waits for when it may never come by itself (a runner's
        `admit` does: "a worker for queue 'q' (none connected)"). Once per task: a
        `TaskWaiting` event; ignored once the task has moved on. Call from the loop."""
        self._reporter.waiting(self._run, self.attempt, waiting_for, queue)

    def output(self, stream: str, text: str) -> None:
        """Record a line the task wrote (`stdout` or `stderr`). Thread-safe."""
        self._send("output", (stream, text))

    def _send(self, kind: str, payload: Any) -> None:
        reporter = self._reporter
        if threading.get_ident() == reporter.loop_thread:
            reporter.report(self._run, self.attempt, kind, payload)
        else:
            reporter.loop.call_soon_threadsafe(  # type: ignore[union-attr]  # set by then
                reporter.report, self._run, self.attempt, kind, payload
            )

    def __repr__(self) -> str:
        job = self._run.job
        job_id = "(dropped)" if job is None else job.id
        return f"<TaskContext {job_id}/{self.task_id} attempt {self.attempt}>"


_current: ContextVar[TaskContext | None] = ContextVar("dukat_task", default=None)

# The variable's own methods, not functions around them: the engine sets and resets it
# around every attempt.
set_current_task: Callable[[TaskContext | None], Token[TaskContext | None]] = _current.set
"""Make `context` what `current_task()` returns here (in this context, and the tasks and
threads it starts), until `reset_current_task(token)` with the token this returns. The engine
does it around every attempt; so does code that runs a task's callable itself (the client's
remote assistant)."""
reset_current_task: Callable[[Token[TaskContext | None]], None] = _current.reset
"""Put back what `current_task()` returned before the `set_current_task` that gave `token`."""


def current_task() -> TaskContext:
    """The context of the task this code runs in; RuntimeError outside of a dukat task."""
    context = _current.get()
    if context is None:
        raise RuntimeError("current_task() is only available inside a task run by dukat")
    return context


def report_progress(fraction: float | None = None, message: str = "") -> None:
    """Report progress of the task this code runs in (see `TaskContext.report_progress`)."""
    current_task().report_progress(fraction, message)
