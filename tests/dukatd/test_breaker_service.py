"""CircuitBreakerService over real gRPC: a grpc.aio server from create_server on a unix socket,
and one breaker shared by two client processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from dukat.core.breaker import BreakerRegistry, CircuitBreakerConfig
from dukat.core.clock import ManualClock
from dukat.core.scheduler import Scheduler
from dukat.v1 import breaker_pb2, breaker_pb2_grpc, scheduler_pb2, scheduler_pb2_grpc
from dukatd.breaker_service import BreakerService, apply_breaker_config
from dukatd.server import BREAKER_SERVICE, create_server
from tests.dukatd.rpc_errors import rpc_error

ROOT = Path(__file__).resolve().parents[2]
B = breaker_pb2
CLOSED, OPEN, HALF_OPEN = (
    B.CIRCUIT_BREAKER_STATE_CLOSED,
    B.CIRCUIT_BREAKER_STATE_OPEN,
    B.CIRCUIT_BREAKER_STATE_HALF_OPEN,
)


@dataclass
class Daemon:
    scheduler: Scheduler
    clock: ManualClock
    channel: grpc.aio.Channel
    stub: breaker_pb2_grpc.CircuitBreakerServiceStub
    address: str


@contextlib.asynccontextmanager
async def running_daemon(*, max_breakers: int = 1_000) -> AsyncIterator[Daemon]:
    clock = ManualClock()  # breakers' time only: half-opening is a test's decision
    registry = BreakerRegistry(
        CircuitBreakerConfig(failure_threshold=3), clock=clock, max_breakers=max_breakers
    )
    scheduler = Scheduler(breakers=registry)
    service = BreakerService(registry)
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="dukatd-") as directory:
        address = f"unix:{directory}/d.sock"
        server = await create_server(scheduler, [address], breaker_service=service)
        await server.start()
        channel = grpc.aio.insecure_channel(address)
        try:
            stub = breaker_pb2_grpc.CircuitBreakerServiceStub(channel)
            yield Daemon(scheduler, clock, channel, stub, address)
        finally:
            await channel.close()
            await server.stop(None)
            await scheduler.close()


@pytest.fixture
async def daemon() -> AsyncIterator[Daemon]:
    async with running_daemon() as d:
        yield d


def violation_fields(error: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(error)
    assert status is not None
    fields = []
    for detail in status.details:
        request = error_details_pb2.BadRequest()
        assert detail.Unpack(request)
        fields.extend(v.field for v in request.field_violations)
    return fields


async def fail(d: Daemon, name: str, times: int = 1) -> None:
    for _ in range(times):
        acquired = await d.stub.Acquire(B.AcquireRequest(name=name))
        assert acquired.allowed
        await d.stub.Record(
            B.RecordRequest(
                name=name, permit=acquired.permit, outcome=B.CALL_OUTCOME_FAILURE, error="boom"
            )
        )


# -- list, get, configure, reset -----------------------------------------------------------


async def test_breakers_are_made_on_first_use_with_the_defaults_and_listed_by_name(daemon):
    assert (await daemon.stub.ListBreakers(B.ListBreakersRequest())).breakers == []
    await daemon.stub.Acquire(B.AcquireRequest(name="zeta"))
    await daemon.stub.ConfigureBreaker(
        B.ConfigureBreakerRequest(name="alpha", config=B.CircuitBreakerConfig(window_size=0))
    )
    listed = (await daemon.stub.ListBreakers(B.ListBreakersRequest())).breakers
    assert [b.name for b in listed] == ["alpha", "zeta"]
    zeta = listed[1]
    assert zeta.state == CLOSED
    assert zeta.config.failure_threshold == 3  # the registry's default, not the engine's 5
    assert zeta.config.timeout.seconds == 60
    assert zeta.config.half_open_max_calls == 1 and zeta.config.success_threshold == 1
    assert listed[0].config.failure_threshold == 5  # configured: zero takes the proto default
    assert not zeta.HasField("retry_after")


async def test_get_and_reset_of_an_unknown_breaker_are_not_found(daemon):
    for call in (
        daemon.stub.GetBreaker(B.GetBreakerRequest(name="nope")),
        daemon.stub.ResetBreaker(B.ResetBreakerRequest(name="nope")),
        daemon.stub.Record(B.RecordRequest(name="nope", permit=0, outcome=B.CALL_OUTCOME_SUCCESS)),
    ):
        error = await rpc_error(call)
        assert error.code() is grpc.StatusCode.NOT_FOUND
        assert "'nope'" in error.details()
    assert "nope" not in daemon.scheduler.breakers  # looking is not creating


@pytest.mark.parametrize(
    ("config", "field"),
    [
        (B.CircuitBreakerConfig(failure_threshold=-1), "config.failure_threshold"),
        (B.CircuitBreakerConfig(half_open_max_calls=-2), "config.half_open_max_calls"),
        (B.CircuitBreakerConfig(success_threshold=-1), "config.success_threshold"),
        (B.CircuitBreakerConfig(failure_rate_threshold=1.5, window_size=4),
         "config.failure_rate_threshold"),
        (B.CircuitBreakerConfig(failure_rate_threshold=0.5), "config.window_size"),
        (B.CircuitBreakerConfig(window_size=10), "config.failure_rate_threshold"),
        (B.CircuitBreakerConfig(window_size=-3, failure_rate_threshold=0.5), "config.window_size"),
    ],
)  # fmt: skip
async def test_configure_names_the_bad_field_and_creates_nothing(daemon, config, field):
    error = await rpc_error(
        daemon.stub.ConfigureBreaker(B.ConfigureBreakerRequest(name="db", config=config))
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert violation_fields(error) == [field]
    assert field.split(".")[1] in error.details()
    assert "db" not in daemon.scheduler.breakers


async def test_a_negative_timeout_is_named_as_the_wire_names_it(daemon):
    config = B.CircuitBreakerConfig()
    config.timeout.FromSeconds(-1)
    error = await rpc_error(
        daemon.stub.ConfigureBreaker(B.ConfigureBreakerRequest(name="db", config=config))
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert violation_fields(error) == ["config.timeout"]
    assert "timeout_seconds" not in error.details()


@pytest.mark.parametrize("name", ["", "x" * 201])
async def test_a_missing_or_overlong_name_is_invalid_for_every_rpc(daemon, name):
    stub = daemon.stub
    for call in (
        stub.GetBreaker(B.GetBreakerRequest(name=name)),
        stub.ResetBreaker(B.ResetBreakerRequest(name=name)),
        stub.ConfigureBreaker(B.ConfigureBreakerRequest(name=name)),
        stub.Acquire(B.AcquireRequest(name=name)),
        stub.Record(B.RecordRequest(name=name, outcome=B.CALL_OUTCOME_SUCCESS)),
    ):
        error = await rpc_error(call)
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert violation_fields(error) == ["name"]


async def test_configure_keeps_the_state_and_makes_earlier_permits_stale(daemon):
    await fail(daemon, "db", 3)
    before = (await daemon.stub.GetBreaker(B.GetBreakerRequest(name="db"))).breaker
    assert before.state == OPEN
    assert before.retry_after.seconds == 60
    config = B.CircuitBreakerConfig(failure_threshold=2, half_open_max_calls=2)
    config.timeout.FromSeconds(5)
    after = (
        await daemon.stub.ConfigureBreaker(B.ConfigureBreakerRequest(name="db", config=config))
    ).breaker
    assert after.state == OPEN
    assert after.generation > before.generation
    assert after.config.failure_threshold == 2 and after.config.timeout.seconds == 5
    assert after.config.half_open_max_calls == 2


async def test_reset_closes_an_open_breaker(daemon):
    await fail(daemon, "db", 3)
    reset = (await daemon.stub.ResetBreaker(B.ResetBreakerRequest(name="db"))).breaker
    assert reset.state == CLOSED
    assert reset.consecutive_failures == 0
    assert (await daemon.stub.Acquire(B.AcquireRequest(name="db"))).allowed


# -- acquire and record --------------------------------------------------------------------


async def test_failures_open_the_breaker_and_an_open_breaker_refuses_with_retry_after(daemon):
    await fail(daemon, "api", 2)
    got = (await daemon.stub.GetBreaker(B.GetBreakerRequest(name="api"))).breaker
    assert got.consecutive_failures == 2 and got.state == CLOSED
    await fail(daemon, "api", 1)
    refused = await daemon.stub.Acquire(B.AcquireRequest(name="api"))
    assert not refused.allowed
    assert refused.state == OPEN
    assert refused.retry_after.seconds == 60
    await daemon.clock.advance(45)
    refused = await daemon.stub.Acquire(B.AcquireRequest(name="api"))
    assert refused.retry_after.seconds == 15


async def test_half_open_lets_a_bounded_number_of_trials_through_and_success_closes(daemon):
    await fail(daemon, "api", 3)
    await daemon.clock.advance(60)
    trial = await daemon.stub.Acquire(B.AcquireRequest(name="api"))
    assert trial.allowed and trial.state == HALF_OPEN
    second = await daemon.stub.Acquire(B.AcquireRequest(name="api"))
    assert not second.allowed and second.state == HALF_OPEN
    assert not second.HasField("retry_after")  # half-open: no waiting, only a full house
    recorded = await daemon.stub.Record(
        B.RecordRequest(name="api", permit=trial.permit, outcome=B.CALL_OUTCOME_SUCCESS)
    )
    assert recorded.state == CLOSED


async def test_release_gives_a_trial_slot_back_without_counting(daemon):
    await fail(daemon, "api", 3)
    await daemon.clock.advance(60)
    trial = await daemon.stub.Acquire(B.AcquireRequest(name="api"))
    recorded = await daemon.stub.Record(
        B.RecordRequest(name="api", permit=trial.permit, outcome=B.CALL_OUTCOME_RELEASE)
    )
    assert recorded.state == HALF_OPEN
    assert (await daemon.stub.Acquire(B.AcquireRequest(name="api"))).allowed


async def test_a_failed_trial_reopens(daemon):
    await fail(daemon, "api", 3)
    await daemon.clock.advance(60)
    trial = await daemon.stub.Acquire(B.AcquireRequest(name="api"))
    recorded = await daemon.stub.Record(
        B.RecordRequest(name="api", permit=trial.permit, outcome=B.CALL_OUTCOME_FAILURE)
    )
    assert recorded.state == OPEN


async def test_a_stale_permit_is_ignored_not_refused(daemon):
    early = await daemon.stub.Acquire(B.AcquireRequest(name="api"))
    await fail(daemon, "api", 3)  # opens: the generation moves on
    await daemon.clock.advance(60)
    trial = await daemon.stub.Acquire(B.AcquireRequest(name="api"))
    assert trial.permit != early.permit
    # The call that began before the breaker opened fails now: not one of the trials.
    recorded = await daemon.stub.Record(
        B.RecordRequest(name="api", permit=early.permit, outcome=B.CALL_OUTCOME_FAILURE)
    )
    assert recorded.state == HALF_OPEN


async def test_record_needs_an_outcome(daemon):
    await daemon.stub.Acquire(B.AcquireRequest(name="api"))
    error = await rpc_error(daemon.stub.Record(B.RecordRequest(name="api")))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert violation_fields(error) == ["outcome"]
    error = await rpc_error(daemon.stub.Record(B.RecordRequest(name="api", outcome=9)))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_too_many_breakers_is_resource_exhausted():
    async with running_daemon(max_breakers=2) as d:
        config = B.CircuitBreakerConfig(failure_threshold=1)
        await d.stub.ConfigureBreaker(B.ConfigureBreakerRequest(name="a", config=config))
        await d.stub.Acquire(B.AcquireRequest(name="b"))
        await fail(d, "b", 3)  # open: it holds calls back, it is kept
        for call in (
            d.stub.Acquire(B.AcquireRequest(name="c")),
            d.stub.ConfigureBreaker(B.ConfigureBreakerRequest(name="c", config=config)),
        ):
            error = await rpc_error(call)
            assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "limit is 2" in error.details()
        assert (await d.stub.Acquire(B.AcquireRequest(name="a"))).allowed  # known ones work
        assert not (await d.stub.Acquire(B.AcquireRequest(name="b"))).allowed


async def test_a_breaker_made_on_first_use_and_at_rest_makes_room_for_a_new_one():
    async with running_daemon(max_breakers=2) as d:
        await d.stub.Acquire(B.AcquireRequest(name="a"))
        await d.stub.Acquire(B.AcquireRequest(name="b"))
        await d.stub.Acquire(B.AcquireRequest(name="a"))  # "b" is the least recently used
        assert (await d.stub.Acquire(B.AcquireRequest(name="c"))).allowed
        listed = await d.stub.ListBreakers(B.ListBreakersRequest())
        assert [b.name for b in listed.breakers] == ["a", "c"]
        error = await rpc_error(d.stub.GetBreaker(B.GetBreakerRequest(name="b")))
        assert error.code() is grpc.StatusCode.NOT_FOUND


# -- events, config, the server around it -------------------------------------------------


async def test_state_changes_reach_watchers_of_every_job(daemon):
    stub = scheduler_pb2_grpc.SchedulerServiceStub(daemon.channel)
    call = stub.Watch(scheduler_pb2.WatchRequest())
    await call.initial_metadata()  # the watcher's cursor is open from here on
    await fail(daemon, "db", 3)
    await daemon.stub.ResetBreaker(B.ResetBreakerRequest(name="db"))
    seen = []
    async for response in call:
        seen.extend(e.breaker_state for e in response.events if e.HasField("breaker_state"))
        if len(seen) >= 2:
            break
    call.cancel()
    assert [(e.name, e.from_state, e.to_state) for e in seen] == [
        ("db", CLOSED, OPEN),
        ("db", OPEN, CLOSED),
    ]
    assert "3 consecutive failures" in seen[0].reason and "boom" in seen[0].reason
    assert seen[1].reason == "reset"


async def test_configured_breakers_are_made_and_a_reload_keeps_their_state(daemon):
    registry = daemon.scheduler.breakers
    apply_breaker_config(registry, {"db": CircuitBreakerConfig(failure_threshold=1)})
    got = (await daemon.stub.GetBreaker(B.GetBreakerRequest(name="db"))).breaker
    assert got.config.failure_threshold == 1
    await fail(daemon, "db", 1)
    generation = registry.get("db").generation
    apply_breaker_config(registry, {"db": CircuitBreakerConfig(failure_threshold=1)})
    assert registry.get("db").generation == generation  # unchanged: untouched
    apply_breaker_config(registry, {"db": CircuitBreakerConfig(failure_threshold=4)})
    got = (await daemon.stub.GetBreaker(B.GetBreakerRequest(name="db"))).breaker
    assert got.state == OPEN and got.config.failure_threshold == 4


async def test_health_and_reflection_know_the_service(daemon):
    health = health_pb2_grpc.HealthStub(daemon.channel)
    response = await health.Check(health_pb2.HealthCheckRequest(service=BREAKER_SERVICE))
    assert response.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(daemon.channel)
    call = reflection.ServerReflectionInfo()
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    listed = await call.read()
    await call.done_writing()
    names = {s.name for s in listed.list_services_response.service}
    assert BREAKER_SERVICE in names


@pytest.mark.parametrize(
    "method",
    ["ListBreakers", "GetBreaker", "ConfigureBreaker", "ResetBreaker", "Acquire", "Record"],
)
async def test_garbage_bytes_are_invalid_argument(daemon, method):
    call = daemon.channel.unary_unary(f"/{BREAKER_SERVICE}/{method}")
    error = await rpc_error(call(b"\xff\xff\xff\xff"))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT


# -- one breaker, two processes ------------------------------------------------------------

CLIENT = """
import json, sys
import grpc
from dukat.v1 import breaker_pb2 as B, breaker_pb2_grpc
address, name, *ops = sys.argv[1:]
out = []
with grpc.insecure_channel(address) as channel:
    stub = breaker_pb2_grpc.CircuitBreakerServiceStub(channel)
    for op in ops:
        if op == "fail":
            got = stub.Acquire(B.AcquireRequest(name=name))
            if got.allowed:
                stub.Record(B.RecordRequest(name=name, permit=got.permit,
                                            outcome=B.CALL_OUTCOME_FAILURE, error="down"))
            out.append([got.allowed, got.state])
        elif op == "acquire":
            got = stub.Acquire(B.AcquireRequest(name=name))
            out.append([got.allowed, got.permit, got.state])
        else:  # success:PERMIT
            permit = int(op.split(":")[1])
            got = stub.Record(B.RecordRequest(name=name, permit=permit,
                                              outcome=B.CALL_OUTCOME_SUCCESS))
            out.append([got.state])
