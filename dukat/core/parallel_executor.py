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
from dataclasses import dataclass, field
from typing import Any

from dukat.core.breaker import CircuitBreaker
from dukat.core.clock import Clock
from dukat.core.events import Event
from dukat.core.graph import DependencyGraph
from dukat.core.resources import ResourcePool, ResourceRequirement, ResourceType
from dukat.core.results import TaskResult
from dukat.core.retry import RetryPolicy
from dukat.core.runners import CallableAction
from dukat.core.scheduler import Scheduler
from dukat.core.spec import JobSpec, TaskSpec
from dukat.core.states import TaskState, TriggerRule
from dukat.errors import FieldViolation, ValidationError

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
    retry: RetryPolicy | None = None
    timeout: float | None = None
    """Seconds one attempt may run."""
    circuit_breaker: str | CircuitBreaker | None = None
    """A breaker (or the name of one) guarding what this task calls."""
    wait_for_breaker: bool = False
    """When the breaker is open, wait for it to half-open instead of failing at once."""
    trigger_rule: TriggerRule = TriggerRule.ALL_SUCCESS
    labels: Mapping[str, str] = field(default_factory=dict)


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
    }
)


class ParallelTaskExecutor:
    """Collect tasks with `add_task`, then run them all with `execute_all`."""

    def __init__(
        self,
        max_concurrency: int = 3,
        *,
        resource_pool: ResourcePool | None = None,
        fail_fast: bool = False,
        labels: Mapping[str, str] | None = None,
        on_event: Callable[[Event], None] | None = None,
        scheduler: Scheduler | None = None,
        clock: Clock | None = None,
    ) -> None:
        """`scheduler` shares a long-lived one; otherwise the executor has its own."""
        self._scheduler = scheduler or Scheduler(
            max_concurrency=max_concurrency, resources=resource_pool, clock=clock
        )
        self.max_concurrency = self._scheduler.max_concurrency
        self.fail_fast = fail_fast
        self.labels = dict(labels or {})
        self._on_event = on_event
        self._specs: dict[str, TaskSpec] = {}
        self._graph = DependencyGraph()
        self._job_id: str | None = None
        self._cancel_before_start: set[str] | None = None

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
        """Add a task. A duplicate id, a cycle or an impossible requirement fails here."""
        unknown = set(options) - _OPTIONS
        if unknown:
            raise TypeError(
                f"add_task() got unknown option(s) {', '.join(sorted(unknown))} for task "
                f"{task.task_id!r}; known: {', '.join(sorted(_OPTIONS))}"
            )
        if task.task_id in self._specs:
            raise ValidationError(
                f"duplicate task id {task.task_id!r}",
                task_id=task.task_id,
                violations=[FieldViolation("task_id", "duplicate")],
            )
        spec = self._spec(
            task, list(dependencies or ()), list(resource_requirements or ()), options
        )
        self._graph.add_task(spec.id)
        for dep in spec.dependencies:
            self._graph.add_dependency(spec.id, dep)  # raises CycleError as soon as one closes
        self._specs[spec.id] = spec

    async def execute_all(self) -> dict[str, TaskResult]:
        """Run every added task; return each one's result by id. Task failures do not raise.

        Raises `ValidationError` if the DAG is invalid (an unknown dependency, ...), before
        anything runs. Cancelling the caller cancels the job.
        """
        specs, self._specs, self._graph = self._specs, {}, DependencyGraph()
        if not specs:
            return {}
        scheduler = self._scheduler
        job = JobSpec(tasks=tuple(specs.values()), labels=self.labels, fail_fast=self.fail_fast)
        job_id = uuid.uuid4().hex
        listener = self._listen(job_id)  # before submit: the first events are the READY ones
        try:
            scheduler.submit(job, job_id=job_id)
        except BaseException:
            if listener is not None:
                scheduler.remove_listener(listener)
            raise
        self._job_id = job_id
        try:
            if self._cancel_before_start is not None:
                scheduler.cancel(job_id, self._cancel_before_start)
                self._cancel_before_start = None
            try:
                await scheduler.wait(job_id)
            except asyncio.CancelledError:
                scheduler.cancel(job_id)
                await asyncio.shield(scheduler.wait(job_id))
                raise
            return scheduler.results(job_id)
        finally:
            if listener is not None:
                scheduler.remove_listener(listener)
            if scheduler.job_state(job_id).is_terminal:
                scheduler.forget(job_id)

    def cancel(self, *task_ids: str) -> int:
        """Cancel the running job, or the given tasks and everything downstream of them.

        Before `execute_all()` starts, the cancellation is applied as soon as it does.
        Returns how many tasks were cancelled (0 when deferred).
        """
        if self._job_id is not None and self._job_id in self._scheduler:
            return self._scheduler.cancel(self._job_id, task_ids)
        self._cancel_before_start = set(task_ids) or set(self._specs)
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
        dependencies: list[str],
        resources: list[ResourceRequirement],
        options: Mapping[str, Any],
    ) -> TaskSpec:
        given = {
            name: options[name] if name in options else getattr(task, name) for name in _OPTIONS
        }
        breaker = given["circuit_breaker"]
        if isinstance(breaker, CircuitBreaker):
            breaker = self._scheduler.breakers.register(breaker).name
        for requirement in resources:
            if not isinstance(requirement, ResourceRequirement):
                raise ValidationError(
                    f"task {task.task_id!r}: resource requirements must be ResourceRequirement,"
                    f" not {requirement!r}",
                    task_id=task.task_id,
                )
        if resources:
            self._scheduler.resources.check(resources, task_id=task.task_id)
        if not isinstance(task.task_id, str) or not task.task_id:
            raise ValidationError(f"a task needs a non-empty string id, not {task.task_id!r}")
        return TaskSpec(
            id=task.task_id,
            action=CallableAction(task.func, task.args, task.kwargs),
            description=given["description"],
            dependencies=tuple(dict.fromkeys(dependencies)),
            resources=tuple(resources),
            circuit_breaker=breaker,
            wait_for_breaker=given["wait_for_breaker"],
            retry=given["retry"],
            timeout=given["timeout"],
            priority=given["priority"],
            trigger_rule=given["trigger_rule"],
            labels=dict(given["labels"]),
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
