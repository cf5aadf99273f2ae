"""What the tests read of a refused call: the error itself, and its BadRequest violations."""

from __future__ import annotations

from collections.abc import Awaitable

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status


async def rpc_error(awaitable: Awaitable[object]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await awaitable
    return caught.value


def violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """field -> description of the first detail's BadRequest."""
    status = rpc_status.from_call(error)
    assert status is not None and status.details, "no rich status details"
    request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(request)
    return {v.field: v.description for v in request.field_violations}
