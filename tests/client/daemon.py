"""A real daemon for client tests: create_server on a temporary unix socket, in the test loop."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc

from dukat.actions import DispatchAction
from dukat.core.resources import ResourcePool
from dukat.core.scheduler import Scheduler
from dukatd.scheduler_service import SchedulerService
from dukatd.server import create_server


class EchoRunner:
    """Runs dispatch tasks in the daemon: returns the payload; b'fail' fails, b'gate' waits."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()

    async def run(self, context: object) -> bytes:
        payload = context.action.payload  # type: ignore[attr-defined]
        if payload == b"fail":
            raise RuntimeError("asked to fail")
        if payload == b"gate":
            await self.gate.wait()
        await asyncio.sleep(0)
        return payload


@dataclass
class Daemon:
    scheduler: Scheduler
    runner: EchoRunner
    address: str
    server: grpc.aio.Server
    service: SchedulerService | None = None
    service_options: dict = field(default_factory=dict)

    async def stop(self) -> None:
        await self.server.stop(None)

    async def restart(self) -> None:
        """A new server (and service) on the same socket, over the same scheduler."""
        self.service = SchedulerService(self.scheduler, **self.service_options)
        self.server = await create_server(self.scheduler, [self.address], service=self.service)
        # Served by create_server itself once dukatd.breaker_service is part of it.
        if "breaker_service" not in inspect.signature(create_server).parameters:
            with contextlib.suppress(ImportError):
                from dukat.v1 import breaker_pb2_grpc
                from dukatd.breaker_service import BreakerService

                breaker_pb2_grpc.add_CircuitBreakerServiceServicer_to_server(
                    BreakerService(self.scheduler.breakers), self.server
                )
        await self.server.start()


@contextlib.asynccontextmanager
async def running_daemon(
    *, scheduler: Scheduler | None = None, **service_options: object
) -> AsyncIterator[Daemon]:
    runner = EchoRunner()
    if scheduler is None:
        scheduler = Scheduler(
            max_concurrency=8,
            runners={DispatchAction: runner},
            resources=ResourcePool({"seats": 2}),
            event_log_length=1_000,
        )
    # Short, so the socket path fits in sun_path (108 bytes) wherever pytest's tmp is.
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="dukat-client-") as directory:
        address = f"unix:{directory}/d.sock"
        daemon = Daemon(scheduler, runner, address, None, None, dict(service_options))  # type: ignore[arg-type]
        await daemon.restart()
        try:
            yield daemon
        finally:
            runner.gate.set()
            await daemon.server.stop(None)
            await scheduler.close()
