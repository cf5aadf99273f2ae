"""What travels on SchedulerService.Work, both ways and on both sides: the daemon's (a hello,
updates in; the welcome, assignments, cancels and heartbeats out) and a worker's (the
reverse, as `dukat.client.Worker` speaks it).

Built once per assignment and read once per result on the daemon's hot path, so these take
plain values rather than engine records, and build each message in one constructor call.
What a worker sends is held to the wire's bounds (`_bounds`): a bad hello is refused, the
words of a report are cut.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from dukat.actions import (
    DispatchAction,
    DispatchResult,
    DispatchTask,
    ProgressSink,
    UpstreamResult,
)
from dukat.convert._bounds import (
    MAX_NAME,
    MAX_QUEUES,
    Problems,
    check_count,
    check_length,
    cut,
)
from dukat.convert._tables import TASK_STATES, duration, seconds
from dukat.core.results import TaskResult
from dukat.core.states import TaskState
from dukat.errors import FieldViolation, ProtocolError, TaskFailedRemotely, ValidationError
from dukat.v1 import scheduler_pb2, work_pb2

AttemptKey = tuple[str, str, int]
"""(job_id, task_id, attempt), as every report echoes it."""

# -- the daemon's side: what a worker sends ---------------------------------------------------


def worker_hello_from_proto(hello: work_pb2.WorkerHello) -> tuple[str, tuple[str, ...], int]:
    """(worker_id, queues, max_in_flight) of a hello; ValidationError at `hello.*` paths."""
    problems = Problems()
    report = problems.report()
    queues = tuple(dict.fromkeys(hello.queues))  # a queue named twice is served once
    if not queues:
        problems.add(None, "hello.queues", "name at least one queue to serve")
    elif "" in queues:
        problems.add(None, "hello.queues", "a queue name is empty")
    check_count(report, "hello.queues", len(queues), MAX_QUEUES)
    for queue in queues:
        if len(queue) > MAX_NAME:
            report("hello.queues", f"a queue name of {len(queue)} characters; at most {MAX_NAME}")
            break
    if hello.max_in_flight < 1:
        problems.add(None, "hello.max_in_flight", f"must be at least 1, not {hello.max_in_flight}")
    check_length(report, "hello.worker_id", hello.worker_id, MAX_NAME)
    problems.raise_if_any()
    return hello.worker_id, queues, hello.max_in_flight


def worker_update_from_proto(request: scheduler_pb2.WorkRequest) -> work_pb2.WorkerUpdate:
    """The update a WorkRequest after the hello carries: a second hello is ProtocolError
    (FAILED_PRECONDITION), a request with neither a ValidationError."""
    kind = request.WhichOneof("kind")
    if kind == "update":
        return request.update
    if kind == "hello":
        raise ProtocolError("a second hello: a worker says hello once, first; then updates")
    raise ValidationError(
        "a WorkRequest with neither hello nor update; send an empty update as a heartbeat"
    )


def report_key(report: work_pb2.WorkProgress | work_pb2.WorkResult) -> AttemptKey:
    """The attempt a progress report or a result is for."""
    return (report.job_id, report.task_id, report.attempt)


def check_report_key(key: AttemptKey) -> None:
    """ValidationError for a report whose ids no assignment could have had."""
    job_id, task_id, attempt = key
    if not job_id or not task_id or attempt < 1:
        raise ValidationError(
            f"a report names job {job_id!r}, task {task_id!r}, attempt {attempt}: echo "
            "the ids and attempt of the assignment",
            violations=[FieldViolation("update", "job_id, task_id and attempt >= 1")],
        )


def work_progress_from_proto(progress: work_pb2.WorkProgress) -> tuple[float | None, str]:
    """(fraction, message) of a progress report; ValidationError for a fraction outside
    0..1 (NaN too); the message cut at MAX_TEXT."""
    fraction = progress.fraction if progress.HasField("fraction") else None
    if fraction is not None and not 0.0 <= fraction <= 1.0:  # NaN too
        raise ValidationError(
            f"progress fraction must be between 0 and 1, not {fraction!r}",
            violations=[FieldViolation("update.progress.fraction", "0.0 to 1.0")],
        )
    return fraction, cut(progress.message)


def work_outcome_from_proto(
    result: work_pb2.WorkResult, max_bytes: int
) -> DispatchResult | TaskFailedRemotely:
    """What a result says: the attempt's DispatchResult, or the error it failed with (also
    a success the daemon does not keep, `work_success_from_proto`). ValidationError for a
    result with no outcome."""
    outcome = result.WhichOneof("outcome")
    if outcome == "success":
        try:
            return work_success_from_proto(result.success, max_bytes)
        except TaskFailedRemotely as refused:
            return refused
    if outcome == "error":
        return work_error_from_proto(result.error)
    raise ValidationError(
        f"result for {result.job_id}/{result.task_id} attempt {result.attempt} "
        "has no outcome: set success or error",
        violations=[FieldViolation("update.results.outcome", "set one")],
    )


def work_error_from_proto(error: work_pb2.WorkError) -> TaskFailedRemotely:
    """The engine's error for a worker's WorkError; its words cut at MAX_TEXT (a report
    is never refused: that would lose the outcome)."""
    return TaskFailedRemotely(
        cut(error.message) or "the worker said no more",
        type=cut(error.type, MAX_NAME),
        retryable=error.retryable,
    )


def work_success_from_proto(success: work_pb2.WorkSuccess, max_bytes: int) -> DispatchResult:
    """The result of a worker's WorkSuccess; TaskFailedRemotely (not retryable) for one the
    daemon does not keep: a payload over `max_bytes`, a content type over MAX_NAME."""
    size = len(success.payload)
    if size > max_bytes:
        raise TaskFailedRemotely(
            f"the worker's result is {size} bytes, over the daemon's max_result_bytes "
            f"({max_bytes})",
            type="ResultTooLarge",
            retryable=False,
        )
    content_type = success.content_type
    if len(content_type) > MAX_NAME:
        raise TaskFailedRemotely(
            f"the worker's content_type is {len(content_type)} characters, over {MAX_NAME}",
            type="ResultTooLarge",
            retryable=False,
        )
    return DispatchResult(success.payload, content_type)


# -- the daemon's side: what it sends ---------------------------------------------------------


def worker_welcome_to_proto(
    worker_id: str,
    heartbeat_interval: float,
    heartbeat_timeout: float,
    max_result_bytes: int,
    *,
    daemon_heartbeats: bool = False,
) -> scheduler_pb2.WorkResponse:
    """The welcome, the first response on a stream: the worker's terms."""
    return scheduler_pb2.WorkResponse(
        welcome=work_pb2.WorkerWelcome(
            worker_id=worker_id,
            heartbeat_interval=duration(heartbeat_interval),
            heartbeat_timeout=duration(heartbeat_timeout),
            max_result_bytes=max_result_bytes,
            daemon_heartbeats=daemon_heartbeats,
        )
    )


