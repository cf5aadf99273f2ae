"""What the engine reports back: a task's result, a task's status (and why it failed), a
snapshot of a job."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from dukat.core._task_states import SUCCEEDED
from dukat.core.states import JobState, TaskState
from dukat.errors import TaskFailedRemotely, TaskProcessError

__all__ = ["JobSnapshot", "TaskFailure", "TaskResult", "TaskStatus", "count_states"]


class TaskResult(NamedTuple):
    """How a task ended, as `ParallelTaskExecutor.execute_all()` returns it.

    Immutable; a NamedTuple because one is built per task (a quarter of a dataclass's cost).
    """

    task_id: str
    state: TaskState
    result: Any = None
    """The return value of the last attempt, when it succeeded."""
    error: BaseException | None = None
    """The exception of the last attempt, when the task FAILED."""
    attempts: int = 0
    """Attempts started, the interrupted ones included."""
    started_at: float | None = None
    """Wall-clock start of the first attempt (seconds since the epoch)."""
    finished_at: float | None = None
    message: str = ""
    """Why the task ended as it did, in words (`upstream 'fetch' failed`, ...)."""
    interruptions: int = 0
    """Of `attempts`, those lost through no fault of the task (`TaskInterruptedError`: its
    worker left, the daemon restarted); they do not count against its retry policy."""

    @property
    def succeeded(self) -> bool:
        return self.state is SUCCEEDED

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


@dataclass(frozen=True, slots=True)
class TaskFailure:
    """Why a task FAILED, as data: its last attempt's error where the exception object cannot
    go (the wire, the journal, another process).

    `type` names the error: the exception's class (`TaskProcessError`, `TaskTimeoutError`,
    `ValueError`, ...) or, for a dispatch task, the kind its worker gave (may be empty); and
    `message` gives its words, without the type. An exec task's process that ran leaves its
    evidence too: `exit_code` or `signal`, and the tails of `stdout` and `stderr` (the last
    `--output-tail-bytes` of each, as a success's `ExecResult` has them).
    """

    type: str
    message: str
    exit_code: int | None = None
    signal: int | None = None
    stdout: bytes = b""
    stderr: bytes = b""

    @classmethod
    def of(cls, error: BaseException) -> TaskFailure:
        """The failure an attempt's exception stands for."""
        if isinstance(error, TaskProcessError):
            return cls(
                type(error).__name__,
                str(error),
                error.exit_code,
                error.signal,
                error.stdout_tail,
                error.stderr_tail,
            )
        if isinstance(error, TaskFailedRemotely):
            return cls(error.type, error.detail)
        return cls(type(error).__name__, str(error))

    def as_error(self) -> TaskFailedRemotely:
        """An exception for the failure, in a process that does not have the original: a
        `TaskFailedRemotely` with its `type` and message."""
        return TaskFailedRemotely(self.message, type=self.type)


class TaskStatus(NamedTuple):
    """A task at one moment: what `GetJob` and snapshots show (one per task, hence a tuple)."""

    id: str
    state: TaskState
    attempts: int = 0
    error: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    progress: float | None = None
    progress_message: str = ""
    description: str = ""
    result: Any = None
    """The return value of the last attempt, when the task SUCCEEDED (as `TaskResult.result`):
    a `dukat.actions.DispatchResult` or `ExecResult` for the daemon's tasks."""
    interruptions: int = 0
    """Of `attempts`, those interrupted (as `TaskResult.interruptions`)."""
    failure: TaskFailure | None = None
    """Why the last attempt failed, when the task FAILED (`error` says it in words)."""
    waiting_for: str = ""
    """What a READY task waits for when it may never come by itself, in words: "a worker for
    queue 'q' (none connected)" (the daemon's GetJob says so); empty otherwise."""
    waiting_for_queue: str = ""
    """The dispatch queue `waiting_for` is about; empty when it is."""
    carried_from: str = ""
    """The job this task's outcome was carried over from, when its job is a rerun
    (`Scheduler.submit(..., rerun_of=)`) and the task had SUCCEEDED there: it did not run in
    this job, and its attempts, times and result are that job's. Empty otherwise."""


@dataclass(frozen=True, slots=True)
class JobSnapshot:
    """A job at one moment, with every task (or none: a listing leaves them out, and
    `task_counts` still says how they stand)."""

    job_id: str
    state: JobState
    tasks: tuple[TaskStatus, ...]
    labels: Mapping[str, str] = field(default_factory=dict)
    created_at: float | None = None
    finished_at: float | None = None
    last_sequence: int = 0
    message: str = ""
    task_counts: Mapping[TaskState, int] = field(default_factory=dict)
    """How many tasks are in each state, every state present; counted from `tasks` when
    not given."""

    def __post_init__(self) -> None:
        if not self.task_counts:
            object.__setattr__(self, "task_counts", count_states(self.tasks))

    def task(self, task_id: str) -> TaskStatus:
        for status in self.tasks:
            if status.id == task_id:
                return status
        raise KeyError(f"job {self.job_id!r} has no task {task_id!r}")

    def count(self, state: TaskState) -> int:
        return self.task_counts.get(state, 0)

    @property
    def total(self) -> int:
        """The number of tasks in the job."""
        return sum(self.task_counts.values())


def count_states(tasks: Iterable[Any]) -> dict[TaskState, int]:
    """How many of `tasks` (anything with a `state`) are in each state, every state present."""
    counts = dict.fromkeys(TaskState, 0)
    for task in tasks:
        counts[task.state] += 1
    return counts
