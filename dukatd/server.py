"""The daemon's gRPC server, as a library (STYLE.md habit 11): tests and `dukatd.run` share it.

Nothing here parses configuration, takes locks or talks to systemd; it builds a server from
a scheduler and a list of addresses, and the caller starts and stops it.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from dukat.core.scheduler import Scheduler
from dukat.v1 import breaker_pb2, daemon_pb2, scheduler_pb2
from dukatd.breaker_service import BreakerService
from dukatd.daemon_service import DaemonService, default_service
from dukatd.handlers import add_service
from dukatd.scheduler_service import SchedulerService

__all__ = [
    "BREAKER_SERVICE",
    "DAEMON_SERVICE",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "SCHEDULER_SERVICE",
    "create_server",
    "server_options",
]

_SCHEDULER = scheduler_pb2.DESCRIPTOR.services_by_name["SchedulerService"]
_BREAKER = breaker_pb2.DESCRIPTOR.services_by_name["CircuitBreakerService"]
_DAEMON = daemon_pb2.DESCRIPTOR.services_by_name["DaemonService"]
SCHEDULER_SERVICE = _SCHEDULER.full_name
BREAKER_SERVICE = _BREAKER.full_name
DAEMON_SERVICE = _DAEMON.full_name
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""Room for a Submit of a 100,000-task job (~40 bytes a small task) with margin."""

# Keepalive, both ways (values in ms). The server pings a connection idle this long, to find
# workers and watchers whose host vanished without closing (their tasks must be taken back).
KEEPALIVE_TIME_MS = 30_000  # = dukatd.config's keepalive_time, its documented default
KEEPALIVE_TIMEOUT_MS = 10_000  # = its keepalive_timeout
# Enforcement of the clients' pings: no more often than every 10 s without data, allowed
# without calls (an idle worker keeps its connection alive); the third ping too early ends
# the connection with GOAWAY "too_many_pings". Clients must ping at >= 10 s; dukat's own
# client pings every 30 s.
MIN_CLIENT_PING_INTERVAL_MS = 10_000
MAX_PING_STRIKES = 2


def server_options(
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    *,
    keepalive_time: float = KEEPALIVE_TIME_MS / 1000,
    keepalive_timeout: float = KEEPALIVE_TIMEOUT_MS / 1000,
    keepalive_min_client_interval: float = MIN_CLIENT_PING_INTERVAL_MS / 1000,
) -> list[tuple[str, int]]:
    """The channel arguments of the server (see the constants above for why each).

    Times in seconds (dukatd's `--keepalive-time`, `--keepalive-timeout` and
    `--keepalive-min-client-interval`); grpc takes whole milliseconds, at least 1.
    """
    if max_message_bytes < 1024:
        raise ValueError(f"max_message_bytes must be at least 1024, not {max_message_bytes!r}")
    for name, seconds in (
        ("keepalive_time", keepalive_time),
        ("keepalive_timeout", keepalive_timeout),
    ):
        if not seconds > 0:  # also refuses NaN
            raise ValueError(f"{name} must be more than 0 seconds, not {seconds!r}")
    if not keepalive_min_client_interval >= 0:
        raise ValueError(
            "keepalive_min_client_interval must be 0 seconds or more, "
            f"not {keepalive_min_client_interval!r}"
        )
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", _ms(keepalive_time)),
        ("grpc.keepalive_timeout_ms", _ms(keepalive_timeout)),
        # 0: the server's own keepalive pings go on while a stream is quiet (an idle Watch).
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.keepalive_permit_without_calls", 1),
        (
            "grpc.http2.min_ping_interval_without_data_ms",
            round(keepalive_min_client_interval * 1000),
        ),
        ("grpc.http2.max_ping_strikes", MAX_PING_STRIKES),
        # Two daemons must never share a TCP port silently (ARCHITECTURE, "The daemon").
        ("grpc.so_reuseport", 0),
    ]


