"""Bearer-token auth: a grpc.aio interceptor that wants `authorization: Bearer <token>`.

grpc Python cannot see a unix socket peer's credentials, so access to the daemon is the
socket's permissions plus, with `--token-file`, this token (ARCHITECTURE, "The daemon").

Exempt: `grpc.health.v1.Health`, so that supervisors' probes (`dukatd health`, Docker's
HEALTHCHECK, Kubernetes' grpc probe) need no secret; health says SERVING or not and nothing
else. Server reflection is NOT exempt: it lists the services and their messages, which is
the map a caller without the token has no need of (`grpcurl -H 'authorization: Bearer ...'`).

Order with the metrics interceptor: pass `[metrics.grpc, auth]`. The first interceptor is the
outermost, so metrics wrap the handler this one returns and a refused call is counted, as
`grpc_server_handled_total{grpc_code="Unauthenticated"}` — what an alert on a client with a
stale token looks for.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc_health.v1 import health

__all__ = ["EXEMPT_PREFIXES", "BearerTokenAuth"]

EXEMPT_PREFIXES = (f"/{health.SERVICE_NAME}/",)
"""Methods (full names, `/package.Service/Method`) served without the token."""

_SCHEME = "bearer "
_BEHAVIOUR_FIELD = {  # (request_streaming, response_streaming) -> the handler's field
    (False, False): "unary_unary",
    (True, False): "stream_unary",
    (False, True): "unary_stream",
    (True, True): "stream_stream",
}


class BearerTokenAuth(grpc.aio.ServerInterceptor):
    """Answers UNAUTHENTICATED to every call without `authorization: Bearer <token>`."""

    def __init__(self, token: str) -> None:
        # What gRPC lets through as a metadata value: printable ASCII (RFC 6750 b64token is
        # a subset). A token outside it could never be sent, so no client could ever pass.
        if not token or not all("!" <= char <= "~" for char in token):
            raise ValueError(
                "the token must be non-empty printable ASCII without spaces (e.g. from "
                "`openssl rand -hex 32`)"
            )
        self._token = token.encode()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method: str = handler_call_details.method
        if method.startswith(EXEMPT_PREFIXES):
            return await continuation(handler_call_details)
        problem = self._problem(handler_call_details.invocation_metadata or ())
        handler = await continuation(handler_call_details)
        if problem is None or handler is None:  # None: no such method, grpc says UNIMPLEMENTED
            return handler
        return _refusing(handler, problem)

    def _problem(self, metadata: Any) -> str | None:
        """Why the call's metadata does not authenticate it, or None when it does."""
        values = [value for key, value in metadata if key == "authorization"]
        if not values:
            return (
                "this daemon wants a bearer token: send 'authorization: Bearer <token>' "
                "metadata (dukat.connect(address, token=...)), the token in dukatd's --token-file"
            )
        value = values[0]
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if len(values) > 1 or value[: len(_SCHEME)].lower() != _SCHEME:
            return "the authorization metadata must be one 'Bearer <token>'"
        # Constant time, so that the time of a refusal tells nothing about the token.
        if not hmac.compare_digest(value[len(_SCHEME) :].strip().encode(), self._token):
            return "the bearer token is not this daemon's (see its --token-file)"
        return None

    def __repr__(self) -> str:
        return "<BearerTokenAuth exempt: health>"  # never the token


def _refusing(handler: Any, problem: str) -> grpc.RpcMethodHandler:
    """`handler`, of the same kind and serializers, answering UNAUTHENTICATED at once."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, problem)

    # A coroutine serves every kind: a streaming handler may also be one (it writes with
    # context.write), and this one writes nothing; a request stream is left unread.
    field = _BEHAVIOUR_FIELD[(bool(handler.request_streaming), bool(handler.response_streaming))]
    return handler._replace(**{field: refuse})  # type: ignore[no-any-return]
