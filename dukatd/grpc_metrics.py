"""gRPC server metrics under go-grpc-prometheus's names, from a grpc.aio server interceptor.

The existing interceptor packages (py-grpc-prometheus, ...) do not support grpc.aio. This
one wraps each method handler the server resolves, whatever its kind:

    grpc_server_started_total{grpc_type,grpc_service,grpc_method}
    grpc_server_handled_total{grpc_type,grpc_service,grpc_method,grpc_code}
    grpc_server_msg_received_total{grpc_type,grpc_service,grpc_method}
    grpc_server_msg_sent_total{grpc_type,grpc_service,grpc_method}
    grpc_server_handling_seconds{grpc_type,grpc_service,grpc_method}   histogram

`grpc_type` is unary | client_stream | server_stream | bidi_stream; `grpc_code` is spelled
as Go spells it (OK, InvalidArgument, NotFound, ...), as go-grpc-prometheus exports it, so
dashboards and alerts written for Go servers work unchanged.

Messages are counted where grpc turns them into bytes and back: the handler's request
deserializer runs once per message received and its response serializer once per message
sent, for every kind of method, including handlers that stream with `context.write`.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["GO_CODE_NAMES", "GrpcServerMetrics"]

# grpc-go's codes.Code.String(), which go-grpc-prometheus puts in grpc_code.
GO_CODE_NAMES: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.OK: "OK",
    grpc.StatusCode.CANCELLED: "Canceled",
    grpc.StatusCode.UNKNOWN: "Unknown",
    grpc.StatusCode.INVALID_ARGUMENT: "InvalidArgument",
    grpc.StatusCode.DEADLINE_EXCEEDED: "DeadlineExceeded",
    grpc.StatusCode.NOT_FOUND: "NotFound",
    grpc.StatusCode.ALREADY_EXISTS: "AlreadyExists",
    grpc.StatusCode.PERMISSION_DENIED: "PermissionDenied",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "ResourceExhausted",
    grpc.StatusCode.FAILED_PRECONDITION: "FailedPrecondition",
    grpc.StatusCode.ABORTED: "Aborted",
    grpc.StatusCode.OUT_OF_RANGE: "OutOfRange",
    grpc.StatusCode.UNIMPLEMENTED: "Unimplemented",
    grpc.StatusCode.INTERNAL: "Internal",
    grpc.StatusCode.UNAVAILABLE: "Unavailable",
    grpc.StatusCode.DATA_LOSS: "DataLoss",
    grpc.StatusCode.UNAUTHENTICATED: "Unauthenticated",
}

# go-grpc-prometheus's defaults (prometheus.DefBuckets), plus room for long streams (Watch,
# Work) that would otherwise all land in +Inf.
HANDLING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600, 3600)

_TYPES = {
    (False, False): "unary",
    (True, False): "client_stream",
    (False, True): "server_stream",
    (True, True): "bidi_stream",
}
_BEHAVIOUR_FIELD = {
    (False, False): "unary_unary",
    (True, False): "stream_unary",
    (False, True): "unary_stream",
    (True, True): "stream_stream",
}
_LABELS = ("grpc_type", "grpc_service", "grpc_method")


class GrpcServerMetrics(grpc.aio.ServerInterceptor):
    """The interceptor and its five metrics; pass it in `grpc.aio.server(interceptors=...)`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.started = Counter(
            "grpc_server_started",
            "Total number of RPCs started on the server.",
            _LABELS,
            registry=r,
        )
        self.handled = Counter(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            (*_LABELS, "grpc_code"),
            registry=r,
        )
        self.received = Counter(
            "grpc_server_msg_received",
            "Total number of RPC stream messages received on the server.",
            _LABELS,
            registry=r,
        )
        self.sent = Counter(
            "grpc_server_msg_sent",
            "Total number of gRPC stream messages sent by the server.",
            _LABELS,
            registry=r,
        )
        self.handling = Histogram(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level "
            "handled by the server.",
            _LABELS,
            buckets=HANDLING_BUCKETS,
            registry=r,
        )

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:  # no such method: grpc answers UNIMPLEMENTED itself
            return handler
        return self._wrap(handler, handler_call_details.method)

    def _wrap(self, handler: Any, full_method: str) -> grpc.RpcMethodHandler:
        service, _, method = full_method.lstrip("/").rpartition("/")
        kind = (bool(handler.request_streaming), bool(handler.response_streaming))
        labels = (_TYPES[kind], service, method)
        field = _BEHAVIOUR_FIELD[kind]
        behaviour = getattr(handler, field)
        # Resolve the label children once per call setup, not once per message.
        received = self.received.labels(*labels)
        sent = self.sent.labels(*labels)
        deserialize = handler.request_deserializer or _identity
        serialize = handler.response_serializer or _identity

        def counting_deserializer(data: bytes) -> Any:
            received.inc()
            return deserialize(data)

        def counting_serializer(message: Any) -> bytes:
            sent.inc()
            return serialize(message)

        if inspect.isasyncgenfunction(behaviour):
            wrapped: Callable[..., Any] = self._wrap_generator(behaviour, labels)
        else:
            wrapped = self._wrap_coroutine(behaviour, labels)
        return handler._replace(
            **{field: wrapped},
            request_deserializer=counting_deserializer,
            response_serializer=counting_serializer,
        )

    def _wrap_coroutine(
        self, behaviour: Callable[..., Awaitable[Any]], labels: tuple[str, str, str]
    ) -> Callable[..., Awaitable[Any]]:
        async def observed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            start = self._start(labels)
            code = grpc.StatusCode.UNKNOWN
            try:
                result = await behaviour(request, context)
                code = context.code() or grpc.StatusCode.OK
                return result
            except BaseException as error:
                code = _code_of(error, context)
                raise
            finally:
                self._end(labels, code, start)

        return observed

    def _wrap_generator(
        self, behaviour: Callable[..., AsyncIterator[Any]], labels: tuple[str, str, str]
    ) -> Callable[..., AsyncIterator[Any]]:
        async def observed(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            start = self._start(labels)
            code = grpc.StatusCode.UNKNOWN
            try:
                async for response in behaviour(request, context):
                    yield response
                code = context.code() or grpc.StatusCode.OK
            except BaseException as error:
                code = _code_of(error, context)
                raise
            finally:
                self._end(labels, code, start)

        return observed

    def _start(self, labels: tuple[str, str, str]) -> float:
        self.started.labels(*labels).inc()
        return time.perf_counter()

    def _end(self, labels: tuple[str, str, str], code: grpc.StatusCode, start: float) -> None:
        self.handled.labels(*labels, GO_CODE_NAMES.get(code, "Unknown")).inc()
        self.handling.labels(*labels).observe(time.perf_counter() - start)


def _code_of(error: BaseException, context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    if isinstance(error, grpc.aio.AbortError):  # context.abort*: the code is on the context
        return context.code() or grpc.StatusCode.UNKNOWN
    if isinstance(error, GeneratorExit | asyncio.CancelledError):
        # The client cancelled, or its deadline passed: grpc cancels the handler's task.
        # go-grpc-prometheus records what the server answered: the context's code if grpc
        # set one (DEADLINE_EXCEEDED), else CANCELLED.
        return context.code() or grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN  # what grpc answers for an unexpected exception


def _identity(value: Any) -> Any:
    return value
