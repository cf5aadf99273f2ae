"""The channel to a daemon and the calls over it: options, token, retries, error translation.

Keepalive and message sizes match what the daemon enforces (`dukatd.server`): the daemon
accepts client pings no more often than every 10 s and ends a connection on the third ping
that comes too early, so this client pings every 30 s; both sides take messages up to 64 MiB.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from dukat.client._errors import from_rpc_error
from dukat.client._reconnect import Backoff, Reconnect
from dukat.defaults import default_address, unix_spelling
from dukat.errors import DaemonUnavailableError
from dukat.v1 import breaker_pb2_grpc, daemon_pb2_grpc, scheduler_pb2_grpc

__all__ = [
    "CLIENT_ID_KEY",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "Connection",
    "channel_options",
    "check_address",
    "resolve_address",
]

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

# Codes a call can end with without the daemon having answered it.
_NOT_AN_ANSWER = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
    }
)


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


def check_address(address: object, where: str = "address") -> str:
    """`address` if it can name a daemon; else ValueError saying how to write it.

    A unix socket's path without its `unix:` (`/tmp/d.sock`) is refused with the fix: grpc
    would look it up as a host name and fail ("Domain name not found") only once the
    reconnect policy gave up. `where` names the setting in the message (`DUKAT_ADDRESS`).
    """
    if not isinstance(address, str) or not address.strip():
        raise ValueError(
            f"{where} must name a daemon, like 'unix:/run/dukatd/dukatd.sock' or "
            f"'localhost:7070', not {address!r}"
        )
    unix = unix_spelling(address)
    if unix is not None:
        raise ValueError(
            f"{where} {address!r} is a unix socket's path without its scheme, which grpc "
            f"would look up as a host name: write {unix!r}"
        )
    return address


def resolve_address(address: str | None) -> str:
    """`address`, else `DUKAT_ADDRESS`, else the daemon's default socket; checked."""
    if address is not None:
        return check_address(address)
    from_environment = os.environ.get("DUKAT_ADDRESS")
    if from_environment:
        return check_address(from_environment, "DUKAT_ADDRESS")
    return default_address()


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
        check_address(address)
        if token is not None and (not token or "\n" in token):
            raise ValueError("token must be a non-empty single line (or None for no token)")
        self.address = address
        self.reconnect = reconnect
        self.reached = False
        """Whether the daemon has answered on this connection yet: until then, an
        unreachable daemon is given up on after the policy's `connect_within`."""
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
        backoff = self.backoff()
        while True:
            try:
                response = await method(request, metadata=self.metadata)
            except grpc.aio.AioRpcError as error:
                await self.retry_or_raise(error, backoff, idempotent=idempotent)
                continue
            self.reached = True
            return response

    def backoff(self) -> Backoff:
        """A run of retries under this connection's policy and its first-contact budget."""
        return Backoff(self.reconnect, lambda: self.reached)

    async def retry_or_raise(
        self, error: grpc.aio.AioRpcError, backoff: Backoff, *, idempotent: bool = True
    ) -> None:
        """After a call or stream failed with `error`: return when it is time to try again
        (UNAVAILABLE, safe to repeat, within the policy), else raise its `dukat.errors` error."""
        if error.code() is not grpc.StatusCode.UNAVAILABLE:
            if error.code() not in _NOT_AN_ANSWER:
                self.reached = True  # the daemon said this: it was reached
            raise from_rpc_error(error) from error
        if idempotent and await backoff.wait():
            return
        raise self._unavailable(error, backoff) from error

    def _unavailable(self, error: grpc.aio.AioRpcError, backoff: Backoff) -> DaemonUnavailableError:
        """The error for a daemon given up on: its address, how long, and what to check."""
        details = error.details() or "unavailable"
        waited = f" for {backoff.waited:.1f}s" if backoff.retrying else ""
        if self.reached:
            message = f"lost dukatd at {self.address}, not back{waited}: {details}"
        else:
            default = default_address()
            where = (
                "that is its default socket"
                if self.address == default
                else f"by default it listens on {default}"
            )
            message = (
                f"cannot reach dukatd at {self.address} (tried{waited}: {details}). Is "
                f"dukatd running? Start it with `dukatd` (`make run` in a checkout); {where}"
            )
        return DaemonUnavailableError(
            error.details() or "", code=error.code().name, message=message
        )

    async def close(self) -> None:
        await self.channel.close()