print(json.dumps(out))
"""


async def client(address: str, name: str, *ops: str) -> list[list[int]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, address, name, *ops,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    return json.loads(stdout)


async def test_one_breaker_shared_by_two_client_processes(daemon):
    config = B.CircuitBreakerConfig(failure_threshold=3, half_open_max_calls=2, success_threshold=2)
    await daemon.stub.ConfigureBreaker(B.ConfigureBreakerRequest(name="shared", config=config))

    # Process one's failures open the breaker for process two.
    assert await client(daemon.address, "shared", "fail", "fail", "fail") == [
        [True, CLOSED],
        [True, CLOSED],
        [True, CLOSED],
    ]
    assert await client(daemon.address, "shared", "acquire") == [[False, 0, OPEN]]

    # Half-open: both ask for three trials at once; exactly two get through, across both.
    await daemon.clock.advance(60)
    one, two = await asyncio.gather(
        client(daemon.address, "shared", "acquire", "acquire", "acquire"),
        client(daemon.address, "shared", "acquire", "acquire", "acquire"),
    )
    permits_one = [permit for allowed, permit, _ in one if allowed]
    permits_two = [permit for allowed, permit, _ in two if allowed]
    assert len(permits_one) + len(permits_two) == 2
    assert all(state == HALF_OPEN for *_, state in one + two)

    # Each process reports its own trials; the second success closes it for both.
    results = []
    for permits in (permits_one, permits_two):
        if permits:
            results += await client(daemon.address, "shared", *(f"success:{p}" for p in permits))
    assert results == [[HALF_OPEN], [CLOSED]]
    assert (await client(daemon.address, "shared", "acquire"))[0][0] is True
