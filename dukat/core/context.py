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
from contextvars import ContextVar
from typing import Any

__all__ = ["TaskContext", "current_task", "report_progress"]


class TaskContext:
    """The attempt being run: ids, the action, upstream results, and a way to report."""

    __slots__ = ("_loop", "_loop_thread", "_report", "_upstream", "action", "attempt", "job_id",
                 "labels", "task_id")

    def __init__(
        self,
        *,
        job_id: str,
        task_id: str,
        attempt: int,
        action: Any,
        labels: Mapping[str, str],
        upstream: Callable[[], Mapping[str, Any]],
        report: Callable[[str, Any], None],
    ) -> None:
        self.job_id = job_id
        self.task_id = task_id
        self.attempt = attempt
        self.action = action
        self.labels = labels
        self._upstream = upstream
        self._report = report
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    @property
    def upstream_results(self) -> Mapping[str, Any]:
        """Results of the upstream tasks that succeeded, by task id."""
        return self._upstream()

    def report_progress(self, fraction: float | None = None, message: str = "") -> None:
        """Say how far the task is (0.0 to 1.0) and/or what it is doing. Thread-safe."""
        if fraction is not None:
            if not 0.0 <= fraction <= 1.0:
                raise ValueError(f"progress fraction must be between 0 and 1, not {fraction!r}")
            fraction = float(fraction)
        self._send("progress", (fraction, str(message)))

    def output(self, stream: str, text: str) -> None:
        """Record a line the task wrote (`stdout` or `stderr`). Thread-safe."""
        self._send("output", (stream, text))

    def _send(self, kind: str, payload: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            self._report(kind, payload)
        else:
            self._loop.call_soon_threadsafe(self._report, kind, payload)

    def __repr__(self) -> str:
        return f"<TaskContext {self.job_id}/{self.task_id} attempt {self.attempt}>"


_current: ContextVar[TaskContext | None] = ContextVar("dukat_task", default=None)


def current_task() -> TaskContext:
    """The context of the task this code runs in; RuntimeError outside of a dukat task."""
    context = _current.get()
    if context is None:
        raise RuntimeError("current_task() is only available inside a task run by dukat")
    return context


def report_progress(fraction: float | None = None, message: str = "") -> None:
    """Report progress of the task this code runs in (see `TaskContext.report_progress`)."""
    current_task().report_progress(fraction, message)