async def create_server(
    scheduler: Scheduler,
    addresses: Sequence[str],
    *,
    allow_exec: bool = False,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    service: SchedulerService | None = None,
    health_servicer: health.aio.HealthServicer | None = None,
    credentials: grpc.ServerCredentials | None = None,
    breaker_service: BreakerService | None = None,
    daemon_service: DaemonService | None = None,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    keepalive_time: float = KEEPALIVE_TIME_MS / 1000,
    keepalive_timeout: float = KEEPALIVE_TIMEOUT_MS / 1000,
    keepalive_min_client_interval: float = MIN_CLIENT_PING_INTERVAL_MS / 1000,
) -> grpc.aio.Server:
    """A grpc.aio server for `scheduler` bound to `addresses`, not started yet.

    A coroutine so that every grpc.aio object is made inside the running loop (the daemon's
    uvloop, or a test's loop). Serves:

    - `dukat.v1.SchedulerService` (`service`, or one made with `allow_exec`);
    - `dukat.v1.CircuitBreakerService` (`breaker_service`, or one over `scheduler.breakers`);
    - `dukat.v1.DaemonService` (`daemon_service`, or one that knows only the scheduler);
    - `grpc.health.v1.Health`, SERVING for "" and `dukat.v1.SchedulerService` (pass
      `health_servicer` to keep a handle on it: draining sets NOT_SERVING through it);
    - server reflection, listing those services.

    `interceptors` run around every call, in order (`dukatd.metrics.DaemonMetrics.grpc`).

    `addresses`: `unix:/path/to.sock` (or `unix:relative`), or `host:port` (port 0 picks
    one). TCP is bound with `credentials` when given, else insecure; choosing when insecure
    is acceptable (loopback, `--insecure`) is the caller's policy.

    Limits (`server_options`): requests and responses up to `max_message_bytes` (default 64
    MiB; bigger ones fail with RESOURCE_EXHAUSTED); keepalive pings from the server every
    `keepalive_time` (default 30 s) on an idle connection, answered within `keepalive_timeout`
    (default 10 s) or the connection is dropped; pings from clients accepted at most every
    `keepalive_min_client_interval` (default 10 s; dukat's client pings every 30 s), also without
    calls, two strikes then GOAWAY. dukatd passes its `--keepalive-*` options here.
    """
    if not addresses:
        raise ValueError("create_server needs at least one address to listen on")
    if service is None:
        service = SchedulerService(scheduler, allow_exec=allow_exec)
    elif service.scheduler is not scheduler:
        raise ValueError("the service given serves another scheduler than the one given")
    if health_servicer is None:
        health_servicer = health.aio.HealthServicer()
    if breaker_service is None:
        breaker_service = BreakerService(scheduler.breakers)
    elif breaker_service.registry is not scheduler.breakers:
        raise ValueError("the breaker service given serves another scheduler's breakers")
    if daemon_service is None:
        hub = service.work_hub
        daemon_service = default_service(
            scheduler,
            addresses,
            allow_exec=service.allow_exec,
            workers=hub.sessions if hub is not None else (),
        )

    options = server_options(
        max_message_bytes,
        keepalive_time=keepalive_time,
        keepalive_timeout=keepalive_timeout,
        keepalive_min_client_interval=keepalive_min_client_interval,
    )
    server = grpc.aio.server(options=options, interceptors=list(interceptors) or None)
    add_service(server, _SCHEDULER, service)
    add_service(server, _BREAKER, breaker_service)
    add_service(server, _DAEMON, daemon_service)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", SCHEDULER_SERVICE, BREAKER_SERVICE, DAEMON_SERVICE):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (
            SCHEDULER_SERVICE,
            BREAKER_SERVICE,
            DAEMON_SERVICE,
            health.SERVICE_NAME,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    for address in addresses:
        _bind(server, address, credentials)
    return server


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _bind(server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials | None) -> int:
    try:
        if credentials is not None and not address.startswith("unix:"):
            port = server.add_secure_port(address, credentials)
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as error:  # grpc says only "Failed to bind"; name the address
        raise OSError(f"cannot listen on {address!r}: {error}") from error
    if port == 0 and not address.startswith("unix:"):
        raise OSError(f"cannot listen on {address!r}")
    return port
