"""What users hand the scheduler: a job is a DAG of task specs, each with an action.

The specs are plain frozen data. `validate_job` checks a whole job at once and either accepts
it or raises one `ValidationError` listing every problem, each naming the task and field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from dukat.core.resources import ResourceRequirement
from dukat.core.retry import RetryPolicy
from dukat.core.states import TriggerRule
from dukat.errors import FieldViolation, ValidationError

__all__ = ["JobSpec", "TaskSpec", "validate_job"]

MAX_ID_LENGTH = 256


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


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A DAG of tasks, run together and watched as one."""

    tasks: tuple[TaskSpec, ...]
    labels: Mapping[str, str] = field(default_factory=dict)
    fail_fast: bool = False
    """Cancel the rest of the job as soon as one task fails."""
    max_concurrency: int | None = None
    """At most this many tasks of the job in flight; None: only the scheduler's limit."""


def validate_job(spec: JobSpec, *, max_tasks: int) -> None:
    """Check every field of a whole job (cycles are the scheduler's to find, see `find_cycle`).

    Raises `ValidationError` naming the first offending task and field, with every problem
    found in `violations`.
    """
    problems: list[tuple[str | None, FieldViolation]] = []

    def problem(task_id: str | None, field_path: str, description: str) -> None:
        problems.append((task_id, FieldViolation(field_path, description)))

    if not spec.tasks:
        problem(None, "tasks", "a job needs at least one task")
    elif len(spec.tasks) > max_tasks:
        problem(None, "tasks", f"{len(spec.tasks)} tasks is over the limit of {max_tasks}")
    if spec.max_concurrency is not None and not (
        isinstance(spec.max_concurrency, int) and spec.max_concurrency >= 1
    ):
        problem(None, "max_concurrency", f"must be at least 1, not {spec.max_concurrency!r}")
    if problems:
        _raise(problems)

    index_of: dict[str, int] = {}
    for index, task in enumerate(spec.tasks):
        where = f"tasks[{index}]"
        if not isinstance(task.id, str) or not task.id:
            problem(None, f"{where}.id", "a task needs a non-empty id")
            continue
        if len(task.id) > MAX_ID_LENGTH:
            problem(task.id, f"{where}.id", f"longer than {MAX_ID_LENGTH} characters")
        if task.id in index_of:
            problem(task.id, f"{where}.id", f"duplicate task id {task.id!r}")
            continue
        index_of[task.id] = index

    for index, task in enumerate(spec.tasks):
        where = f"tasks[{index}]"
        if task.action is None:
            problem(task.id, f"{where}.action", "a task needs an action")
        for position, dep in enumerate(task.dependencies):
            if dep == task.id:
                problem(
                    task.id, f"{where}.dependencies[{position}]", "a task cannot depend on itself"
                )
            elif dep not in index_of:
                problem(task.id, f"{where}.dependencies[{position}]", f"unknown task {dep!r}")
        if task.timeout is not None and not (
            isinstance(task.timeout, (int, float))
            and math.isfinite(task.timeout)
            and task.timeout > 0
        ):
            problem(
                task.id,
                f"{where}.timeout",
                f"must be a positive number of seconds, not {task.timeout!r}",
            )
        if task.retry is not None and not isinstance(task.retry, RetryPolicy):
            problem(task.id, f"{where}.retry", f"must be a RetryPolicy, not {task.retry!r}")
        if not isinstance(task.priority, int) or isinstance(task.priority, bool):
            problem(task.id, f"{where}.priority", f"must be a whole number, not {task.priority!r}")
        if not isinstance(task.trigger_rule, TriggerRule):
            problem(task.id, f"{where}.trigger_rule", f"unknown trigger rule {task.trigger_rule!r}")
        if task.circuit_breaker is not None and not (
            isinstance(task.circuit_breaker, str) and task.circuit_breaker
        ):
            problem(task.id, f"{where}.circuit_breaker", "must be a breaker name")
    if problems:
        _raise(problems)


def _raise(problems: list[tuple[str | None, FieldViolation]]) -> None:
    task_id, first = problems[0]
    subject = f"task {task_id!r}: " if task_id is not None else ""
    message = f"{subject}{first.field}: {first.description}"
    if len(problems) > 1:
        message += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
    raise ValidationError(message, task_id=task_id, violations=[v for _, v in problems])
