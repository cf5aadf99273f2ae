"""`RemoteBreaker`: one of the daemon's named circuit breakers, shared by every process on the
host, with the engine's `CircuitBreaker` API.

The difference: each decision is a call to the daemon (CircuitBreakerService Acquire/Record),
so `acquire()`, `allow_request()`, `success()`, `failure()`, `release()` and `reset()` are
coroutines here where the engine's are plain methods; `state` and `retry_after` are what the
daemon said last (a property cannot make a call; `await breaker.refresh()` asks it now).
`async with breaker:` and `@breaker` work exactly like the engine's: a refused call raises
`CircuitBreakerError`, an exception in the block counts as a failure, a cancellation gives the
permit back without counting. One difference there too: if the daemon cannot be told the
outcome, that is logged, not raised (the guarded call's outcome must stay the caller's).
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from types import TracebackType
from typing import ParamSpec, TypeVar

from google.protobuf import duration_pb2

from dukat import convert
from dukat.client._connection import Connection
from dukat.core.breaker import CircuitBreakerState
from dukat.errors import CircuitBreakerError, DaemonError
from dukat.v1 import breaker_pb2

__all__ = ["RemoteBreaker"]

P = ParamSpec("P")
R = TypeVar("R")

_log = logging.getLogger(__name__)


class RemoteBreaker:
    """The daemon's breaker `name` (created there with its defaults on first Acquire)."""

    def __init__(self, connection: Connection, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a breaker needs a name, not {name!r}")
        self._connection = connection
        self.name = name
        self._state = CircuitBreakerState.CLOSED
        self._retry_after = 0.0
        # Permits travel with the calling task (nested `async with` blocks stack), not on
        # self: one RemoteBreaker may guard many concurrent calls.
        self._permits: ContextVar[tuple[int, ...]] = ContextVar(f"remote_{name}", default=())
        self._last_permit: ContextVar[int | None] = ContextVar(f"last_{name}", default=None)

    @property
    def state(self) -> CircuitBreakerState:
        """The state the daemon reported last (CLOSED before any call)."""
        return self._state

    @property
    def retry_after(self) -> float:
        """Seconds until trial calls, as the daemon said when it last refused one."""
        return self._retry_after if self._state is CircuitBreakerState.OPEN else 0.0

    async def refresh(self) -> CircuitBreakerState:
        """Ask the daemon for the breaker's state now (GetBreaker)."""
        request = breaker_pb2.GetBreakerRequest(name=self.name)
        response = await self._connection.call(self._connection.breakers.GetBreaker, request)
        self._heard(response.breaker.state, response.breaker.retry_after)
        return self._state

    def _heard(self, state: int, retry_after: duration_pb2.Duration) -> None:
        self._state = convert.BREAKER_STATES.from_proto(state, "state")
        self._retry_after = retry_after.seconds + retry_after.nanos / 1e9

    async def acquire(self) -> int | None:
        """Ask to make one call: a permit to hand back with the outcome, or None if refused."""
        request = breaker_pb2.AcquireRequest(name=self.name)
        # Not retried: a lost answer may have taken one of a half-open breaker's trial slots.
        response = await self._connection.call(
            self._connection.breakers.Acquire, request, idempotent=False
        )
        self._heard(response.state, response.retry_after)
        permit = response.permit if response.allowed else None
        self._last_permit.set(permit)
        return permit

    async def allow_request(self) -> bool:
        """Ask to make one call. True means go ahead, then report `success()` or `failure()`."""
        return await self.acquire() is not None

    async def success(self, *, permit: int | None = None) -> None:
        """The call that was allowed succeeded."""
        await self._record(breaker_pb2.CALL_OUTCOME_SUCCESS, permit)

    async def failure(self, exc: BaseException | None = None, *, permit: int | None = None) -> None:
        """The call that was allowed failed (`exc` travels as words, for the reason)."""
        error = f"{type(exc).__name__}: {exc}" if exc is not None else ""
        await self._record(breaker_pb2.CALL_OUTCOME_FAILURE, permit, error)

    async def release(self, *, permit: int | None = None) -> None:
        """The allowed call was not made (cancelled) and counts neither way."""
        await self._record(breaker_pb2.CALL_OUTCOME_RELEASE, permit)

    async def _record(self, outcome: int, permit: int | None, error: str = "") -> None:
        if permit is None:
            # The engine's by-hand style: allow_request() then success(); the permit is the
            # one this task was given last.
            permit = self._last_permit.get()
            if permit is None:
                raise RuntimeError(
                    f"breaker {self.name!r}: no permit to report on; call acquire() or "
                    "allow_request() first and report only calls that were allowed"
                )
        request = breaker_pb2.RecordRequest(
            name=self.name, permit=permit, outcome=outcome, error=error[:1000]
        )
        # Not retried: counting one failure twice could open the breaker.
        response = await self._connection.call(
            self._connection.breakers.Record, request, idempotent=False
        )
        self._state = convert.BREAKER_STATES.from_proto(response.state, "state")

    async def reset(self) -> None:
        """Close the breaker on the daemon and clear its counters (for every process)."""
        request = breaker_pb2.ResetBreakerRequest(name=self.name)
        response = await self._connection.call(self._connection.breakers.ResetBreaker, request)
        self._state = convert.BREAKER_STATES.from_proto(response.breaker.state, "state")

    def refused(self) -> CircuitBreakerError:
        """The error for a call the daemon did not allow, saying why."""
        half_open = self._state is CircuitBreakerState.HALF_OPEN
        return CircuitBreakerError(self.name, self.retry_after, half_open=half_open)

    async def __aenter__(self) -> RemoteBreaker:
        permit = await self.acquire()
        if permit is None:
            raise self.refused()
        self._permits.set((*self._permits.get(), permit))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        *outer, permit = self._permits.get()
        self._permits.set(tuple(outer))
        try:
            if exc is None:
                await self.success(permit=permit)
            elif isinstance(exc, Exception):
                await self.failure(exc, permit=permit)
            else:  # cancelled or interrupted: says nothing about the downstream
                await self.release(permit=permit)
        except DaemonError as error:
            # Raising here would turn a call that succeeded into one that looks failed (and
            # may be repeated), or hide the block's own exception: the call's outcome is the
            # caller's business, the breaker's bookkeeping is not.
            _log.warning("breaker %r: outcome not recorded: %s", self.name, error)

    def __call__(self, func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        """Decorate a coroutine function so that every call goes through this breaker."""
        if not inspect.iscoroutinefunction(func):
            raise TypeError(f"@{self.name} guards coroutine functions; {func!r} is not one")

        @functools.wraps(func)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            async with self:
                return await func(*args, **kwargs)

        return guarded

    def __repr__(self) -> str:
        return f"<RemoteBreaker {self.name!r} {self._state.name} at {self._connection.address}>"
