"""The AsyncAssistant's remote mode: the same task dicts, run through a dukatd daemon.

The job goes to the daemon as dispatch tasks on a private queue (a fresh uuid) and this
process serves that queue with `client.worker`: the daemon schedules (dependencies,
resources, breakers, retries, timeouts, fair share with every other client), the callables
run here. Their return values and exceptions never leave the process: they are kept in a
local table by batch, task id and attempt, and the daemon is sent only a marker, the
attempt's number, so `execute_tasks_in_parallel` returns the very objects embedded mode
would. The marker comes back to a dependent with its upstream's outcome, and says which
attempt's value is the upstream's: that is how `current_task().upstream_results` gives the
upstream tasks' Python results here as in embedded mode (`_RemoteContext`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dukat.actions import DispatchAction, DispatchTask, UpstreamResult
from dukat.client._client import Client, connect
from dukat.client._jobs import JobHandle
from dukat.core.async_assistant import task_from_dict
from dukat.core.context import reset_current_task, set_current_task
from dukat.core.parallel_executor import Task
from dukat.core.progress import ProgressTracker
from dukat.core.results import TaskFailure, TaskResult
from dukat.core.retry import RetryPolicy
from dukat.core.runners import CallableAction, InProcessRunner
from dukat.core.spec import JobSpec, TaskSpec
from dukat.core.states import TaskState
from dukat.errors import DaemonNotFoundError, TaskFailedRemotely, TaskTimeoutError

__all__ = ["RemoteAssistant"]

Outcome = tuple[Any, BaseException | None]

_log = logging.getLogger(__name__)
_CANCEL_WITHIN = 5.0  # seconds a cancelled call spends on cancelling its job, at most
_RUNNER = InProcessRunner()  # runs a callable as embedded mode does


@dataclass(slots=True)
class _Ran:
    """What ran here of one task of a batch: each attempt's outcome, and when."""

    outcomes: dict[int, Outcome] = field(default_factory=dict)
    started_at: float | None = None  # the first attempt's start
    finished_at: float | None = None  # the last attempt's end

    @property
    def attempts(self) -> int:
        return max(self.outcomes, default=0)


@dataclass(slots=True)
class _Batch:
    """One `execute_tasks_in_parallel` call: its tasks as given, and what ran of them."""

    specs: dict[str, TaskSpec] = field(default_factory=dict)
    actions: dict[str, CallableAction] = field(default_factory=dict)
    policies: dict[str, RetryPolicy | None] = field(default_factory=dict)
    ran: dict[str, _Ran] = field(default_factory=dict)


