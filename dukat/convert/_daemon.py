"""The daemon's status and its breakers as they stand: engine words <-> proto, both ways."""

from __future__ import annotations

from dukat.convert._breakers import breaker_config_from_proto
from dukat.convert._tables import BREAKER_STATES, seconds, seconds_of, timestamp
from dukat.daemon_status import (
    BreakerStatus,
    DaemonStatus,
    QueueStatus,
    RayClusterStatus,
    ResourceStatus,
)
from dukat.v1 import breaker_pb2, daemon_pb2


def daemon_status_to_proto(status: DaemonStatus) -> daemon_pb2.DaemonStatus:
    return daemon_pb2.DaemonStatus(
        version=status.version,
        started_at=timestamp(status.started_at),
        listen=list(status.listen),
        state_dir=status.state_dir or "",
        allow_exec=status.allow_exec,
        max_concurrency=status.max_concurrency,
        tasks_running=status.tasks_running,
        jobs_live=status.jobs_live,
        jobs_finished=status.jobs_finished,
        resources=[
            daemon_pb2.ResourceStatus(name=r.name, capacity=r.capacity, used=r.used)
            for r in status.resources
        ],
        queues=[
            daemon_pb2.QueueStatus(name=q.name, workers=q.workers, slots=q.slots)
            for q in status.queues
        ],
        executor=status.executor,
        ray=None if status.ray is None else _ray_to_proto(status.ray),
    )


def _ray_to_proto(ray: RayClusterStatus) -> daemon_pb2.RayClusterStatus:
    return daemon_pb2.RayClusterStatus(
        address=ray.address,
        connected=ray.connected,
        unavailable_reason=ray.unavailable_reason,
        nodes=ray.nodes,
    )


def daemon_status_from_proto(message: daemon_pb2.DaemonStatus) -> DaemonStatus:
    return DaemonStatus(
        version=message.version,
        started_at=seconds_of(message.started_at),
        listen=tuple(message.listen),
        state_dir=message.state_dir or None,
        allow_exec=message.allow_exec,
        max_concurrency=message.max_concurrency,
        tasks_running=message.tasks_running,
        jobs_live=message.jobs_live,
        jobs_finished=message.jobs_finished,
        resources=tuple(ResourceStatus(r.name, r.capacity, r.used) for r in message.resources),
        queues=tuple(QueueStatus(q.name, q.workers, q.slots) for q in message.queues),
        executor=message.executor or "local",
        ray=(
            RayClusterStatus(
                message.ray.address,
                message.ray.connected,
                message.ray.unavailable_reason,
                message.ray.nodes,
            )
            if message.HasField("ray")
            else None
        ),
    )


def breaker_status_from_proto(message: breaker_pb2.CircuitBreaker) -> BreakerStatus:
    """A breaker as ListBreakers and GetBreaker show it."""
    return BreakerStatus(
        name=message.name,
        state=BREAKER_STATES.from_proto(message.state, "state"),
        config=breaker_config_from_proto(message.config),
        consecutive_failures=message.consecutive_failures,
        retry_after=seconds(message.retry_after) if message.HasField("retry_after") else 0.0,
    )
