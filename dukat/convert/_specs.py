"""Job and task specs: proto -> engine (with the wire's own validation) and back."""

from __future__ import annotations

from typing import Any

from dukat.actions import DispatchAction, ExecAction
from dukat.convert._bounds import (
    MAX_ARG,
    MAX_ARGV,
    MAX_BREAKER_NAME,
    MAX_ENV,
    MAX_NAME,
    MAX_PATH,
    MAX_RESOURCES,
    MAX_TEXT,
    Problems,
    Report,
    check_count,
    check_labels,
    check_length,
    check_mapping,
    duration_seconds,
)
from dukat.convert._tables import (
    DEFAULT_INITIAL_BACKOFF,
    DEFAULT_JITTER,
    DEFAULT_MAX_BACKOFF,
    DEFAULT_MULTIPLIER,
    RESOURCE_TYPES,
    TRIGGER_RULES,
    duration,
)
from dukat.core.resources import ResourceRequirement, ResourceType
from dukat.core.retry import RetryPolicy
from dukat.core.spec import DEFAULT_MAX_INTERRUPTIONS, JobSpec, TaskSpec
from dukat.core.states import TriggerRule
from dukat.errors import FieldViolation, ValidationError
from dukat.v1 import job_pb2

# -- errors -----------------------------------------------------------------------------------


def at_path(error: ValidationError, prefix: str) -> ValidationError:
    """`error` with its field paths moved under `prefix` (`tasks[3].id` -> `job.tasks[3].id`).

    The engine validates a JobSpec and names fields relative to it; a client sent the spec as
    field `job` of a SubmitRequest, so that is where its paths start.
    """
    violations = [FieldViolation(f"{prefix}.{v.field}", v.description) for v in error.violations]
    moved = ValidationError(str(error), task_id=error.task_id, violations=violations)
    moved.__cause__ = error
    return moved


# -- specs: proto -> engine -------------------------------------------------------------------


def job_spec_from_proto(
    job: job_pb2.JobSpec, *, path: str = "job", lenient: Report | None = None
) -> JobSpec:
    """The engine's JobSpec for a proto one; ValidationError for what the wire alone gets wrong.

    Paths in the error start at `path`, the request field holding the job. `lenient`: for a
    spec kept in a journal, whose values may be out of bounds that came after it
    (`dukat.convert._bounds`): those are told to it and brought within them, not refused.
    """
    problems = Problems(lenient)
    tasks = tuple(
        _task_from_proto(task, path, index, problems) for index, task in enumerate(job.tasks)
    )
    labels = dict(job.labels)
    if labels:
        check_labels(problems.report(), f"{path}.labels", labels)
    problems.raise_if_any()
    return JobSpec(
        tasks=tasks,
        labels=labels,
        fail_fast=job.fail_fast,
        # 0 is "no limit of its own"; a negative number goes on for the engine to reject.
        max_concurrency=job.max_concurrency or None,
    )


def _task_from_proto(
    task: job_pb2.TaskSpec, job_path: str, index: int, problems: Problems
) -> TaskSpec:
    # Once per task of every Submit: empty fields (most of them) are not copied nor checked,
    # a bound costs a comparison, and the path is only spelled out for a problem.
    task_id = task.id

    def problem(field: str, description: str) -> None:
        problems.add(task_id, f"{job_path}.tasks[{index}].{field}", description)

    def bound(field: str, description: str) -> None:
        problems.bound(task_id, f"{job_path}.tasks[{index}].{field}", description)

    kind = task.WhichOneof("action")
    action: Any
    if kind == "dispatch":
        dispatch = task.dispatch
        queue, content_type = dispatch.queue, dispatch.content_type
        if not queue:
            problem("dispatch.queue", "a dispatch task needs a queue")
        elif len(queue) > MAX_NAME:
            check_length(bound, "dispatch.queue", queue, MAX_NAME)
        if len(content_type) > MAX_NAME:
            check_length(bound, "dispatch.content_type", content_type, MAX_NAME)
        action = DispatchAction(queue, dispatch.payload, content_type)
    elif kind == "exec":
        action = _exec_from_proto(task.exec, problem, bound)
    else:
        problem("action", "a task needs an action: set exec or dispatch")
        action = None
    description = task.description
    if len(description) > MAX_TEXT:
        check_length(bound, "description", description, MAX_TEXT)
    resources: tuple[ResourceRequirement, ...] = ()
    if task.resources:
        check_count(bound, "resources", len(task.resources), MAX_RESOURCES)
        found = (
            _resource_from_proto(requirement, f"resources[{index}]", problem, bound)
            for index, requirement in enumerate(task.resources)
        )
        resources = tuple(r for r in found if r is not None)
    breaker = task.circuit_breaker
    if len(breaker) > MAX_BREAKER_NAME:
        check_length(bound, "circuit_breaker", breaker, MAX_BREAKER_NAME)
    trigger_rule = TriggerRule.ALL_SUCCESS
    if task.trigger_rule:
        try:
            trigger_rule = TRIGGER_RULES.from_proto(
                task.trigger_rule, f"{job_path}.tasks[{index}].trigger_rule"
            )
        except ValidationError as error:
            problem("trigger_rule", error.violations[0].description)
    labels = {}
    if task.labels:
        labels = dict(task.labels)
        check_labels(bound, "labels", labels)
    # Positional, in TaskSpec's field order: a NamedTuple is made faster so.
    return TaskSpec(
        task_id,
        action,
        description,
        tuple(task.dependencies) if task.dependencies else (),
        resources,
        breaker or None,
        task.wait_for_breaker,
        _retry_from_proto(task.retry, problem, bound) if task.HasField("retry") else None,
        # Set but zero or negative goes on as it is: the engine rejects it with its own words.
        duration_seconds(bound, "timeout", task.timeout) if task.HasField("timeout") else None,
        task.priority,
        trigger_rule,
        labels,
        # Out of range goes on as it is: the engine rejects it with its own words.
        task.max_interruptions if task.HasField("max_interruptions") else DEFAULT_MAX_INTERRUPTIONS,
    )


