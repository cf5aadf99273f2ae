"""The AsyncAssistant's remote mode: the same task dicts, run through a dukatd daemon.

The job goes to the daemon as dispatch tasks on a private queue (a fresh uuid) and this
process serves that queue with `client.worker`: the daemon schedules (dependencies,
resources, breakers, retries, timeouts, fair share with every other client), the callables
run here. Their return values and exceptions never leave the process: they are kept in a
local table keyed by (batch, task id, attempt) and the daemon is sent only an empty marker,
so `execute_tasks_in_parallel` returns the very objects embedded mode would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import Awaitable, Iterable, Mapping
from typing import Any

from dukat.actions import DispatchAction
from dukat.client._client import Client, connect
from dukat.client._dispatch import DispatchTask
from dukat.client._jobs import JobHandle
from dukat.core import context as task_context
from dukat.core.async_assistant import _task_from_dict
from dukat.core.parallel_executor import Task
from dukat.core.results import TaskResult
from dukat.core.spec import JobSpec, TaskSpec
from dukat.core.states import TaskState
from dukat.errors import DaemonNotFoundError, TaskTimeoutError

__all__ = ["RemoteAssistant"]

Outcome = tuple[Any, BaseException | None]

_log = logging.getLogger(__name__)
_CANCEL_WITHIN = 5.0  # seconds a cancelled call spends on cancelling its job, at most


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
        self._tasks: dict[str, dict[str, Task]] = {}  # batch -> task id -> callable
        self._outcomes: dict[tuple[str, str, int], Outcome] = {}
        # Whether an exception earns a retry is the task's RetryPolicy's call, made here
        # where the exception is; the worker asks by exception identity.
        self._verdicts: dict[int, bool] = {}
        self._policies: dict[tuple[str, str], Any] = {}

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
        specs = []
        callables: dict[str, Task] = {}
        for index, description in enumerate(tasks):
            task, options = _task_from_dict(index, description)
            callables[task.task_id] = task
            self._policies[batch, task.task_id] = options.get("retry")
            specs.append(self._spec(batch, task, options))
        self._tasks[batch] = callables
        labels = {"model": self.model_name} if self.model_name else {}
        job = JobSpec(tasks=tuple(specs), labels=labels, fail_fast=fail_fast)
        client = self._client
        try:
            handle: JobHandle | None = None
            try:
                handle = await client.submit(job, request_id=batch)
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
            return {status.id: self._result(batch, status.id, status) for status in snapshot.tasks}
        finally:
            del self._tasks[batch]
            for key in [k for k in self._outcomes if k[0] == batch]:
                del self._outcomes[key]
            for key in [k for k in self._policies if k[0] == batch]:
                del self._policies[key]

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

    def _result(self, batch: str, task_id: str, status: Any) -> TaskResult:
        value, error = self._outcomes.get((batch, task_id, status.attempts), (None, None))
        if status.state is TaskState.SUCCEEDED:
            error = None
        elif status.state is not TaskState.FAILED:
            value, error = None, None
        return TaskResult(
            task_id=task_id,
            state=status.state,
            result=value if status.state is TaskState.SUCCEEDED else None,
            error=error,
            attempts=status.attempts,
            started_at=status.started_at,
            finished_at=status.finished_at,
            message=status.error,
            interruptions=status.interruptions,
        )

    async def _run(self, assigned: DispatchTask) -> bytes:
        batch, _, task_id = assigned.payload.decode().partition("\n")
        task = self._tasks[batch][task_id]
        key = (batch, task_id, assigned.attempt)
        token = task_context._current.set(_RemoteContext(assigned))  # report_progress() works
        try:
            call = _call(task)
            if assigned.timeout is not None:
                try:
                    value = await asyncio.wait_for(call, assigned.timeout)
                except TimeoutError:
                    raise TaskTimeoutError(task_id, assigned.timeout) from None
            else:
                value = await call
        except Exception as error:
            self._outcomes[key] = (None, error)
            policy = self._policies.get((batch, task_id))
            if policy is not None:
                self._verdicts[id(error)] = policy.should_retry(error, 0)
            raise
        finally:
            task_context._current.reset(token)
        self._outcomes[key] = (value, None)
        return b""  # the value stays here: the daemon needs only to know it succeeded

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


async def _call(task: Task) -> Any:
    kwargs = dict(task.kwargs or {})
    if asyncio.iscoroutinefunction(task.func):
        return await task.func(*task.args, **kwargs)
    # A plain function runs in a thread, as in embedded mode; to_thread copies the context.
    return await asyncio.to_thread(task.func, *task.args, **kwargs)


class _RemoteContext:
    """What `current_task()` gives a callable in remote mode: ids and progress reports."""

    def __init__(self, task: DispatchTask) -> None:
        self._task = task
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self.job_id = task.job_id
        self.task_id = task.task_id
        self.attempt = task.attempt

    def report_progress(self, fraction: float | None = None, message: str = "") -> None:
        if threading.get_ident() == self._thread:
            self._task.report_progress(fraction, message)
        else:
            self._loop.call_soon_threadsafe(self._task.report_progress, fraction, message)


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
