"""The channel to a daemon and the calls over it: options, token, retries, error translation.

Keepalive and message sizes match what the daemon enforces (`dukatd.server`): the daemon
accepts client pings no more often than every 10 s and ends a connection on the third ping
that comes too early, so this client pings every 30 s; both sides take messages up to 64 MiB.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from dukat.client._errors import from_rpc_error
from dukat.client._reconnect import Backoff, Reconnect
from dukat.v1 import breaker_pb2_grpc, daemon_pb2_grpc, scheduler_pb2_grpc

__all__ = ["CLIENT_ID_KEY", "DEFAULT_MAX_MESSAGE_BYTES", "Connection", "channel_options"]

CLIENT_ID_KEY = "dukat-client-id"
"""Metadata naming the client that makes a call, for the daemon's per-client limits (open
Watch streams): one id per `Connection`, sent with every call. Other clients may send their
own; a call without one is counted by its peer address."""

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""The daemon's default (dukatd.server.DEFAULT_MAX_MESSAGE_BYTES): a 100,000-task Submit."""

KEEPALIVE_TIME_MS = 30_000
KEEPALIVE_TIMEOUT_MS = 20_000
# grpc's own reconnect backoff starts at 1 s and grows to 120 s: after a daemon restart a
# channel would sit out minutes while our retries found it failing fast. Keep it short;
# `Reconnect` decides how long to keep trying.
RECONNECT_BACKOFF_MS = (100, 2_000)

Response = TypeVar("Response")


def channel_options(max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> list[tuple[str, Any]]:
    """The channel arguments of a client (see the module docstring for why each)."""
    if max_message_bytes < 1024:
        raise ValueError(f"max_message_bytes must be at least 1024, not {max_message_bytes!r}")
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        # An idle worker or watcher keeps finding out that its daemon is still there.
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.initial_reconnect_backoff_ms", RECONNECT_BACKOFF_MS[0]),
        ("grpc.min_reconnect_backoff_ms", RECONNECT_BACKOFF_MS[0]),
        ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MS[1]),
    ]


class Connection:
    """A channel, its stubs, the call metadata (token) and the reconnect policy."""

    def __init__(
        self,
        address: str,
        *,
        token: str | None,
        credentials: grpc.ChannelCredentials | None,
        max_message_bytes: int,
        reconnect: Reconnect,
    ) -> None:
        if not isinstance(address, str) or not address.strip():
            raise ValueError(
                f"address must name a daemon, like 'unix:/run/dukatd/dukatd.sock' or "
                f"'localhost:7070', not {address!r}"
            )
        if token is not None and (not token or "\n" in token):
            raise ValueError("token must be a non-empty single line (or None for no token)")
        self.address = address
        self.reconnect = reconnect
        options = channel_options(max_message_bytes)
        if credentials is not None:
            self.channel = grpc.aio.secure_channel(address, credentials, options=options)
        else:
            self.channel = grpc.aio.insecure_channel(address, options=options)
        # Per-call metadata rather than call credentials: those need TLS, and the daemon's
        # default is a unix socket without it.
        self.metadata: tuple[tuple[str, str], ...] = (
            (CLIENT_ID_KEY, uuid.uuid4().hex),
            *((("authorization", f"Bearer {token}"),) if token else ()),
        )
        self.scheduler = scheduler_pb2_grpc.SchedulerServiceStub(self.channel)
        self.breakers = breaker_pb2_grpc.CircuitBreakerServiceStub(self.channel)
        self.daemon = daemon_pb2_grpc.DaemonServiceStub(self.channel)

    async def call(
        self,
        method: Callable[..., Awaitable[Response]],
        request: Any,
        *,
        idempotent: bool = True,
    ) -> Response:
        """A unary call; UNAVAILABLE retried by the policy when repeating it is safe."""
        backoff = Backoff(self.reconnect)
        while True:
            try:
                return await method(request, metadata=self.metadata)
            except grpc.aio.AioRpcError as error:
                if (
                    idempotent
                    and error.code() is grpc.StatusCode.UNAVAILABLE
                    and await backoff.wait()
                ):
                    continue
                raise from_rpc_error(error) from error

    async def close(self) -> None:
        await self.channel.close()
