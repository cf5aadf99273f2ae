"""What a worker's handler is given: one attempt of a dispatch task, as frozen data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from dukat import convert
from dukat.core.states import TaskState
from dukat.v1 import work_pb2

__all__ = ["DispatchTask", "UpstreamResult"]

ProgressSink = Callable[["DispatchTask", "float | None", str], None]


@dataclass(frozen=True, slots=True)
class UpstreamResult:
    """How one dependency of the task ended."""

    task_id: str
    state: TaskState
    """Its terminal state (not SUCCEEDED only under trigger rule ALL_DONE)."""
    payload: bytes = b""
    """What it returned, when it was a dispatch task that succeeded."""
    content_type: str = ""
    error: str = ""
    """Why it did not succeed, in words."""


@dataclass(frozen=True, slots=True)
class DispatchTask:
    """One attempt of a dispatch task given to this worker; `attempt` is its fencing token."""

    job_id: str
    task_id: str
    attempt: int
    queue: str
    payload: bytes
    content_type: str = ""
    upstream_results: tuple[UpstreamResult, ...] = ()
    """How each dependency ended, in the order of the task's dependencies."""
    timeout: float | None = None
    """Seconds this attempt may run (the daemon cancels it after); None: no limit."""
    _progress: ProgressSink | None = field(default=None, repr=False, compare=False)

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.job_id, self.task_id, self.attempt)

    def report_progress(self, fraction: float | None = None, message: str = "") -> None:
        """Say how far the attempt is (0.0 to 1.0) and/or what it is doing.

        Batched: sent with the worker's next update, the latest report per attempt only.
        """
        if fraction is not None and not 0.0 <= fraction <= 1.0:
            raise ValueError(f"progress fraction must be between 0 and 1, not {fraction!r}")
        if self._progress is not None:
            self._progress(self, None if fraction is None else float(fraction), str(message))

    @classmethod
    def from_proto(
        cls, assignment: work_pb2.TaskAssignment, progress: ProgressSink | None = None
    ) -> DispatchTask:
        timeout = None
        if assignment.HasField("timeout"):
            timeout = assignment.timeout.seconds + assignment.timeout.nanos / 1e9
        return cls(
            job_id=assignment.job_id,
            task_id=assignment.task_id,
            attempt=assignment.attempt,
            queue=assignment.queue,
            payload=assignment.payload,
            content_type=assignment.content_type,
            upstream_results=tuple(
                UpstreamResult(
                    task_id=upstream.task_id,
                    state=convert.TASK_STATES.from_proto(upstream.state, "state"),
                    payload=upstream.payload,
                    content_type=upstream.content_type,
                    error=upstream.error,
                )
                for upstream in assignment.upstream_results
            ),
            timeout=timeout,
            _progress=progress,
        )
