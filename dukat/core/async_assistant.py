"""`AsyncAssistant`: run a list of task dicts in parallel, for agents and scripts.

    async with await get_async_assistant(model_name="planner", max_parallel_tasks=5) as a:
        results = await a.execute_tasks_in_parallel([
            {"task_id": "search", "func": search},
            {"task_id": "summarise", "func": summarise, "dependencies": ["search"],
             "retry": 3, "timeout": 30},
        ])

With no address (and no `DUKAT_ADDRESS` in the environment) the assistant runs the embedded
engine in this process; with one, the same tasks run through that dukatd daemon, their
callables still in this process, with the same results. `model_name` is carried as the job
label `model`.

The engine knows no daemon: reaching one is the client's, a layer above it. So the engine
declares a hook, `set_remote_factory`, and the top package `dukat` (always imported before
any of its submodules, this one too) fills it with a factory that loads the client on first
use (`dukat.client.RemoteAssistant`): `dukat.core` imports nothing above itself,
and `import dukat` alone still imports no grpc.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

from dukat.core.events import Event
from dukat.core.parallel_executor import ParallelTaskExecutor, Task, one_pool
from dukat.core.progress import ProgressTracker
from dukat.core.resources import ResourcePool, ResourceRequirement, ResourceType
from dukat.core.results import TaskResult
from dukat.core.retry import retry_policy
from dukat.core.scheduler import Scheduler
from dukat.core.spec import dependency_ids
from dukat.errors import ValidationError

__all__ = [
    "AsyncAssistant",
    "RemoteFactory",
    "get_async_assistant",
    "set_remote_factory",
    "task_from_dict",
]

_TASK_KEYS = frozenset(
    {
        "func",
        "task_id",
        "description",
        "dependencies",
        "resource_requirements",
        "circuit_breaker",
        "retry",
        "timeout",
        "args",
        "kwargs",
        "priority",
        "trigger_rule",
        "wait_for_breaker",
        "labels",
        "max_interruptions",
    }
)


class AsyncAssistant:
    """Runs batches of task dicts on one long-lived scheduler; an async context manager."""

    def __init__(
        self,
        *,
        model_name: str | None = None,
        max_parallel_tasks: int = 5,
        resources: ResourcePool | None = None,
        on_event: Callable[[Event], None] | None = None,
        resource_pool: ResourcePool | None = None,
    ) -> None:
        """`resources`: the pool its tasks take from (`resource_pool`, the name it had
        first, is the same)."""
        self.model_name = model_name
        self.max_parallel_tasks = max_parallel_tasks
        self._scheduler = Scheduler(
            max_concurrency=max_parallel_tasks, resources=one_pool(resources, resource_pool)
        )
        self._on_event = on_event
        self._trackers: list[ProgressTracker] = []  # to follow the next batch's job
        self._executor: ParallelTaskExecutor | None = None  # the batch running now

    @property
    def scheduler(self) -> Scheduler:
        return self._scheduler

    async def execute_tasks_in_parallel(
        self, tasks: Iterable[Mapping[str, Any]], *, fail_fast: bool = False
    ) -> dict[str, TaskResult]:
        """Run the tasks as one job, dependencies respected; return results by task id."""
        labels = {"model": self.model_name} if self.model_name else {}
        executor = ParallelTaskExecutor(
            scheduler=self._scheduler,
            labels=labels,
            fail_fast=fail_fast,
            on_event=self._on_event,
        )
        for index, description in enumerate(tasks):
            task, options = task_from_dict(index, description)
            await executor.add_task(task, **options)
        trackers, self._trackers = self._trackers, []
        for tracker in trackers:
            executor.track(tracker)
        self._executor = executor
        try:
            return await executor.execute_all()
        finally:
            if self._executor is executor:
                self._executor = None

    def track(self) -> ProgressTracker:
        """A tracker of the job of the next `execute_tasks_in_parallel` (or the one running)."""
        if self._executor is not None:
            return self._executor.track()
        tracker = ProgressTracker()
        self._trackers.append(tracker)
        return tracker

    async def close(self) -> None:
        await self._scheduler.close()

    async def __aenter__(self) -> AsyncAssistant:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<AsyncAssistant model={self.model_name!r} embedded {self._scheduler!r}>"


class RemoteFactory(Protocol):
    """Opens an assistant that runs its tasks through the daemon at `address` (with the
    methods of `AsyncAssistant`: `execute_tasks_in_parallel`, `track`, `close`, ...)."""

    def __call__(
        self, address: str, *, model_name: str | None, max_parallel_tasks: int
    ) -> Awaitable[Any]: ...


_remote_factory: RemoteFactory | None = None


def set_remote_factory(factory: RemoteFactory | None) -> RemoteFactory | None:
    """Make `factory` what `get_async_assistant(address=...)` opens; returns the one before.

    The top package `dukat` sets the client's when it is imported; None unsets it."""
    global _remote_factory
    before, _remote_factory = _remote_factory, factory
    return before


