"""dukat.v1.DaemonService: the daemon's status (`dukat status`), from a function that reads it.

The servicer knows nothing of where each number lives: `dukatd.daemon` gives it a function that
gathers them (config, scheduler, pool, worker hub) at each call; `status_of` is the part of
that which only needs a scheduler, for servers built without a daemon around them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

import grpc

import dukat
from dukat import convert
from dukat.core.scheduler import Scheduler
from dukat.daemon_status import DaemonStatus, QueueStatus, RayClusterStatus, ResourceStatus
from dukat.v1 import daemon_pb2, daemon_pb2_grpc
from dukatd.status import rpc_errors
from dukatd.work_session import WorkerSession

__all__ = ["DaemonService", "default_service", "queues_of", "status_of"]


class DaemonService(daemon_pb2_grpc.DaemonServiceServicer):
    """GetStatus, answered from `status()`."""

    def __init__(self, status: Callable[[], DaemonStatus]) -> None:
        self.status = status

    @rpc_errors
    async def GetStatus(
        self, request: daemon_pb2.GetStatusRequest, context: grpc.aio.ServicerContext
    ) -> daemon_pb2.GetStatusResponse:
        return daemon_pb2.GetStatusResponse(status=convert.daemon_status_to_proto(self.status()))


def status_of(
    scheduler: Scheduler,
    *,
    started_at: float,
    listen: Sequence[str],
    state_dir: str | None = None,
    allow_exec: bool = False,
    workers: Iterable[WorkerSession] = (),
    ray: RayClusterStatus | None = None,
) -> DaemonStatus:
    """The status of a daemon serving `scheduler` (and the worker sessions `workers`), whose
    exec tasks run on the Ray cluster `ray` if given, else locally."""
    live = scheduler.live_jobs
    usage = scheduler.resources.usage()
    return DaemonStatus(
        version=dukat.__version__,
        started_at=started_at,
        listen=tuple(listen),
        state_dir=state_dir,
        allow_exec=allow_exec,
        max_concurrency=scheduler.max_concurrency,
        tasks_running=scheduler.running,
        jobs_live=live,
        jobs_finished=scheduler.held_jobs - live,
        resources=tuple(
            ResourceStatus(name, usage[name].capacity, usage[name].used) for name in sorted(usage)
        ),
        queues=queues_of(workers),
        executor="local" if ray is None else "ray",
        ray=ray,
    )


def queues_of(sessions: Iterable[WorkerSession]) -> tuple[QueueStatus, ...]:
    """Each queue served, with its workers and their slots together, sorted by name. A
    draining worker serves no queue any more: it only finishes what it holds."""
    workers: dict[str, int] = {}
    slots: dict[str, int] = {}
    for session in sessions:
        if session.draining:
            continue
        for queue in session.queues:
            workers[queue] = workers.get(queue, 0) + 1
            slots[queue] = slots.get(queue, 0) + session.max_in_flight
    return tuple(QueueStatus(name, workers[name], slots[name]) for name in sorted(workers))


def default_service(
    scheduler: Scheduler,
    listen: Sequence[str],
    *,
    allow_exec: bool,
    workers: Iterable[WorkerSession] = (),
) -> DaemonService:
    """A service over `scheduler` and the live collection `workers`, started now (a server
    built without a daemon around it)."""
    started_at = time.time()
    return DaemonService(
        lambda: status_of(
            scheduler, started_at=started_at, listen=listen, allow_exec=allow_exec, workers=workers
        )
    )
