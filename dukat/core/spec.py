"""What users hand the scheduler: a job is a DAG of task specs, each with an action.

The specs are plain frozen data. `validate_job` checks a whole job at once and either accepts
it or raises one `ValidationError` listing every problem, each naming the task and field.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from dukat.core.resources import ResourceRequirement
from dukat.core.retry import RetryPolicy
from dukat.core.states import TriggerRule
from dukat.errors import FieldViolation, ValidationError

__all__ = ["JobSpec", "TaskSpec", "dependency_ids", "validate_job"]

MAX_ID_LENGTH = 256
DEFAULT_MAX_INTERRUPTIONS = 3
"""Interruptions a task is run again after, unless it says otherwise (Ray's and Dask's 3)."""
MAX_INTERRUPTIONS = 100
"""The most a task may ask for: past that, a task that never gets to finish is a bug to see."""


class TaskSpec(NamedTuple):
    """One task of a job: what to run and under which conditions.

    Immutable. A NamedTuple rather than a frozen dataclass because one is built for every
    task and it costs a quarter as much.
    """

    id: str
    action: Any
    """What to run; a runner registered for its type runs it (e.g. `CallableAction`)."""
    description: str = ""
    dependencies: tuple[str, ...] = ()
    """Ids of the tasks that must end before this one runs (see `trigger_rule`)."""
    resources: tuple[ResourceRequirement, ...] = ()
    circuit_breaker: str | None = None
    """Name of the breaker guarding this task's downstream."""
    wait_for_breaker: bool = False
    """When the breaker is open: wait for it to half-open (True) or fail at once (False)."""
    retry: RetryPolicy | None = None
    timeout: float | None = None
    """Seconds one attempt may run."""
    priority: int = 0
    """Higher runs first among the ready tasks of a job."""
    trigger_rule: TriggerRule = TriggerRule.ALL_SUCCESS
    labels: Mapping[str, str] = MappingProxyType({})
    max_interruptions: int = DEFAULT_MAX_INTERRUPTIONS
    """Attempts taken away from the task through no fault of its own (its worker left, the
    daemon restarted: `TaskInterruptedError`) that it is run again after, at once and without
    spending `retry`'s attempts; one more fails it. 0: the task runs at most once."""


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A DAG of tasks, run together and watched as one."""

    tasks: tuple[TaskSpec, ...]
    labels: Mapping[str, str] = field(default_factory=dict)
    fail_fast: bool = False
    """Cancel the rest of the job as soon as one task fails."""
    max_concurrency: int | None = None
    """At most this many tasks of the job in flight; None: only the scheduler's limit."""


def validate_job(spec: JobSpec, *, max_tasks: int) -> dict[str, int]:
    """Check every field of a whole job (cycles are the scheduler's to find, see `find_cycle`).

    Raises `ValidationError` naming the first offending task and field, with every problem
    found in `violations`. Returns each task's position in `spec.tasks`, by id, in that
    order: a new dict, the caller's to keep (the scheduler makes it its table of tasks).
    """
    problems: list[tuple[str | None, FieldViolation]] = []

    def problem(task_id: str | None, index: int | None, field: str, description: str) -> None:
        path = field if index is None else f"tasks[{index}].{field}"
        problems.append((task_id, FieldViolation(path, description)))

    tasks = spec.tasks
    if not tasks:
        problem(None, None, "tasks", "a job needs at least one task")
    elif len(tasks) > max_tasks:
        problem(None, None, "tasks", f"{len(tasks)} tasks is over the limit of {max_tasks}")
    if spec.max_concurrency is not None and not (
        isinstance(spec.max_concurrency, int) and spec.max_concurrency >= 1
    ):
        problem(None, None, "max_concurrency", f"must be at least 1, not {spec.max_concurrency!r}")
    if problems:
        _raise(problems)

    if set(map(type, tasks)) != {TaskSpec}:  # the field pass below unpacks each one
        for index, task in enumerate(tasks):
            if not isinstance(task, TaskSpec):
                problem(None, None, f"tasks[{index}]", f"not a TaskSpec: {type(task).__name__}")
        if problems:
            _raise(problems)

    # This runs for every task of every job: the common, valid case costs a few comparisons,
    # most of them in C. Only a job with a problem in its ids takes `_index_ids`' slow walk.
    index_of = _index_str_ids(tasks)
    if index_of is None:
        index_of = _index_ids(tasks, problem)

    # Unpacked rather than read by name: a TaskSpec field by name is a descriptor call.
    for index, (
        task_id,
        action,
        _description,
        dependencies,
        _resources,
        breaker,
        _wait_for_breaker,
        retry,
        timeout,
        priority,
        trigger_rule,
        _labels,
        max_interruptions,
    ) in enumerate(tasks):
        if action is None:
            problem(task_id, index, "action", "a task needs an action")
        if dependencies.__class__ is str:
            problem(task_id, index, "dependencies", _one_string(dependencies))
        else:
            for dep in dependencies:
                if dep == task_id or dep not in index_of:
                    _check_dependencies(task_id, index, dependencies, index_of, problem)
                    break
        if timeout is not None and not (
            isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0
        ):
            problem(
                task_id, index, "timeout", f"must be a positive number of seconds, not {timeout!r}"
            )
        if retry is not None and not isinstance(retry, RetryPolicy):
            problem(task_id, index, "retry", f"must be a RetryPolicy, not {retry!r}")
        if priority.__class__ is not int and (
            not isinstance(priority, int) or isinstance(priority, bool)
        ):
            problem(task_id, index, "priority", f"must be a whole number, not {priority!r}")
        if trigger_rule.__class__ is not TriggerRule:
            problem(task_id, index, "trigger_rule", f"unknown trigger rule {trigger_rule!r}")
        if breaker is not None and not (isinstance(breaker, str) and breaker):
            problem(task_id, index, "circuit_breaker", "must be a breaker name")
        if (
            max_interruptions.__class__ is not int
            and (not isinstance(max_interruptions, int) or isinstance(max_interruptions, bool))
        ) or not 0 <= max_interruptions <= MAX_INTERRUPTIONS:
            problem(
                task_id,
                index,
                "max_interruptions",
                f"must be a whole number from 0 to {MAX_INTERRUPTIONS}, not {max_interruptions!r}",
            )
    if problems:
        _raise(problems)
    return index_of