class RemoteAssistant:
    """`AsyncAssistant` over a daemon; made by `get_async_assistant(address=...)`."""

    def __init__(
        self,
        address: str,
        *,
        model_name: str | None = None,
        max_parallel_tasks: int = 5,
        token: str | None = None,
    ) -> None:
        self.address = address
        self.model_name = model_name
        self.max_parallel_tasks = max_parallel_tasks
        self._token = token
        self.queue = f"assistant-{uuid.uuid4().hex}"
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Client | None = None
        self._batches: dict[str, _Batch] = {}
        # Whether an exception earns a retry is the task's RetryPolicy's call, made here
        # where the exception is; the worker asks by exception identity.
        self._verdicts: dict[int, bool] = {}
        self._trackers: list[ProgressTracker] = []  # to follow the next batch's job
        self._handle: JobHandle | None = None  # the job of the batch running now

    async def open(self) -> RemoteAssistant:
        if self._client is not None:
            return self
        stack = contextlib.AsyncExitStack()
        self._client = await stack.enter_async_context(connect(self.address, token=self._token))
        worker = self._client.worker(
            self.queue,
            self._run,
            self.max_parallel_tasks,
            retryable=lambda error: self._verdicts.pop(id(error), True),
        )
        await stack.enter_async_context(worker)
        self._stack = stack
        return self

    async def execute_tasks_in_parallel(
        self, tasks: Iterable[Mapping[str, Any]], *, fail_fast: bool = False
    ) -> dict[str, TaskResult]:
        """Run the tasks as one job on the daemon; results by task id, as embedded mode."""
        await self.open()
        assert self._client is not None
        batch = uuid.uuid4().hex
        local = _Batch()
        for index, description in enumerate(tasks):
            task, options = task_from_dict(index, description)
            local.actions[task.task_id] = CallableAction(task.func, task.args, task.kwargs)
            local.policies[task.task_id] = options.get("retry")
            local.specs[task.task_id] = self._spec(batch, task, options)
        self._batches[batch] = local
        labels = {"model": self.model_name} if self.model_name else {}
        job = JobSpec(tasks=tuple(local.specs.values()), labels=labels, fail_fast=fail_fast)
        client = self._client
        try:
            handle: JobHandle | None = None
            try:
                handle = self._handle = await client.submit(job, request_id=batch)
                trackers, self._trackers = self._trackers, []
                for tracker in trackers:
                    handle.track(tracker)
                snapshot = await handle.wait()
            except asyncio.CancelledError:
                await _cancel_for_the_caller(handle or client.submit(job, request_id=batch))
                raise
            if not snapshot.tasks:  # dropped as it ended: its tasks' outcomes went with it
                raise DaemonNotFoundError(
                    f"job {handle.job_id} ended {snapshot.state.value}, and the daemon dropped "
                    "it before its tasks' outcomes could be read: raise the daemon's "
                    "--retain-finished-jobs (or --finished-job-ttl)",
                    code="NOT_FOUND",
                )
            return {status.id: _result(local, status) for status in snapshot.tasks}
        finally:
            if handle is not None and self._handle is handle:
                self._handle = None
            del self._batches[batch]

    def track(self) -> ProgressTracker:
        """A tracker of the job of the next `execute_tasks_in_parallel` (or the one running),
        as `AsyncAssistant.track`; fed from the daemon's events."""
        if self._handle is not None:
            return self._handle.track()
        tracker = ProgressTracker()
        self._trackers.append(tracker)
        return tracker

    def _spec(self, batch: str, task: Task, options: dict[str, Any]) -> TaskSpec:
        breaker = options.get("circuit_breaker")
        return TaskSpec(
            id=task.task_id,
            action=DispatchAction(self.queue, f"{batch}\n{task.task_id}".encode()),
            description=task.description,
            dependencies=tuple(options["dependencies"]),
            resources=tuple(options["resource_requirements"]),
            # A breaker object cannot travel: the daemon's breaker of that name guards it.
            circuit_breaker=getattr(breaker, "name", breaker),
            wait_for_breaker=options.get("wait_for_breaker", False),
            retry=options.get("retry"),
            timeout=options.get("timeout"),
            priority=options.get("priority", 0),
            trigger_rule=options.get("trigger_rule", TaskSpec._field_defaults["trigger_rule"]),
            labels=dict(options.get("labels") or {}),
            max_interruptions=options.get(
                "max_interruptions", TaskSpec._field_defaults["max_interruptions"]
            ),
        )

    async def _run(self, assigned: DispatchTask) -> bytes:
        batch_id, _, task_id = assigned.payload.decode().partition("\n")
        batch = self._batches[batch_id]
        ran = batch.ran.setdefault(task_id, _Ran())
        if ran.started_at is None:
            ran.started_at = time.time()
        context = _RemoteContext(assigned, batch)
        token = set_current_task(context)  # current_task() works, as embedded
        try:
            call = _RUNNER.run(context)  # type: ignore[arg-type]
            if assigned.timeout is not None:
                try:
                    value = await asyncio.wait_for(call, assigned.timeout)
                except TimeoutError:
                    raise TaskTimeoutError(task_id, assigned.timeout) from None
            else:
                value = await call
        except Exception as error:
            ran.outcomes[assigned.attempt] = (None, error)
            policy = batch.policies.get(task_id)
            if policy is not None:
                self._verdicts[id(error)] = policy.should_retry(error, 0)
            raise
        finally:
            reset_current_task(token)
            ran.finished_at = time.time()
        ran.outcomes[assigned.attempt] = (value, None)
        # The value stays here; the daemon passes the attempt on to the dependents, which
        # find its value by it (`_RemoteContext.upstream_results`).
        return str(assigned.attempt).encode()

    async def close(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    async def __aenter__(self) -> RemoteAssistant:
        return await self.open()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<AsyncAssistant model={self.model_name!r} remote {self.address}>"


def _result(batch: _Batch, status: Any) -> TaskResult:
    """A task's outcome as embedded mode gives it: the daemon's state and times, with the
    value or exception of the attempt it ended with, which ran here."""
    ran = batch.ran.get(status.id)
    outcomes = {} if ran is None else ran.outcomes
    value, error = _ended_as(
        status.state,
        outcomes.get(status.attempts, (None, None)),
        lambda: _remote_error(status.failure, status.error),
    )
    return TaskResult(
        task_id=status.id,
        state=status.state,
        result=value,
        error=error,
        attempts=status.attempts,
        started_at=status.started_at,
        finished_at=status.finished_at,
        message=status.error,
        interruptions=status.interruptions,
    )


def _remote_error(failure: TaskFailure | None, words: str) -> BaseException:
    """The exception for a failure that did not happen here: its type and words."""
    return TaskFailedRemotely(words) if failure is None else failure.as_error()


def _ended_as(state: TaskState, outcome: Outcome, remote: Callable[[], BaseException]) -> Outcome:
    """The value and exception of a task that ended in `state`, from what ran here: only a
    success has a value, only a failure an exception (`remote()` when the daemon failed it,
    by a timeout or a breaker, not the callable)."""
    value, error = outcome
    if state is TaskState.SUCCEEDED:
        return value, None
    if state is TaskState.FAILED:
        return None, error if error is not None else remote()
    return None, None


class _RemoteContext:
    """What `current_task()` gives a callable in remote mode: what embedded mode's
    `TaskContext` gives, read from the assignment and from what ran here.

    One difference: `output()` has no way to the daemon (the Work stream carries results
    and progress only), so its lines go to this process's log (`dukat.client._assistant`).
    """

    __slots__ = ("_batch", "_loop", "_task", "_thread", "action", "attempt", "job_id", "task_id")

    def __init__(self, task: DispatchTask, batch: _Batch) -> None:
        self._task = task
        self._batch = batch
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self.job_id = task.job_id
        self.task_id = task.task_id
        self.attempt = task.attempt
        self.action = batch.actions[task.task_id]

    @property
    def labels(self) -> Mapping[str, str]:
        return self._batch.specs[self.task_id].labels

    @property
    def timeout(self) -> float | None:
        """Seconds this attempt may run (the task's `timeout`); None: no limit."""
        return self._batch.specs[self.task_id].timeout

    @property
    def upstream_results(self) -> Mapping[str, Any]:
        """Results of the upstream tasks that succeeded, by task id: the Python values
        their callables returned here."""
        return {
            upstream.task_id: self._upstream(upstream)[0]
            for upstream in self._task.upstream_results
            if upstream.state is TaskState.SUCCEEDED
        }

    @property
    def upstream_outcomes(self) -> tuple[TaskResult, ...]:
        """How each dependency ended, in the order of the task's `dependencies`."""
        outcomes = []
        for upstream in self._task.upstream_results:
            value, error = _ended_as(
                upstream.state,
                self._upstream(upstream),
                lambda words=upstream.error: _remote_error(None, words),
            )
            ran = self._batch.ran.get(upstream.task_id) or _Ran()
            outcomes.append(
                TaskResult(
                    task_id=upstream.task_id,
                    state=upstream.state,
                    result=value,
                    error=error,
                    attempts=ran.attempts,
                    started_at=ran.started_at,
                    finished_at=ran.finished_at,
                    message=upstream.error,
                )
            )
        return tuple(outcomes)

    def _upstream(self, upstream: UpstreamResult) -> Outcome:
        """What ran here of an upstream: the attempt that succeeded (its marker says which
        one), else the last one."""
        ran = self._batch.ran.get(upstream.task_id)
        if ran is None:
            return (None, None)
        marker = upstream.payload.decode() if upstream.state is TaskState.SUCCEEDED else ""
        attempt = int(marker) if marker.isdigit() else ran.attempts
        return ran.outcomes.get(attempt, (None, None))

    def report_progress(self, fraction: float | None = None, message: str = "") -> None:
        """Say how far the task is (0.0 to 1.0) and/or what it is doing. Thread-safe."""
        if threading.get_ident() == self._thread:
            self._task.report_progress(fraction, message)
            return
        if fraction is not None and not 0.0 <= fraction <= 1.0:  # raised here, as embedded
            raise ValueError(f"progress fraction must be between 0 and 1, not {fraction!r}")
        self._loop.call_soon_threadsafe(self._task.report_progress, fraction, message)

    def output(self, stream: str, text: str) -> None:
        """Record a line the task wrote: logged here (see the class docstring)."""
        _log.info("%s/%s %s: %s", self.job_id, self.task_id, stream, text)

    def __repr__(self) -> str:
        return f"<TaskContext {self.job_id}/{self.task_id} attempt {self.attempt} (remote)>"


async def _cancel_for_the_caller(job: JobHandle | Awaitable[JobHandle]) -> None:
    """Cancel the job of a caller that was cancelled, as embedded mode does: its tasks'
    results would go nowhere. `job`: its handle, or, when the caller was cancelled during
    Submit, the same Submit again: with its request id it finds the job that Submit may
    have made after all (or makes it, to be cancelled). Within a few seconds, and quietly:
    the caller's cancellation is what goes on, whatever this meets."""

    async def cancel() -> None:
        handle = job if isinstance(job, JobHandle) else await job
        await handle.cancel(reason="its caller was cancelled")

    try:
        await asyncio.shield(asyncio.wait_for(cancel(), _CANCEL_WITHIN))
    except Exception as error:  # the daemon gone, the channel closed: nothing more to do here
        _log.warning("could not cancel the job of a cancelled call: %s", error)
