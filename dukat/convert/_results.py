"""Task results (a successful attempt's value) on the wire: `TaskResultValue` and back; and
a failed task's `TaskFailure`.

Only the daemon's result types have a wire form (`DispatchResult`, `ExecResult`); anything
else (an in-process callable's return value) stays in the process that made it.
"""

from __future__ import annotations

from typing import Any

from dukat.actions import DispatchResult, ExecResult
from dukat.core.results import TaskFailure
from dukat.v1 import job_pb2

__all__ = [
    "task_failure_from_proto",
    "task_failure_to_proto",
    "task_result_from_proto",
    "task_result_to_proto",
]


def task_result_to_proto(value: Any) -> job_pb2.TaskResultValue | None:
    """The wire form of a task's result; None for a value that has none (or no result)."""
    if isinstance(value, DispatchResult):
        dispatch = job_pb2.DispatchResult(payload=value.payload, content_type=value.content_type)
        return job_pb2.TaskResultValue(dispatch=dispatch)
    if isinstance(value, ExecResult):
        exec_result = job_pb2.ExecResult(
            exit_code=value.exit_code, stdout=value.stdout, stderr=value.stderr
        )
        return job_pb2.TaskResultValue(exec=exec_result)
    return None


def task_result_from_proto(message: job_pb2.TaskResultValue) -> DispatchResult | ExecResult | None:
    """The result a `TaskResultValue` carries; None for a kind this code does not know."""
    kind = message.WhichOneof("kind")
    if kind == "dispatch":
        return DispatchResult(message.dispatch.payload, message.dispatch.content_type)
    if kind == "exec":
        return ExecResult(message.exec.exit_code, message.exec.stdout, message.exec.stderr)
    return None  # a newer daemon's kind (job.proto): no result rather than a failure


def task_failure_to_proto(failure: TaskFailure, *, tails: bool = True) -> job_pb2.TaskFailure:
    """The wire form of a failure; `tails` False leaves its stdout and stderr out."""
    message = job_pb2.TaskFailure(
        type=failure.type,
        message=failure.message,
        exit_code=failure.exit_code or 0,
        signal=failure.signal or 0,
    )
    if tails:
        message.stdout, message.stderr = failure.stdout, failure.stderr
    return message


def task_failure_from_proto(message: job_pb2.TaskFailure) -> TaskFailure:
    return TaskFailure(
        type=message.type,
        message=message.message,
        exit_code=message.exit_code or None,
        signal=message.signal or None,
        stdout=message.stdout,
        stderr=message.stderr,
    )