def upstream_result_to_proto(outcome: TaskResult) -> work_pb2.UpstreamResult:
    """How a dependency ended; a payload only when it was a dispatch task that succeeded."""
    result = outcome.result
    if outcome.state is TaskState.SUCCEEDED and isinstance(result, DispatchResult):
        return work_pb2.UpstreamResult(
            task_id=outcome.task_id,
            state=TASK_STATES.to_proto(outcome.state),
            payload=result.payload,
            content_type=result.content_type,
        )
    return work_pb2.UpstreamResult(
        task_id=outcome.task_id,
        state=TASK_STATES.to_proto(outcome.state),
        error=outcome.message if outcome.state is not TaskState.SUCCEEDED else "",
    )


def task_assignment_to_proto(
    job_id: str,
    task_id: str,
    attempt: int,
    action: DispatchAction,
    upstream: Sequence[TaskResult] = (),
    timeout: float | None = None,
) -> tuple[work_pb2.TaskAssignment, int]:
    """An assignment, and about its size in bytes (for a message's byte cap); `upstream`:
    how each dependency ended; `timeout`: what is left of the attempt's time, None for no
    limit."""
    upstream_results = [upstream_result_to_proto(outcome) for outcome in upstream]
    message = work_pb2.TaskAssignment(
        job_id=job_id,
        task_id=task_id,
        attempt=attempt,
        queue=action.queue,
        payload=action.payload,
        content_type=action.content_type,
        upstream_results=upstream_results,
    )
    if timeout is not None:
        message.timeout.CopyFrom(duration(max(timeout, 0.001)))
    size = 64 + len(action.payload) + sum(len(u.payload) for u in upstream_results)
    return message, size


def task_cancel_to_proto(key: AttemptKey, reason: str) -> work_pb2.TaskCancel:
    job_id, task_id, attempt = key
    return work_pb2.TaskCancel(job_id=job_id, task_id=task_id, attempt=attempt, reason=reason)


