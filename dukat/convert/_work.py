"""What travels on SchedulerService.Work: a worker's hello in, assignments and welcome out.

Built once per assignment on the daemon's hot path, so these take plain values rather than
engine records, and build each message in one constructor call.
"""

from __future__ import annotations

from collections.abc import Sequence

from dukat.actions import DispatchAction, DispatchResult
from dukat.convert._tables import TASK_STATES, duration
from dukat.core.results import TaskResult
from dukat.core.states import TaskState
from dukat.errors import FieldViolation, ValidationError
from dukat.v1 import work_pb2

MAX_WORKER_ID = 256
"""Longest worker id kept (it only names the worker in logs)."""


def worker_hello_from_proto(hello: work_pb2.WorkerHello) -> tuple[str, tuple[str, ...], int]:
    """(worker_id, queues, max_in_flight) of a hello; ValidationError at `hello.*` paths."""
    problems = []
    queues = tuple(dict.fromkeys(hello.queues))  # a queue named twice is served once
    if not queues:
        problems.append(FieldViolation("hello.queues", "name at least one queue to serve"))
    elif "" in queues:
        problems.append(FieldViolation("hello.queues", "a queue name is empty"))
    if hello.max_in_flight < 1:
        problems.append(
            FieldViolation("hello.max_in_flight", f"must be at least 1, not {hello.max_in_flight}")
        )
    if len(hello.worker_id) > MAX_WORKER_ID:
        problems.append(FieldViolation("hello.worker_id", f"longer than {MAX_WORKER_ID}"))
    if problems:
        first = problems[0]
        raise ValidationError(f"{first.field}: {first.description}", violations=problems)
    return hello.worker_id, queues, hello.max_in_flight


def worker_welcome_to_proto(
    worker_id: str, heartbeat_interval: float, heartbeat_timeout: float, max_result_bytes: int
) -> work_pb2.WorkerWelcome:
    return work_pb2.WorkerWelcome(
        worker_id=worker_id,
        heartbeat_interval=duration(heartbeat_interval),
        heartbeat_timeout=duration(heartbeat_timeout),
        max_result_bytes=max_result_bytes,
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
    upstream: Sequence[work_pb2.UpstreamResult] = (),
    timeout: float | None = None,
) -> work_pb2.TaskAssignment:
    """An assignment; `timeout` is what is left of the attempt's time, None for no limit."""
    message = work_pb2.TaskAssignment(
        job_id=job_id,
        task_id=task_id,
        attempt=attempt,
        queue=action.queue,
        payload=action.payload,
        content_type=action.content_type,
        upstream_results=upstream,
    )
    if timeout is not None:
        message.timeout.CopyFrom(duration(max(timeout, 0.001)))
    return message
