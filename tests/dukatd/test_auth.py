"""Bearer-token auth (dukatd.auth) in front of a real server, called by the real client."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

import dukat
from dukat.core.scheduler import Scheduler
from dukat.errors import DaemonNotFoundError, UnauthenticatedError
from dukat.v1 import scheduler_pb2, scheduler_pb2_grpc
from dukatd.auth import BearerTokenAuth
from dukatd.metrics import DaemonMetrics
from dukatd.server import create_server
from tests.helpers import wait_for

TOKEN = "s3cret-t0ken"


@dataclass
class Served:
    address: str
    metrics: DaemonMetrics

    def handled(self, method: str, code: str) -> float:
        """grpc_server_handled_total of a unary SchedulerService method."""
        labels = {
            "grpc_type": "unary",
            "grpc_service": "dukat.v1.SchedulerService",
            "grpc_method": method,
            "grpc_code": code,
        }
        return self.metrics.registry.get_sample_value("grpc_server_handled_total", labels) or 0.0


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    scheduler = Scheduler()
    metrics = DaemonMetrics()
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="dukat-auth-") as directory:
        address = f"unix:{directory}/d.sock"
        server = await create_server(
            scheduler, [address], interceptors=[metrics.grpc, BearerTokenAuth(TOKEN)]
        )
        await server.start()
        try:
            yield Served(address, metrics)
        finally:
            await server.stop(None)
            await scheduler.close(0)


async def test_the_right_token_is_let_through(served: Served):
    async with dukat.connect(served.address, token=TOKEN) as client:
        assert [job async for job in client.jobs()] == []
        with pytest.raises(DaemonNotFoundError):  # past the check: the service answered
            await client.get_job("nope")


@pytest.mark.parametrize("token", [None, "wrong", TOKEN + "x"], ids=["missing", "wrong", "longer"])
async def test_a_missing_or_wrong_token_is_unauthenticated(served: Served, token: str | None):
    async with dukat.connect(served.address, token=token) as client:
        with pytest.raises(UnauthenticatedError) as caught:
            await client.get_job("nope")
    assert caught.value.code == "UNAUTHENTICATED"
    assert "token" in str(caught.value)
    assert TOKEN not in str(caught.value)


async def test_refused_calls_are_counted_by_the_metrics_interceptor(served: Served):
    async with dukat.connect(served.address) as client:
        with pytest.raises(UnauthenticatedError):
            await client.get_job("nope")
    # The server's side of the call ends just after the client has its answer.
    await wait_for(lambda: served.handled("GetJob", "Unauthenticated") == 1)


@pytest.mark.parametrize(
    "value",
    [f"Basic {TOKEN}", TOKEN, f"bearer {TOKEN}x"],
    ids=["other scheme", "no scheme", "wrong"],
)
async def test_malformed_authorization_is_refused_and_the_scheme_is_case_blind(
    served: Served, value: str
):
    async with grpc.aio.insecure_channel(served.address) as channel:
        stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
        request = scheduler_pb2.ListJobsRequest()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ListJobs(request, metadata=(("authorization", value),))
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        await stub.ListJobs(request, metadata=(("authorization", f"bEaReR {TOKEN}"),))


async def test_streams_are_refused_too(served: Served):
    async with grpc.aio.insecure_channel(served.address) as channel:
        stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
        watch = stub.Watch(scheduler_pb2.WatchRequest())
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await watch.read()
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        work = stub.Work()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await work.read()
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_health_needs_no_token_and_reflection_does(served: Served):
    async with grpc.aio.insecure_channel(served.address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = reflection.ServerReflectionInfo()
        await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call.read()
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("token", ["", " padded", "two\nlines", "tøken", "with space"])
def test_a_token_that_no_client_could_send_is_refused(token: str):
    with pytest.raises(ValueError, match="printable ASCII"):
        BearerTokenAuth(token)


def test_the_repr_never_shows_the_token():
    assert TOKEN not in repr(BearerTokenAuth(TOKEN))