def work_response_to_proto(
    assignments: Sequence[work_pb2.TaskAssignment] = (),
    cancels: Sequence[work_pb2.TaskCancel] = (),
) -> scheduler_pb2.WorkResponse:
    """One message of assignments and cancels; with neither, the daemon's heartbeat."""
    return scheduler_pb2.WorkResponse(assignments=assignments, cancels=cancels)


# -- a worker's side --------------------------------------------------------------------------


class WorkTerms(NamedTuple):
    """What a daemon's welcome says, as a worker uses it."""

    worker_id: str
    heartbeat_interval: float
    """Seconds between a worker's updates at most; 0: the welcome named none."""
    heartbeat_timeout: float
    max_result_bytes: int
    """The largest success payload the daemon keeps; 0: no limit named."""
    daemon_heartbeats: bool
    """The daemon says something every interval: silence past the timeout is a dead stream."""


def worker_hello_to_proto(
    worker_id: str, queues: Iterable[str], max_in_flight: int
) -> scheduler_pb2.WorkRequest:
    hello = work_pb2.WorkerHello(worker_id=worker_id, queues=queues, max_in_flight=max_in_flight)
    return scheduler_pb2.WorkRequest(hello=hello)


def work_terms_from_proto(response: scheduler_pb2.WorkResponse) -> WorkTerms:
    """The terms of the welcome, the first response on a stream."""
    welcome = response.welcome
    return WorkTerms(
        welcome.worker_id,
        seconds(welcome.heartbeat_interval),
        seconds(welcome.heartbeat_timeout),
        welcome.max_result_bytes,
        welcome.daemon_heartbeats,
    )


def dispatch_task_from_proto(
    assignment: work_pb2.TaskAssignment, progress_sink: ProgressSink | None = None
) -> DispatchTask:
    """An assignment as a worker's handler gets it; its progress reports go to
    `progress_sink`."""
    timeout = seconds(assignment.timeout) if assignment.HasField("timeout") else None
    return DispatchTask(
        job_id=assignment.job_id,
        task_id=assignment.task_id,
        attempt=assignment.attempt,
        queue=assignment.queue,
        payload=assignment.payload,
        content_type=assignment.content_type,
        upstream_results=tuple(
            UpstreamResult(
                task_id=upstream.task_id,
                state=TASK_STATES.from_proto(upstream.state, "state"),
                payload=upstream.payload,
                content_type=upstream.content_type,
                error=upstream.error,
            )
            for upstream in assignment.upstream_results
        ),
        timeout=timeout,
        progress_sink=progress_sink,
    )


def work_response_from_proto(
    response: scheduler_pb2.WorkResponse, progress_sink: ProgressSink | None = None
) -> tuple[list[DispatchTask], list[tuple[AttemptKey, str]]]:
    """The assignments of a response (to run first), and its cancels as (key, reason)."""
    tasks = [dispatch_task_from_proto(a, progress_sink) for a in response.assignments]
    cancels = [(report_key(cancel), cancel.reason) for cancel in response.cancels]
    return tasks, cancels


def work_success_to_proto(key: AttemptKey, payload: bytes) -> work_pb2.WorkResult:
    job_id, task_id, attempt = key
    return work_pb2.WorkResult(
        job_id=job_id,
        task_id=task_id,
        attempt=attempt,
        success=work_pb2.WorkSuccess(payload=payload),
    )


def work_error_to_proto(
    key: AttemptKey, message: str, type: str, *, retryable: bool = False
) -> work_pb2.WorkResult:
    job_id, task_id, attempt = key
    return work_pb2.WorkResult(
        job_id=job_id,
        task_id=task_id,
        attempt=attempt,
        error=work_pb2.WorkError(message=message, type=type, retryable=retryable),
    )


def work_progress_to_proto(
    key: AttemptKey, fraction: float | None, message: str
) -> work_pb2.WorkProgress:
    job_id, task_id, attempt = key
    progress = work_pb2.WorkProgress(
        job_id=job_id, task_id=task_id, attempt=attempt, message=message
    )
    if fraction is not None:
        progress.fraction = fraction
    return progress


def worker_update_to_proto(
    results: Sequence[work_pb2.WorkResult] = (),
    progress: Sequence[work_pb2.WorkProgress] = (),
    *,
    draining: bool = False,
) -> scheduler_pb2.WorkRequest:
    """One update of results and progress; with neither, the worker's heartbeat."""
    update = work_pb2.WorkerUpdate(results=results, progress=progress, draining=draining)
    return scheduler_pb2.WorkRequest(update=update)
