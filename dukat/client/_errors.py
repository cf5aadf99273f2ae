"""gRPC statuses -> `dukat.errors`: the one table, and the one function that applies it."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from dukat.errors import (
    DaemonError,
    DaemonNotFoundError,
    DaemonUnavailableError,
    DeadlineExceededError,
    FailedPreconditionError,
    FieldViolation,
    InvalidArgumentError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
)

__all__ = ["ERRORS_BY_CODE", "from_rpc_error"]

ERRORS_BY_CODE: dict[grpc.StatusCode, type[DaemonError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: DaemonNotFoundError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.UNAVAILABLE: DaemonUnavailableError,
}
"""Every other code becomes a plain `DaemonError` carrying it."""


def from_rpc_error(error: grpc.aio.AioRpcError) -> DaemonError:
    """The `dukat.errors` exception for a failed call, with the status's details decoded."""
    code = error.code()
    details = error.details() or ""
    kind = ERRORS_BY_CODE.get(code, DaemonError)
    if kind is InvalidArgumentError:
        violations = _violations(error)
        return InvalidArgumentError(
            details, code=code.name, task_id=_task_id(details), violations=violations
        )
    return kind(details, code=code.name)


def _violations(error: grpc.aio.AioRpcError) -> list[FieldViolation]:
    try:
        status = rpc_status.from_call(error)
    except ValueError:  # details that contradict the status line: trust the status line
        return []
    violations = []
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            request = error_details_pb2.BadRequest()
            detail.Unpack(request)
            violations.extend(
                FieldViolation(v.field, v.description) for v in request.field_violations
            )
    return violations


def _task_id(details: str) -> str | None:
    # The daemon's messages start "task 'x': ..." when a task is at fault (dukatd.status):
    # the wire has no field for it, and a ValidationError is expected to say.
    if not details.startswith("task "):
        return None
    quoted = details[5:].split(":", 1)[0]
    if len(quoted) >= 2 and quoted[0] == quoted[-1] and quoted[0] in "'\"":
        return quoted[1:-1]
    return None
