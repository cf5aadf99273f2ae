"""The scheduler's bookkeeping for one job and one task while they run.

Plain slotted records with no behaviour beyond describing themselves: the decisions live in
the scheduler's rooms (see `dukat.core.scheduler`). Each record has one status field
(`state`), changed only by `dukat.core._transitions`; the other fields carry the data of that
state (a RUNNING task has its slot, a RETRYING one its timer, ...).

The records sit below the task's context and its runner: a task's `runner` and `admit` are a
`runners.Runner`'s, typed loosely here, since a runner takes a `TaskContext`, itself a view
of these records.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from dukat.core._gc import gc_paused, promote_new
from dukat.core._ready import ReadyQueue
from dukat.core._task_states import FAILED, PENDING, SUCCEEDED
from dukat.core.events import EventLog
from dukat.core.results import JobSnapshot, TaskResult, TaskStatus, count_states
from dukat.core.states import JobState, TaskState, TriggerRule

if TYPE_CHECKING:
    from collections.abc import Callable

    from dukat.core.breaker import CircuitBreaker
    from dukat.core.clock import TimerHandle
    from dukat.core.spec import JobSpec, TaskSpec

UNLIMITED = sys.maxsize

# Why a RUNNING task was asked to stop (`TaskRun.stop_reason`).
TIMED_OUT = "timeout"
CANCELLED = "cancelled"

# One per task at the end of a job: built without NamedTuple's __new__, which is Python code.
_new_result = partial(tuple.__new__, TaskResult)


class Slot:
    """One of the scheduler's execution slots: an asyncio task running attempts in turn.

    (A remote process serving dispatch tasks is a *worker*; this is not one.)"""

    __slots__ = ("cancel_sent", "task")

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None
        self.cancel_sent = False  # we cancelled the task to stop that attempt


class TaskRun:
    __slots__ = (
        "admission",
        "admit",
        "attempts",
        "breaker",
        "dependents",
        "error",
        "finished_at",
        "gated",
        "holds_resources",
        "id",
        "in_flight",
        "interruptions",
        "job",
        "message",
        "permit",
        "reservation",
        "result",
        "runner",
        "said_waiting",
        "slot",
        "spec",
        "started_at",
        "state",
        "stop_reason",
        "timer",
        "waiting_on",
    )

    def __init__(
        self,
        spec: TaskSpec,
        job: JobRun,
        runner: Any,
        breaker: CircuitBreaker | None,
        admit: Callable[[Any], asyncio.Future[Any] | None] | None = None,
    ) -> None:
        self.spec = spec
        self.id = spec.id
        self.job: JobRun | None = job  # None once the job is dropped: see Retention.drop
        self.runner = runner  # a `runners.Runner`
        self.admit = admit  # the runner's optional admission hook, looked up once per runner
        # Something to pass before a slot runs it (admission, resources): one test when picked.
        self.gated = admit is not None or bool(spec.resources)
        self.breaker = breaker
        self.state = PENDING
        self.attempts = 0
        self.interruptions = 0  # of those attempts, lost through no fault of the task
        self.waiting_on = len(spec.dependencies)  # upstream tasks not yet terminal
        # A list from its first dependent on (see build_job); a task without any (the last
        # of a DAG, often most of its tasks) shares the empty tuple instead of a list each.
        self.dependents: list[TaskRun] | tuple[()] = ()
        # READY: where the task waits once dispatched
        self.in_flight = False  # dispatched: counts against the job's limit
        self.admission: asyncio.Future[Any] | None = None  # waiting for its runner to admit it
        self.reservation: asyncio.Future[Any] | None = None  # waiting for resources
        self.holds_resources = False
        self.permit: int | None = None  # a breaker's permission for one call (its generation)
        self.said_waiting = False  # its TaskWaiting event is out (Reporter.waiting)
        # RUNNING
        self.slot: Slot | None = None
        self.stop_reason: str | None = None  # TIMED_OUT or CANCELLED once asked to stop
        # RETRYING: the timer that brings it back
        self.timer: TimerHandle | None = None
        # outcome: `result` is the value of the attempt that SUCCEEDED, or the TaskFailure of
        # the one that FAILED (see Endings.terminate)
        self.result: Any = None
        self.error: BaseException | None = None
        self.message = ""
        self.started_at: float | None = None
        self.finished_at: float | None = None

    # Rarely needed, so derived rather than stored: every stored field costs every task.

    @property
    def pool_key(self) -> str:
        """The name this task holds resources under in the (shared) pool."""
        return f"{self.job.id}/{self.id}"

    @property
    def all_done(self) -> bool:
        return self.spec.trigger_rule is TriggerRule.ALL_DONE

    def upstream_results(self) -> Mapping[str, Any]:
        tasks = self.job.tasks
        return {
            dep: tasks[dep].result
            for dep in self.spec.dependencies
            if tasks[dep].state is TaskState.SUCCEEDED
        }

    def status(
        self, progress_of: Mapping[str, tuple[float | None, str]], carried_from: str = ""
    ) -> TaskStatus:
        """The task now; `progress_of`: its job's last progress report of each task;
        `carried_from`: the job a rerun carried it over from, if it did."""
        succeeded = self.state is TaskState.SUCCEEDED
        failed = self.state is FAILED
        progress, progress_message = progress_of.get(self.id, (None, ""))
        return TaskStatus(
            id=self.id,
            state=self.state,
            attempts=self.attempts,
            error="" if succeeded else self.message,
            started_at=self.started_at,
            finished_at=self.finished_at,
            progress=progress,
            progress_message=progress_message,
            description=self.spec.description,
            result=self.result if succeeded else None,
            failure=self.result if failed else None,
            interruptions=self.interruptions,
            carried_from=carried_from,
        )

    def outcome(self) -> TaskResult:
        state = self.state
        return _new_result(
            (
                self.id,
                state,
                self.result if state is SUCCEEDED else None,
                self.error if state is FAILED else None,
                self.attempts,
                self.started_at,
                self.finished_at,
                self.message,
                self.interruptions,
            )
        )

    def __repr__(self) -> str:
        job_id = "(dropped)" if self.job is None else self.job.id
        return f"<TaskRun {job_id}/{self.id} {self.state.name} attempt {self.attempts}>"


class JobRun:
    __slots__ = (
        "active",
        "breakers",
        "cancel_reason",
        "cancel_requested",
        "carried",
        "counts",
        "created_at",
        "done",
        "finished_at",
        "gc_hold",
        "heap_priority",
        "heap_token",
        "id",
        "in_heap",
        "labels",
        "limit",
        "log",
        "message",
        "order",
        "progress",
        "ready",
        "remaining",
        "sequence",
        "spec",
        "state",
        "tasks",
        "vpass",
    )

    def __init__(
        self,
        job_id: str,
        spec: JobSpec,
        order: int,
        created_at: float,
        log_limit: int,
        held: bool = False,
    ) -> None:
        self.id = job_id
        self.spec = spec
        self.labels = dict(spec.labels)
        self.state = JobState.PENDING
        self.order = order  # arrival among jobs: the tie-breaker of fair share
        self.tasks: dict[str, TaskRun] = {}
        self.ready: ReadyQueue[TaskRun] = ReadyQueue()
        self.limit = spec.max_concurrency or UNLIMITED
        self.active = 0  # dispatched tasks: waiting for resources, or running
        self.remaining = 0  # tasks not yet terminal
        self.counts = dict.fromkeys(TaskState, 0)
        self.progress: dict[str, tuple[float | None, str]] = {}  # last report of each task
        self.cancel_requested = False
        self.cancel_reason = ""  # the first reason given to cancel any of it
        self.message = ""
        self.log = EventLog(job_id, log_limit, held=held)
        self.sequence = 0
        self.done: asyncio.Future[None] | None = None
        self.created_at = created_at
        self.finished_at: float | None = None
        # fair share: the job's virtual time and its entry in the scheduler's heap of jobs
        self.vpass = 0
        self.heap_token = 0
        self.heap_priority = 0
        self.in_heap = False
        self.gc_hold: Any = None  # a big job keeps the collector off its records while live
        self.breakers: tuple[str, ...] = ()  # claimed from the registry while live
        # A rerun's tasks carried over from the job it reruns: task id -> that job's id.
        self.carried: dict[str, str] = {}

    async def finished(self) -> None:
        """Return once the job is in a terminal state."""
        if not self.state.is_terminal:
            if self.done is None:
                self.done = asyncio.get_running_loop().create_future()
            await asyncio.shield(self.done)

    def outcomes(self, *, big: bool) -> dict[str, TaskResult]:
        """Every task's outcome, by id; `big`: many, long-lived (see `_gc.promote_new`)."""
        outcome = TaskRun.outcome
        with gc_paused(big):
            results = {task_id: outcome(run) for task_id, run in self.tasks.items()}
            if big:
                promote_new()
        return results

    def snapshot(self, *, with_tasks: bool = True) -> JobSnapshot:
        """The job now; without its tasks (a listing), it still counts them by state."""
        return JobSnapshot(
            job_id=self.id,
            state=self.state,
            tasks=self._statuses() if with_tasks else (),
            labels=dict(self.labels),
            created_at=self.created_at,
            finished_at=self.finished_at,
            last_sequence=self.sequence,
            message=self.message,
            task_counts=self._counts(),
        )

    def _counts(self) -> dict[TaskState, int]:
        # With every task ended, `counts` (kept as each one ended) is the whole answer: a
        # listing of finished jobs then walks none of their tasks.
        return dict(self.counts) if not self.remaining else count_states(self.tasks.values())

    def _statuses(self) -> tuple[TaskStatus, ...]:
        progress, carried = self.progress, self.carried
        if not carried:
            return tuple(run.status(progress) for run in self.tasks.values())
        return tuple(run.status(progress, carried.get(run.id, "")) for run in self.tasks.values())

    def __repr__(self) -> str:
        return (
            f"<JobRun {self.id} {self.state.name} tasks:{len(self.tasks)} "
            f"remaining:{self.remaining} active:{self.active}>"
        )