def _exec_from_proto(
    action: job_pb2.ExecAction, problem: Report, bound: Report
) -> ExecAction | None:
    argv, env, cwd = tuple(action.argv), dict(action.env), action.cwd
    check_count(bound, "exec.argv", len(argv), MAX_ARGV)
    for position, arg in enumerate(argv):
        check_length(bound, f"exec.argv[{position}]", arg, MAX_ARG)
    check_mapping(bound, "exec.env", env, MAX_ENV, MAX_ARG, "a variable name")
    check_length(bound, "exec.cwd", cwd, MAX_PATH)
    # ExecAction checks itself (argv, env names, NULs); its paths go under `exec.`.
    try:
        return ExecAction(argv=argv, env=env, cwd=cwd or None, stdin=action.stdin)
    except ValidationError as error:
        for violation in error.violations:
            problem(f"exec.{violation.field}", violation.description)
        return None


def _resource_from_proto(
    requirement: job_pb2.ResourceRequirement, path: str, problem: Report, bound: Report
) -> ResourceRequirement | None:
    try:
        kind = RESOURCE_TYPES.from_proto(requirement.type, f"{path}.type")
    except ValidationError as error:
        problem(f"{path}.type", error.violations[0].description)
        return None
    name = requirement.name or None
    if kind is ResourceType.CUSTOM and name is None:
        problem(f"{path}.name", "a CUSTOM resource needs a name")
        return None
    if kind is not ResourceType.CUSTOM and name is not None:
        problem(f"{path}.name", f"only CUSTOM resources take a name, not {kind.name}")
        return None
    if name is not None:
        check_length(bound, f"{path}.name", name, MAX_NAME)
    try:
        return ResourceRequirement(kind, requirement.amount, name)
    except ValidationError as error:  # the name is checked above: what is left is the amount
        problem(f"{path}.amount", str(error))
        return None


def _retry_from_proto(
    retry: job_pb2.RetryPolicy, problem: Report, bound: Report
) -> RetryPolicy | None:
    try:
        return RetryPolicy(
            max_attempts=retry.max_attempts or 1,
            initial_backoff=(
                duration_seconds(bound, "retry.initial_backoff", retry.initial_backoff)
                if retry.HasField("initial_backoff")
                else DEFAULT_INITIAL_BACKOFF
            ),
            max_backoff=(
                duration_seconds(bound, "retry.max_backoff", retry.max_backoff)
                if retry.HasField("max_backoff")
                else DEFAULT_MAX_BACKOFF
            ),
            multiplier=retry.multiplier or DEFAULT_MULTIPLIER,
            jitter=retry.jitter if retry.HasField("jitter") else DEFAULT_JITTER,
        )
    except ValidationError as error:
        for violation in error.violations:
            problem(f"retry.{violation.field}", violation.description)
        return None


# -- specs: engine -> proto (for clients and tests) ------------------------------------------


_TRIGGER_WIRE = TRIGGER_RULES.to_wire


def job_spec_to_proto(spec: JobSpec) -> job_pb2.JobSpec:
    """The proto JobSpec for an engine one whose actions are ExecAction or DispatchAction."""
    return job_pb2.JobSpec(
        tasks=[_task_to_proto(task) for task in spec.tasks],
        labels=dict(spec.labels),
        fail_fast=spec.fail_fast,
        max_concurrency=spec.max_concurrency or 0,
    )


def _task_to_proto(task: TaskSpec) -> job_pb2.TaskSpec:
    action = task.action
    # A dispatch task (most of a big job's) in one constructor call; empty fields left unset.
    dispatch = exec_action = None
    if isinstance(action, DispatchAction):
        dispatch = job_pb2.DispatchAction(
            queue=action.queue, payload=action.payload, content_type=action.content_type
        )
    elif isinstance(action, ExecAction):
        exec_action = job_pb2.ExecAction(
            argv=action.argv, env=action.env, cwd=action.cwd or "", stdin=action.stdin
        )
    else:
        raise TypeError(f"task {task.id!r}: {action!r} has no wire form (exec or dispatch)")
    message = job_pb2.TaskSpec(
        id=task.id,
        description=task.description,
        dependencies=task.dependencies or None,
        circuit_breaker=task.circuit_breaker or "",
        wait_for_breaker=task.wait_for_breaker,
        priority=task.priority,
        trigger_rule=_TRIGGER_WIRE[task.trigger_rule],
        labels=dict(task.labels) if task.labels else None,
        timeout=None if task.timeout is None else duration(task.timeout),
        dispatch=dispatch,
        exec=exec_action,
    )
    if task.max_interruptions != DEFAULT_MAX_INTERRUPTIONS:  # unset is the default
        message.max_interruptions = task.max_interruptions
    for requirement in task.resources:
        message.resources.add(
            type=RESOURCE_TYPES.to_proto(requirement.type),
            amount=requirement.amount,
            name=requirement.name or "",
        )
    if task.retry is not None:
        retry = message.retry
        retry.max_attempts = task.retry.max_attempts
        retry.initial_backoff.CopyFrom(duration(task.retry.initial_backoff))
        retry.max_backoff.CopyFrom(duration(task.retry.max_backoff))
        retry.multiplier = task.retry.multiplier
        retry.jitter = task.retry.jitter
    return message
