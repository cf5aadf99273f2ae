"""`ParallelTaskExecutor`: run a DAG of Python callables and get every task's result.

    executor = ParallelTaskExecutor(max_concurrency=3)
    await executor.add_task(Task("fetch", fetch))
    await executor.add_task(Task("parse", parse), dependencies=["fetch"],
                            resource_requirements=[ResourceRequirement(ResourceType.CPU, 0.5)])
    results = await executor.execute_all()   # {task_id: TaskResult}; never raises for a task

A thin face over the `Scheduler`: each `execute_all()` is one job. This module is public API
and also re-exports the types its users need.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from types import MappingProxyType
from typing import Any

from dukat.core._gc import GcHold, hold_gc
from dukat.core.breaker import CircuitBreaker
from dukat.core.clock import Clock
from dukat.core.events import Event
from dukat.core.graph import DependencyGraph, cycle_from
from dukat.core.progress import ProgressTracker
from dukat.core.resources import ResourcePool, ResourceRequirement, ResourceType
from dukat.core.results import TaskResult
from dukat.core.retry import RetryPolicy, retry_policy
from dukat.core.runners import CallableAction
from dukat.core.scheduler import CancelRequest, Scheduler
from dukat.core.spec import DEFAULT_MAX_INTERRUPTIONS, JobSpec, TaskSpec, dependency_ids
from dukat.core.states import TaskState, TriggerRule
from dukat.errors import CycleError, FieldViolation, NotFoundError, ValidationError

__all__ = [
    "DependencyGraph",
    "ParallelTaskExecutor",
    "ResourcePool",
    "ResourceRequirement",
    "ResourceType",
    "RetryPolicy",
    "Task",
    "TaskResult",
    "TaskState",
    "TriggerRule",
]


@dataclass(slots=True)
class Task:
    """A Python callable to run as a task: `func(*args, **kwargs)`.

    `func` is an async callable; a plain function runs in a worker thread.
    """

    task_id: str
    func: Callable[..., Any]
    description: str = ""
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] | None = None
    priority: int = 0
    """Higher runs first among ready tasks."""
    retry: RetryPolicy | int | Mapping[str, Any] | None = None
    """A RetryPolicy, or its shorthand: a number of attempts (3), a dict of its fields."""
    timeout: float | None = None
    """Seconds one attempt may run."""
    circuit_breaker: str | CircuitBreaker | None = None
    """A breaker (or the name of one) guarding what this task calls."""
    wait_for_breaker: bool = False
    """When the breaker is open, wait for it to half-open instead of failing at once."""
    trigger_rule: TriggerRule = TriggerRule.ALL_SUCCESS
    labels: Mapping[str, str] = field(default_factory=dict)
    max_interruptions: int = DEFAULT_MAX_INTERRUPTIONS
    """Attempts lost through no fault of the task that it is run again after, without
    spending `retry`'s attempts (`TaskSpec.max_interruptions`); 0: it runs at most once."""


_GC_BATCH = 5_000
# A task's spec, built without NamedTuple's __new__, which is Python code: every field is given.
_new_spec = partial(tuple.__new__, TaskSpec)
_NO_LABELS: Mapping[str, str] = MappingProxyType({})

_OPTIONS = frozenset(
    {
        "priority",
        "retry",
        "timeout",
        "circuit_breaker",
        "wait_for_breaker",
        "trigger_rule",
        "labels",
        "description",
        "max_interruptions",
    }
)


def one_pool(
    resources: ResourcePool | None, resource_pool: ResourcePool | None
) -> ResourcePool | None:
    """The pool given as `resources`, or as `resource_pool` (the documented name it had
    first); TypeError if both are."""
    if resources is not None and resource_pool is not None:
        raise TypeError("resources and resource_pool name the same pool: give one of them")
    return resources if resources is not None else resource_pool


