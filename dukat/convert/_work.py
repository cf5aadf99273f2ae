"""What travels on SchedulerService.Work: a worker's hello and outcomes in, assignments and
welcome out.

Built once per assignment on the daemon's hot path, so these take plain values rather than
engine records, and build each message in one constructor call. What a worker sends is held
to the wire's bounds (`_bounds`): a bad hello is refused, the words of a report are cut.
"""

from __future__ import annotations

from collections.abc import Sequence

from dukat.actions import DispatchAction, DispatchResult
from dukat.convert._bounds import (
    MAX_NAME,
    MAX_QUEUES,
    Problems,
    check_count,
    check_length,
    cut,
)
from dukat.convert._tables import TASK_STATES, duration
from dukat.core.results import TaskResult
from dukat.core.states import TaskState
from dukat.errors import TaskFailedRemotely
from dukat.v1 import work_pb2


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
