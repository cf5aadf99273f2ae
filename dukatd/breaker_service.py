"""dukat.v1.CircuitBreakerService over the scheduler's `BreakerRegistry`: thin, as habit 7 says.

The registry is the one the scheduler's tasks use, so a breaker tripped by Record calls from
other processes refuses the daemon's own tasks too, and the other way round. Breakers come
from the daemon's config (`apply_breaker_config`, at start and on SIGHUP) or are made on first
use (ConfigureBreaker, Acquire, a task naming one) with the registry's defaults.

State changes reach watchers of every job through the event ring (it listens to the
registry: `dukatd.event_ring`) and metrics through `dukatd.metrics` (it listens too): nothing
here publishes anything.

Wiring, for the daemon:

    apply_breaker_config(scheduler.breakers, config.breakers)
    server = await create_server(scheduler, addresses)   # serves BreakerService by default
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import grpc

from dukat import convert
from dukat.core.breaker import BreakerRegistry, CircuitBreaker, CircuitBreakerConfig
from dukat.errors import (
    FieldViolation,
    NotFoundError,
    RecordedFailure,
    Refused,
    ValidationError,
)
from dukat.v1 import breaker_pb2, breaker_pb2_grpc
from dukatd.journal import Journal, JournalWriteError
from dukatd.status import rpc_errors

__all__ = ["MAX_BREAKERS", "BreakerService", "apply_breaker_config"]

# Any client can create a breaker by naming it (Acquire, a task): without a bound a buggy
# client would grow the daemon's memory and the metrics' `breaker` label without end. The
# daemon's registry holds it (`BreakerRegistry(max_breakers=...)`), for every path.
MAX_BREAKERS = 1_000


def apply_breaker_config(
    registry: BreakerRegistry, configs: Mapping[str, CircuitBreakerConfig]
) -> None:
    """Create or reconfigure the breakers named in the daemon's config (`[breakers.NAME]`).

    Reconfiguring keeps a breaker's state (the engine's `configure`), so a SIGHUP reload does
    not close a breaker that is open for good reason.
    """
    for name, config in configs.items():
        breaker = registry.find(name)
        if breaker is None or breaker.config != config:  # an unchanged one keeps its counters
            registry.configure(name, config, within_limit=False)  # the file may pass the cap


class BreakerService(breaker_pb2_grpc.CircuitBreakerServiceServicer):
    """The breaker RPCs; one per daemon, over the scheduler's registry."""

    def __init__(self, registry: BreakerRegistry, *, journal: Journal | None = None) -> None:
        """`registry`: its `max_breakers` bounds the breakers clients may make (a new name
        past it is RESOURCE_EXHAUSTED). `journal`: ConfigureBreaker answers once the
        settings are on disk, and a restarted daemon configures the breaker so again
        (`dukatd.recovery`)."""
        self.registry = registry
        self.journal = journal

    @rpc_errors
    async def ListBreakers(
        self, request: breaker_pb2.ListBreakersRequest, context: grpc.aio.ServicerContext
    ) -> breaker_pb2.ListBreakersResponse:
        breakers = sorted(self.registry, key=lambda breaker: breaker.name)
        return breaker_pb2.ListBreakersResponse(
            breakers=[convert.breaker_to_proto(breaker) for breaker in breakers]
        )

    @rpc_errors
    async def GetBreaker(
        self, request: breaker_pb2.GetBreakerRequest, context: grpc.aio.ServicerContext
    ) -> breaker_pb2.GetBreakerResponse:
        breaker = self._existing(request.name)
        return breaker_pb2.GetBreakerResponse(breaker=convert.breaker_to_proto(breaker))

    @rpc_errors
    async def ConfigureBreaker(
        self, request: breaker_pb2.ConfigureBreakerRequest, context: grpc.aio.ServicerContext
    ) -> breaker_pb2.ConfigureBreakerResponse:
        # Validate everything before creating anything: a bad config makes no breaker.
        _check_name(request.name)
        config = convert.breaker_config_from_proto(request.config, path="config")
        breaker = self.registry.configure(request.name, config)
        if self.journal is not None:
            self.journal.configure_breaker(request.name, dataclasses.asdict(config))
            try:
                await self.journal.sync()
            except JournalWriteError as error:
                raise Refused(
                    "UNAVAILABLE",
                    f"{error}; the breaker is configured until the daemon restarts",
                ) from None
        return breaker_pb2.ConfigureBreakerResponse(breaker=convert.breaker_to_proto(breaker))

    @rpc_errors
    async def ResetBreaker(
        self, request: breaker_pb2.ResetBreakerRequest, context: grpc.aio.ServicerContext
    ) -> breaker_pb2.ResetBreakerResponse:
        breaker = self._existing(request.name)
        breaker.reset()
        return breaker_pb2.ResetBreakerResponse(breaker=convert.breaker_to_proto(breaker))

    @rpc_errors
    async def Acquire(
        self, request: breaker_pb2.AcquireRequest, context: grpc.aio.ServicerContext
    ) -> breaker_pb2.AcquireResponse:
        _check_name(request.name)
        breaker = self.registry.get(request.name)
        return convert.acquire_to_proto(breaker, breaker.acquire())

    @rpc_errors
    async def Record(
        self, request: breaker_pb2.RecordRequest, context: grpc.aio.ServicerContext
    ) -> breaker_pb2.RecordResponse:
        outcome = convert.CALL_OUTCOMES.from_proto(request.outcome, "outcome")
        breaker = self._existing(request.name)
        # A permit from an earlier generation is ignored by the engine, not refused: the call
        # it stands for was real, it just began under a state that has since changed.
        if outcome == "success":
            breaker.success(permit=request.permit)
        elif outcome == "failure":
            # Cut, not refused: refusing would lose the outcome (dukat.convert's bounds).
            error = RecordedFailure(convert.cut(request.error)) if request.error else None
            breaker.failure(error, permit=request.permit)
        else:
            breaker.release(permit=request.permit)
        return breaker_pb2.RecordResponse(state=convert.BREAKER_STATES.to_proto(breaker.state))

    def _existing(self, name: str) -> CircuitBreaker:
        _check_name(name)
        breaker = self.registry.find(name)
        if breaker is None:
            known = ", ".join(sorted(b.name for b in self.registry)[:20]) or "none"
            raise NotFoundError(
                f"no circuit breaker named {name!r} (known: {known}); Acquire or "
                "ConfigureBreaker creates one"
            )
        return breaker


def _check_name(name: str) -> None:
    if not name:
        raise ValidationError(
            "name is empty", violations=[FieldViolation("name", "name the breaker")]
        )
    if len(name) > convert.MAX_BREAKER_NAME:
        limit = convert.MAX_BREAKER_NAME
        raise ValidationError(
            f"name is {len(name)} characters long, over the limit of {limit}",
            violations=[FieldViolation("name", f"at most {limit} characters")],
        )