Problem = Callable[[str | None, int | None, str, str], None]


def dependency_ids(task_id: str, dependencies: Iterable[str] | None) -> tuple[str, ...]:
    """`dependencies` as a tuple of ids; a string is refused, naming the task: iterated, it
    would be one dependency per letter (`dependencies="fetch"` is 'f', 'e', 't', ...)."""
    if isinstance(dependencies, (str, bytes)):
        description = _one_string(dependencies)
        raise ValidationError(
            f"task {task_id!r}: dependencies: {description}",
            task_id=task_id,
            violations=[FieldViolation("dependencies", description)],
        )
    return tuple(dependencies) if dependencies else ()


def _one_string(value: str | bytes) -> str:
    return f"a string, read as one task id per letter: write dependencies=[{value!r}]"


def _index_str_ids(tasks: tuple[TaskSpec, ...]) -> dict[str, int] | None:
    """Each id's position, if every id is a distinct, non-empty, short enough str; else None."""
    try:
        index_of = {task[0]: index for index, task in enumerate(tasks)}  # task[0]: its id
        if (
            len(index_of) == len(tasks)  # no duplicate
            and set(map(type, index_of)) == {str}  # before anything compares them to a str
            and "" not in index_of
            and max(map(len, index_of)) <= MAX_ID_LENGTH
        ):
            return index_of
    except Exception:  # an id that cannot be hashed, or compared: `_index_ids` says which
        pass
    return None


def _index_ids(tasks: tuple[TaskSpec, ...], problem: Problem) -> dict[str, int]:
    """Each valid id's position (the first, if repeated), reporting every bad one."""
    index_of: dict[str, int] = {}
    for index, task in enumerate(tasks):
        task_id = task.id
        if not isinstance(task_id, str) or not task_id:
            problem(None, index, "id", "a task needs a non-empty id")
            continue
        if len(task_id) > MAX_ID_LENGTH:
            problem(task_id, index, "id", f"longer than {MAX_ID_LENGTH} characters")
        if task_id in index_of:
            problem(task_id, index, "id", f"duplicate task id {task_id!r}")
            continue
        index_of[task_id] = index
    return index_of


def _check_dependencies(
    task_id: str,
    index: int,
    dependencies: tuple[str, ...],
    index_of: Mapping[str, int],
    problem: Problem,
) -> None:
    for position, dep in enumerate(dependencies):
        if dep not in index_of:
            problem(task_id, index, f"dependencies[{position}]", f"unknown task {dep!r}")
        elif dep == task_id:
            problem(task_id, index, f"dependencies[{position}]", "a task cannot depend on itself")


def _raise(problems: list[tuple[str | None, FieldViolation]]) -> None:
    task_id, first = problems[0]
    subject = f"task {task_id!r}: " if task_id is not None else ""
    message = f"{subject}{first.field}: {first.description}"
    if len(problems) > 1:
        message += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
    raise ValidationError(message, task_id=task_id, violations=[v for _, v in problems])
