"""Turning a validated `JobSpec` into the scheduler's records (`JobRun`, `TaskRun`).

`validate_job` (spec.py) has checked every field; what is left needs the scheduler: a runner
for each action, resources against the pool, and cycles, found on the records themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dukat.core._runs import JobRun, TaskRun
from dukat.core.breaker import BreakerRegistry
from dukat.core.graph import topological_order
from dukat.core.resources import ResourcePool
from dukat.core.runners import Runner, Unrunnable
from dukat.core.spec import JobSpec, TaskSpec
from dukat.errors import CycleError, FieldViolation, ValidationError

__all__ = ["build_job", "runners_for"]


def runners_for(
    spec: JobSpec,
    runners: Mapping[type, Runner],
    resources: ResourcePool,
    *,
    restoring: bool = False,
) -> list[Runner]:
    """The runner of each task's action, checking its resources can ever be granted.

    `restoring`: the job was accepted before (by a scheduler set up otherwise: exec was on,
    a resource was bigger): a task that cannot run here is not a reason to refuse the job
    and lose it, but gets an `Unrunnable` runner, which fails its attempts saying why."""
    found: list[Runner] = []
    append = found.append
    for index, task in enumerate(spec.tasks):
        # A task that needs no resources and whose action has a runner, the common case,
        # costs a lookup: no call per task.
        runner = None if task.resources else runners.get(task.action.__class__)
        if runner is None:
            try:
                runner = _runner_of(task, index, runners, resources)
            except ValidationError as error:
                if not restoring:
                    raise
                runner = Unrunnable(error)
        append(runner)
    return found


def _runner_of(
    task: TaskSpec, index: int, runners: Mapping[type, Runner], resources: ResourcePool
) -> Runner:
    runner = runners.get(type(task.action))
    if runner is None:
        raise ValidationError(
            f"task {task.id!r}: no runner for actions of type {type(task.action).__name__}",
            task_id=task.id,
            violations=[FieldViolation(f"tasks[{index}].action", "no runner for it")],
        )
    if task.resources:
        try:
            resources.check(task.resources, task_id=task.id)
        except ValidationError as error:
            raise ValidationError(
                str(error),
                task_id=task.id,
                violations=[
                    FieldViolation(f"tasks[{index}].{v.field}", v.description)
                    for v in error.violations
                ],
            ) from None
    return runner


def build_job(
    job: JobRun,
    runners: list[Runner],
    breakers: BreakerRegistry,
    positions: dict[str, int],
    *,
    within_limit: bool = True,
) -> JobRun:
    """Fill `job` with a record per task, wired to its dependents; CycleError if any.

    `positions`: each task's index in the spec, by id, as `validate_job` returns it. It
    becomes the job's table of tasks, each position replaced by the task's record: one
    hash table of every id per job, not two (at 100k tasks, 5 MB and 100k inserts).
    The breakers the tasks name are claimed from `breakers` (`job.breakers`), for the
    scheduler to release when the job is over; LimitExceededError if the registry cannot
    hold them all (unless not `within_limit`)."""
    spec = job.spec
    tasks: dict[str, Any] = positions
    # The optional `admit` hook, looked up once per runner: the picking loop then tests one
    # field, and tasks of runners without the hook pay nothing more.
    hooks: dict[int, Any] = {}
    # Each task is wired to its dependencies as its record is made, which those that come
    # before it in the spec already have (the usual job, in topological order: no cycle).
    ordered = True
    guarded: list[TaskRun] = []  # given their breakers once the job is known to be valid
    for task_spec, runner in zip(spec.tasks, runners, strict=True):
        key = id(runner)
        if key not in hooks:
            hooks[key] = getattr(runner, "admit", None)
        tasks[task_spec.id] = run = TaskRun(task_spec, job, runner, None, hooks[key])
        if task_spec.circuit_breaker is not None:
            guarded.append(run)
        for dep in task_spec.dependencies:
            upstream = tasks[dep]
            if upstream.__class__ is not TaskRun:  # still a position: a task further down
                ordered = False
            elif upstream.dependents:
                upstream.dependents.append(run)  # type: ignore[union-attr]
            else:
                upstream.dependents = [run]
    job.tasks = tasks
    if not ordered:
        _check_acyclic(spec)
        _wire_in_spec_order(tasks)
    # Only now: a claim makes the breakers it does not know yet, and a job rejected for a
    # cycle must leave nothing behind.
    if guarded:
        names = {run.spec.circuit_breaker for run in guarded}
        found = breakers.claim(names, within_limit=within_limit)  # type: ignore[arg-type]
        job.breakers = tuple(names)  # type: ignore[arg-type]
        for run in guarded:
            run.breaker = found[run.spec.circuit_breaker]  # type: ignore[index]
    job.remaining = len(tasks)
    return job


def _wire_in_spec_order(tasks: dict[str, TaskRun]) -> None:
    """Every task's dependents in the order of the spec, as an ordered job has them."""
    wired: dict[str, list[TaskRun]] = {}
    for run in tasks.values():
        for dep in run.spec.dependencies:
            wired.setdefault(dep, []).append(run)
    for run in tasks.values():
        run.dependents = wired.get(run.id, ())


def _check_acyclic(spec: JobSpec) -> None:
    """CycleError, naming the first task (in the spec's order) of the cycle found, unless
    the tasks can be ordered (`graph.topological_order`: the engine's one routine for it)."""
    try:
        topological_order({task.id: task.dependencies for task in spec.tasks})
    except CycleError as error:
        index = next(i for i, task in enumerate(spec.tasks) if task.id == error.cycle[0])
        raise CycleError(error.cycle, field=f"tasks[{index}].dependencies") from None