class ParallelTaskExecutor:
    """Collect tasks with `add_task`, then run them all with `execute_all`."""

    def __init__(
        self,
        max_concurrency: int = 3,
        *,
        resources: ResourcePool | None = None,
        fail_fast: bool = False,
        labels: Mapping[str, str] | None = None,
        on_event: Callable[[Event], None] | None = None,
        scheduler: Scheduler | None = None,
        clock: Clock | None = None,
        resource_pool: ResourcePool | None = None,
    ) -> None:
        """`scheduler` shares a long-lived one; otherwise the executor has its own, with
        `resources` (`resource_pool`, the name it had first, is the same)."""
        self._scheduler = scheduler or Scheduler(
            max_concurrency=max_concurrency,
            resources=one_pool(resources, resource_pool),
            clock=clock,
        )
        self.max_concurrency = self._scheduler.max_concurrency
        self.fail_fast = fail_fast
        self.labels = dict(labels or {})
        self._on_event = on_event
        self._specs: dict[str, TaskSpec] = {}
        # Ids named as dependencies before their task was added: only adding one of them
        # can close a cycle. Building in topological order (the usual way), there are none.
        self._named_before_added: set[str] = set()
        self._gc_hold: GcHold | None = None
        self._job_id: str | None = None
        self._running: str | None = None  # the job execute_all() is waiting for
        self._ran = False  # an execute_all() took the tasks added before it
        # cancel() before execute_all(): applied, in order, as soon as the job starts
        self._cancels_at_start: list[CancelRequest] = []
        self._trackers: list[ProgressTracker] = []  # to follow the next job, once it starts

    @property
    def scheduler(self) -> Scheduler:
        return self._scheduler

    @property
    def job_id(self) -> str | None:
        """The id of the job `execute_all()` is running (or last ran)."""
        return self._job_id

    async def add_task(
        self,
        task: Task,
        dependencies: Iterable[str] | None = None,
        resource_requirements: Iterable[ResourceRequirement] | None = None,
        **options: Any,
    ) -> None:
        """Add a task to the next `execute_all()`. A duplicate id, a cycle, an impossible
        requirement or a string of dependencies fails here; so does adding one while
        `execute_all()` runs (it would only run at the next call)."""
        task_id = task.task_id
        if not isinstance(task_id, str) or not task_id:
            raise ValidationError(f"a task needs a non-empty string id, not {task_id!r}")
        if self._running is not None:
            raise RuntimeError(
                f"task {task_id!r} added while execute_all() runs job {self._running}: it would "
                "not join that run, only the next execute_all(). Add every task before "
                "execute_all(), or this one after it returns (then call execute_all() again)"
            )
        specs = self._specs
        if task_id in specs:
            raise ValidationError(
                f"duplicate task id {task_id!r}",
                task_id=task_id,
                violations=[FieldViolation("task_id", "duplicate")],
            )
        if options and not options.keys() <= _OPTIONS:
            unknown = ", ".join(sorted(set(options) - _OPTIONS))
            raise TypeError(
                f"add_task() got unknown option(s) {unknown} for task {task_id!r}; "
                f"known: {', '.join(sorted(_OPTIONS))}"
            )
        # Repeats are harmless downstream. A list, the usual, needs no look for a string.
        if dependencies.__class__ is list:
            deps = tuple(dependencies)
        else:
            deps = dependency_ids(task_id, dependencies)
        resources = tuple(resource_requirements) if resource_requirements else ()
        spec = self._spec(task, deps, resources, options)
        named = self._named_before_added
        if task_id in named or task_id in deps:
            self._check_no_cycle(task_id, deps)
            named.discard(task_id)
        for dep in deps:
            if dep not in specs:
                named.add(dep)
        specs[task_id] = spec
        if len(specs) % _GC_BATCH == 0:
            self._hold_gc_while_growing(len(specs))

    def _check_no_cycle(self, task_id: str, deps: tuple[str, ...]) -> None:
        """Raise CycleError if `task_id`, already depended upon, reaches itself through `deps`.

        Only tasks added after something named them as a dependency get here: building in
        topological order, the common case, never does.
        """
        specs = self._specs

        def dependencies(node: str) -> Iterable[str]:
            if node == task_id:
                return deps
            return specs[node].dependencies if node in specs else ()

        cycle = cycle_from(task_id, dependencies)
        if cycle is not None:
            raise CycleError(cycle)

    def _hold_gc_while_growing(self, count: int) -> None:
        """Hold the collector off the specs collected so far (see `dukat.core._gc`), until
        this step of the event loop ends. No longer: an executor dropped unrun, or in a
        reference cycle that the frozen collector could never free, must not leave the
        collector frozen. Tasks are usually added in one go, then run, within one step."""
        threshold = self._scheduler.gc_hold_min_tasks
        if threshold is None or count < threshold:
            return
        hold = self._gc_hold
        if hold is not None and not hold.released:
            hold.refresh()
            return
        self._gc_hold = hold = hold_gc()
        asyncio.get_running_loop().call_soon(hold.release)

    async def execute_all(self) -> dict[str, TaskResult]:
        """Run the tasks added since the last call; return each one's result by id. Task
        failures do not raise.

        Raises `ValidationError` if the DAG is invalid (an unknown dependency, ...), before
        anything runs. Cancelling the caller cancels the job. Each call is a job of its own:
        a second call runs the tasks added since the first, and raises `RuntimeError` when
        there are none (the first took them; add them again to run them again), as does a
        call while another runs.
        """
        if self._running is not None:
            raise RuntimeError(
                f"execute_all() is already running job {self._running}: await that call"
            )
        if not self._specs and self._ran:
            raise RuntimeError(
                "no task was added since the last execute_all(), which took the tasks added "
                "before it: each call runs only the tasks added since the one before. To run "
                "them again, add them again with add_task(), or use a new ParallelTaskExecutor"
            )
        cancels, self._cancels_at_start = self._cancels_at_start, []
        job = self._take_job()
        return {} if job is None else await self._execute(job, cancels)

    def _take_job(self) -> JobSpec | None:
        """The added tasks as a job (None if there are none); the executor starts afresh.

        The collected specs' dict goes now, not when the job ends: for a big job its memory
        is better spent on the job's own records."""
        specs, self._specs, self._named_before_added = self._specs, {}, set()
        if not specs:
            return None
        self._ran = True
        return JobSpec(tasks=tuple(specs.values()), labels=self.labels, fail_fast=self.fail_fast)

    async def _execute(self, job: JobSpec, cancels: list[CancelRequest]) -> dict[str, TaskResult]:
        scheduler = self._scheduler
        job_id = uuid.uuid4().hex
        listener = self._listen(job_id)  # before submit: the first events are the READY ones
        try:
            scheduler.submit(job, job_id=job_id)
        except BaseException:
            if listener is not None:
                scheduler.remove_listener(listener)
            raise
        self._job_id = self._running = job_id
        trackers, self._trackers = self._trackers, []
        for tracker in trackers:  # before any cancel: they see every event of the job
            tracker.follow(scheduler, job_id)
        try:
            for request in cancels:
                scheduler.cancel(job_id, request.task_ids, reason=request.reason)
            try:
                return await scheduler.wait_results(job_id)
            except asyncio.CancelledError:
                scheduler.cancel(job_id, reason="its caller was cancelled")
                await asyncio.shield(scheduler.wait(job_id))
                raise
        finally:
            self._running = None
            if listener is not None:
                scheduler.remove_listener(listener)
            if job_id in scheduler and scheduler.job_state(job_id).is_terminal:
                scheduler.forget(job_id)

    def track(self, tracker: ProgressTracker | None = None) -> ProgressTracker:
        """A tracker of the job `execute_all()` runs (the next one, or the one running now).

            tracker = executor.track()
            results, _ = await asyncio.gather(executor.execute_all(), show(tracker))

        `tracker`: follow the job with this one rather than a new one.
        """
        tracker = tracker or ProgressTracker()
        if self._running is not None:
            tracker.follow(self._scheduler, self._running)
        else:
            self._trackers.append(tracker)
        return tracker

    def cancel(self, *task_ids: str, reason: str = "") -> int:
        """Cancel the running job, or the given tasks and everything downstream of them.

        Before `execute_all()` starts, the cancellation is applied as soon as it does (for
        the whole job: whatever tasks it has by then). Returns how many tasks were cancelled
        (0 when deferred). An id that was never added is a `NotFoundError`. `reason` is kept
        in the cancelled tasks' messages (`cancelled: <reason>`).
        """
        if self._running is not None:
            return self._scheduler.cancel(self._running, task_ids, reason=reason)
        unknown = [task_id for task_id in task_ids if task_id not in self._specs]
        if unknown:
            raise NotFoundError(f"no task {unknown[0]!r} was added to this executor")
        self._cancels_at_start.append(CancelRequest(task_ids, reason))
        return 0

    async def close(self) -> None:
        await self._scheduler.close()

    async def __aenter__(self) -> ParallelTaskExecutor:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<ParallelTaskExecutor tasks:{len(self._specs)} {self._scheduler!r}>"

    def _spec(
        self,
        task: Task,
        dependencies: tuple[str, ...],
        resources: tuple[ResourceRequirement, ...],
        options: Mapping[str, Any],
    ) -> TaskSpec:
        if options:  # the per-call options win over the Task's own fields
            task = replace(task, **options)
        breaker = task.circuit_breaker
        if isinstance(breaker, CircuitBreaker):
            breaker = self._scheduler.breakers.register(breaker).name
        if resources:
            for requirement in resources:
                if not isinstance(requirement, ResourceRequirement):
                    raise ValidationError(
                        f"task {task.task_id!r}: resource requirements must be "
                        f"ResourceRequirement, not {requirement!r}",
                        task_id=task.task_id,
                    )
            self._scheduler.resources.check(resources, task_id=task.task_id)
        retry = task.retry
        if retry is not None and retry.__class__ is not RetryPolicy:
            retry = retry_policy(retry, task_id=task.task_id)  # the shorthand: retry=3, a dict
        return _new_spec(
            (
                task.task_id,
                CallableAction(task.func, task.args, task.kwargs),
                task.description,
                dependencies,
                resources,
                breaker,
                task.wait_for_breaker,
                retry,
                task.timeout,
                task.priority,
                task.trigger_rule,
                dict(task.labels) if task.labels else _NO_LABELS,
                task.max_interruptions,
            )
        )

    def _listen(self, job_id: str) -> Callable[[Event], None] | None:
        on_event = self._on_event
        if on_event is None:
            return None

        def listener(event: Event) -> None:
            if event.job_id == job_id:
                on_event(event)

        self._scheduler.add_listener(listener)
        return listener
