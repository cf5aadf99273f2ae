"""LiveStreams over real gRPC: end_all ends open Watch streams with UNAVAILABLE, refuses new."""

from __future__ import annotations

import tempfile

import grpc
import pytest

from dukat.core.scheduler import Scheduler
from dukat.v1 import scheduler_pb2, scheduler_pb2_grpc
from dukatd.scheduler_service import SchedulerService
from dukatd.server import create_server
from dukatd.streams import SHUTTING_DOWN
from tests.helpers import wait_for


async def test_end_all_ends_open_watches_with_unavailable_and_refuses_new_ones():
    scheduler = Scheduler()
    service = SchedulerService(scheduler)
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="dukatd-") as directory:
        address = f"unix:{directory}/d.sock"
        server = await create_server(scheduler, [address], service=service)
        await server.start()
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
                # A watch of every job never ends by itself.
                call = stub.Watch(scheduler_pb2.WatchRequest())
                await call.initial_metadata()
                await wait_for(lambda: len(service.streams) == 1)

                assert service.streams.end_all() == 1
                with pytest.raises(grpc.aio.AioRpcError) as ended:
                    async for _ in call:
                        pass
                assert ended.value.code() is grpc.StatusCode.UNAVAILABLE
                assert ended.value.details() == SHUTTING_DOWN
                assert len(service.streams) == 0

                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    async for _ in stub.Watch(scheduler_pb2.WatchRequest()):
                        pass
                assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
                assert service.watchers == 0
        finally:
            await server.stop(None)
            await scheduler.close()