async def get_async_assistant(
    model_name: str | None = None,
    max_parallel_tasks: int = 5,
    address: str | None = None,
) -> AsyncAssistant:
    """An assistant: embedded unless `address` (or `DUKAT_ADDRESS`) names a dukatd daemon.

    Embedded is the default, so a daemon on its default socket is reached by saying so:
    `address=dukat.defaults.default_address()`.
    """
    address = address or os.environ.get("DUKAT_ADDRESS") or None
    if address is not None:
        factory = _remote_factory
        if factory is None:
            raise RuntimeError(
                f"no way to reach the daemon at {address!r}: the remote assistant is the "
                "client's (dukat.client), and none was set with set_remote_factory()"
            )
        remote = factory(address, model_name=model_name, max_parallel_tasks=max_parallel_tasks)
        return await remote  # type: ignore[no-any-return]
    return AsyncAssistant(model_name=model_name, max_parallel_tasks=max_parallel_tasks)


def task_from_dict(index: int, description: Mapping[str, Any]) -> tuple[Task, dict[str, Any]]:
    """Turn one task dict into a `Task` and the options for `add_task`."""
    task_id = description.get("task_id", f"task_{index}")
    where = f"task {task_id!r} (tasks[{index}])"
    unknown = set(description) - _TASK_KEYS
    if unknown:
        raise ValidationError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(_TASK_KEYS))}",
            task_id=task_id,
        )
    func = description.get("func")
    if inspect.iscoroutine(func):
        func.close()  # never awaited: say so clearly instead of warning later
        raise ValidationError(
            f"{where}: 'func' is a coroutine object; pass the async function itself",
            task_id=task_id,
        )
    if not callable(func):
        raise ValidationError(f"{where}: 'func' must be callable, not {func!r}", task_id=task_id)
    task = Task(
        task_id=task_id,
        func=func,
        description=description.get("description", ""),
        args=tuple(description.get("args", ())),
        kwargs=description.get("kwargs"),
    )
    options: dict[str, Any] = {
        key: description[key]
        for key in (
            "circuit_breaker",
            "timeout",
            "priority",
            "trigger_rule",
            "wait_for_breaker",
            "labels",
            "max_interruptions",
        )
        if key in description
    }
    options["dependencies"] = dependency_ids(task_id, description.get("dependencies"))
    options["resource_requirements"] = _requirements(
        where, description.get("resource_requirements")
    )
    if description.get("retry") is not None:
        options["retry"] = retry_policy(description["retry"], task_id=task_id)
    return task, options


def _requirements(where: str, value: Any) -> list[ResourceRequirement]:
    """A list of `ResourceRequirement`, or a mapping {ResourceType or name: amount}."""
    if value is None:
        return []
    if isinstance(value, Mapping):
        requirements = []
        for resource, amount in value.items():
            if isinstance(resource, ResourceType):
                requirements.append(ResourceRequirement(resource, amount))
            elif resource in {t.value for t in ResourceType if t is not ResourceType.CUSTOM}:
                requirements.append(ResourceRequirement(ResourceType(resource), amount))
            else:
                requirements.append(ResourceRequirement(ResourceType.CUSTOM, amount, name=resource))
        return requirements
    requirements = list(value)
    for requirement in requirements:
        if not isinstance(requirement, ResourceRequirement):
            raise ValidationError(f"{where}: bad resource requirement {requirement!r}")
    return requirements
