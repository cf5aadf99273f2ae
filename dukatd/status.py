"""The one place where errors become gRPC statuses (STYLE.md habit 7).

Servicers raise; `rpc_errors` wraps each handler and turns what it raised into a status:

    ValidationError (CycleError too)  INVALID_ARGUMENT, with google.rpc.BadRequest details
    NotFoundError                     NOT_FOUND
    ProtocolError                     FAILED_PRECONDITION (a worker's stream broke the protocol)
    HeartbeatTimeoutError             DEADLINE_EXCEEDED (a worker went silent)
    Refused(code, message)            that code: PERMISSION_DENIED (exec is off),
                                      RESOURCE_EXHAUSTED (a limit of the daemon), ...
    FellBehind                        RESOURCE_EXHAUSTED (a watcher of every job lost events)
    LimitExceededError                RESOURCE_EXHAUSTED (too many circuit breakers)
    MemoryError                       RESOURCE_EXHAUSTED (the daemon ran out of memory, which
                                      is logged; a Submit so answered kept nothing of its job)

A request whose bytes did not parse (`dukatd.handlers.Undecodable`) is INVALID_ARGUMENT.
Anything else is a bug: gRPC answers UNKNOWN and the handler's traceback is logged.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from dukat.errors import (
    FellBehind,
    HeartbeatTimeoutError,
    LimitExceededError,
    NotFoundError,
    ProtocolError,
    Refused,
    ValidationError,
)
from dukatd.handlers import Undecodable

__all__ = ["abort", "rpc_errors", "to_status"]

_log = logging.getLogger(__name__)

# Details travel in a trailer (grpc-status-details-bin), and clients refuse metadata over
# 8 KiB by default: a job with 100,000 bad tasks must not make its own error unreadable.
MAX_VIOLATIONS = 20
MAX_TEXT = 300
_OUT_OF_MEMORY = (
    "dukatd ran out of memory (a Submit answered so kept nothing of its job); try again "
    "later, and lower --max-tasks (the tasks it holds) to what the host can give it"
)


# Errors answered with their own message under a code of their kind.
_CODES: tuple[tuple[type[Exception], int], ...] = (
    (NotFoundError, code_pb2.NOT_FOUND),
    (ProtocolError, code_pb2.FAILED_PRECONDITION),  # a worker's stream broke the protocol
    (HeartbeatTimeoutError, code_pb2.DEADLINE_EXCEEDED),  # a worker went silent
    (FellBehind, code_pb2.RESOURCE_EXHAUSTED),
    (LimitExceededError, code_pb2.RESOURCE_EXHAUSTED),
)


def _cut(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def to_status(error: BaseException) -> status_pb2.Status | None:
    """The google.rpc.Status for an error the daemon expects; None for anything else."""
    if isinstance(error, ValidationError):
        message = str(error)
        # The contract promises a message naming the task; the engine's usually does.
        if error.task_id and repr(error.task_id) not in message:
            message = f"task {error.task_id!r}: {message}"
        status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=_cut(message, 1000))
        if error.violations:
            request = error_details_pb2.BadRequest()
            for violation in error.violations[:MAX_VIOLATIONS]:
                request.field_violations.add(
                    field=_cut(violation.field), description=_cut(violation.description)
                )
            detail = any_pb2.Any()
            detail.Pack(request)
            status.details.append(detail)
        return status
    for kind, code in _CODES:
        if isinstance(error, kind):
            return status_pb2.Status(code=code, message=_cut(str(error), 1000))
    if isinstance(error, Refused):
        # The code by its name: dukat.errors names codes without importing grpc.
        code = code_pb2.Code.Value(error.code)
        return status_pb2.Status(code=code, message=_cut(str(error), 1000))
    if isinstance(error, MemoryError):
        return status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message=_OUT_OF_MEMORY)
    return None


async def abort(context: grpc.aio.ServicerContext, error: BaseException) -> NoReturn:
    """End the call with the status for `error`; re-raise `error` if it has none."""
    status = to_status(error)
    if status is None:
        raise error
    await context.abort_with_status(rpc_status.to_status(status))
    raise AssertionError("abort_with_status returned")  # it raises; this keeps types honest


Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])

# What `to_status` has a status for (MemoryError aside: it is logged too).
_ANSWERED = (ValidationError, Refused, *(kind for kind, _ in _CODES))


def rpc_errors(handler: Handler) -> Handler:
    """Wrap a servicer method (a coroutine: unary, or streaming through context.write)."""

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            if isinstance(request, Undecodable):
                raise Refused(
                    "INVALID_ARGUMENT",
                    f"the request is not a valid {request.message_name}: {request.reason}",
                )
            return await handler(self, request, context)
        except _ANSWERED as error:
            await abort(context, error)
        except MemoryError as error:
            _log.error("%s: out of memory", handler.__qualname__, exc_info=True)
            await abort(context, error)
        except grpc.aio.AbortError:  # the handler ended the call itself, as it meant to
            raise
        except Exception:
            if context.done():
                # The client went away while we wrote to it (grpc raises from the write):
                # nobody is left to answer, and nothing is wrong with the daemon.
                _log.debug("%s: the call ended under it", handler.__qualname__, exc_info=True)
                return None
            _log.exception("%s failed", handler.__qualname__)
            raise

    return wrapper  # type: ignore[return-value]
