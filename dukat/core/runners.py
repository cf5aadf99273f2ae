"""Runners: how the scheduler turns a task's action into something it can await.

The scheduler knows nothing about what actions are. It looks up the runner registered for
the type of a task's action and awaits `runner.run(context)`. The engine ships the in-process
runner for Python callables; the daemon adds runners for subprocesses and remote workers.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any, Protocol

from dukat.core.context import TaskContext
from dukat.errors import ValidationError

__all__ = ["AdmittingRunner", "CallableAction", "InProcessRunner", "Runner", "Unrunnable"]


class Runner(Protocol):
    """Makes the awaitable that runs one attempt of a task: its result, or its error.

    `run` may be a coroutine function or return any awaitable. Cancellation arrives as
    `asyncio.CancelledError` in that awaitable; a runner must stop what it started (a
    process, a remote call) before letting it propagate.

    Optional: `admit(context) -> asyncio.Future | None` (see `AdmittingRunner`). A runner
    without it has every task go to a slot as soon as it is picked, as always.
    """

    def run(self, context: TaskContext) -> Awaitable[Any]: ...


class AdmittingRunner(Runner, Protocol):
    """A runner whose attempts may have to wait for something outside the scheduler (a
    remote worker with room): they wait READY, holding no slot, instead of RUNNING in one.

    `admit(context)` is called when the task is picked, before its resources and breaker,
    with the context its next attempt will get. None: go now. A future: the task stays
    READY, in flight for its job's `max_concurrency` but holding no slot and no resources,
    and goes on to them when the future is done (however it ended: a runner that drops its
    waiters must not strand them; `run` then says what is wrong). If the task is cancelled
    meanwhile, the scheduler cancels the future: a runner keeping waiters should skip
    cancelled ones. Admission is a hint, not a reservation: `run` must still cope with
    the capacity being gone when it comes. An exception from `admit` fails the attempt.
    A runner that knows the wait may never end by itself (no remote worker at all) says so
    with `context.report_waiting(...)`: a `TaskWaiting` event, once per task.

    The scheduler looks the hook up once per runner, when a job is submitted.
    """

    def admit(self, context: TaskContext) -> asyncio.Future[Any] | None: ...


_NO_KWARGS: Mapping[str, Any] = MappingProxyType({})


class CallableAction:
    """Call `func(*args, **kwargs)`: awaited if it is a coroutine function, else in a thread."""

    __slots__ = ("args", "func", "is_async", "kwargs")

    def __init__(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if not callable(func):
            raise TypeError(f"a task's func must be callable, not {func!r}")
        self.func = func
        self.args = tuple(args)
        # Most tasks have no kwargs: they share one read-only empty mapping, not a dict each.
        self.kwargs: Mapping[str, Any] = dict(kwargs) if kwargs else _NO_KWARGS
        # Many tasks share one function, and inspecting it costs more than the rest of a task.
        try:
            self.is_async = _is_coroutine_function_cached(func)
        except TypeError:  # unhashable callable
            self.is_async = _inspect_coroutine_function(func)

    def __repr__(self) -> str:
        name = getattr(self.func, "__qualname__", repr(self.func))
        return f"<CallableAction {name}{' async' if self.is_async else ''}>"


def _inspect_coroutine_function(func: Any) -> bool:
    while isinstance(func, functools.partial):
        func = func.func
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - a callable object with async __call__
    )


_is_coroutine_function_cached = functools.lru_cache(maxsize=512)(_inspect_coroutine_function)


class InProcessRunner:
    """Runs `CallableAction`s in this process."""

    def run(self, context: TaskContext) -> Awaitable[Any]:
        # The task's own coroutine, not one wrapped around it: this runs for every task.
        action: CallableAction = context.action
        if action.is_async:
            if action.kwargs:
                return action.func(*action.args, **action.kwargs)
            return action.func(*action.args)  # no `**{}`: that builds a dict per call
        # to_thread copies the context, so report_progress() works from the thread too.
        return asyncio.to_thread(action.func, *action.args, **action.kwargs)

    def __repr__(self) -> str:
        return "<InProcessRunner>"


class Unrunnable:
    """The runner of tasks this scheduler cannot run, but must keep (a restored job that a
    scheduler set up otherwise accepted: exec was on, a resource was bigger): their attempts
    fail at once, before they take a slot or resources, never retried, saying why; the job
    is not lost, and a rerun runs it where it can run."""

    def __init__(self, why: ValidationError) -> None:
        self.why = why

    def admit(self, context: Any) -> None:
        error = ValidationError(f"cannot run here: {self.why}", task_id=self.why.task_id)
        error.retryable = False  # type: ignore[attr-defined]  # nothing a retry could change
        raise error

    async def run(self, context: Any) -> None:
        self.admit(context)
