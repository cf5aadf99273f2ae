"""/metrics: jobs run through a real server, scraped over real HTTP, parsed by prometheus-client."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf import duration_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from dukat.actions import DispatchAction, ExecAction
from dukat.core.breaker import BreakerRegistry
from dukat.core.resources import ResourcePool, ResourceRequirement, ResourceType
from dukat.core.scheduler import Scheduler
from dukat.errors import TaskInterruptedError
from dukat.v1 import breaker_pb2, breaker_pb2_grpc, job_pb2, scheduler_pb2, scheduler_pb2_grpc
from dukatd.exec_runner import ExecRunner
from dukatd.grpc_metrics import GrpcServerMetrics
from dukatd.metrics import DaemonMetrics, MetricsServer, start_metrics_server
from dukatd.server import create_server
from tests.helpers import finished, wait_for

SCHED = "dukat.v1.SchedulerService"
B = breaker_pb2


class GatedRunner:
    """Dispatch tasks in the test: b'fail' fails, b'gate' waits for the gate, b'fail-once'
    and b'interrupt-once' fail or are interrupted the first time, else succeeds."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()

    async def run(self, context) -> bytes:
        payload = context.action.payload
        first = context.attempt == 1
        if payload == b"fail" or (payload == b"fail-once" and first):
            raise RuntimeError("asked to fail")
        if payload == b"interrupt-once" and first:
            raise TaskInterruptedError("worker 'w1' left", cause="worker_lost")
        if payload == b"gate":
            await self.gate.wait()
        await asyncio.sleep(0)
        return payload


@dataclass
class Daemon:
    scheduler: Scheduler
    metrics: DaemonMetrics
    http: MetricsServer
    runner: GatedRunner
    channel: grpc.aio.Channel
    stub: scheduler_pb2_grpc.SchedulerServiceStub
    breakers: breaker_pb2_grpc.CircuitBreakerServiceStub


@pytest.fixture
async def daemon() -> AsyncIterator[Daemon]:
    runner = GatedRunner()
    scheduler = Scheduler(
        max_concurrency=1,  # one at a time: a gated task keeps the next one READY
        runners={DispatchAction: runner, ExecAction: ExecRunner()},
        resources=ResourcePool({"seats": 2}),
    )
    metrics = DaemonMetrics()
    metrics.attach(scheduler)
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="dukatd-") as directory:
        address = f"unix:{directory}/d.sock"
        server = await create_server(
            scheduler, [address], allow_exec=True, interceptors=[metrics.grpc]
        )
        await server.start()
        http = await start_metrics_server(metrics.registry, "127.0.0.1", 0)
        channel = grpc.aio.insecure_channel(address)
        try:
            yield Daemon(
                scheduler,
                metrics,
                http,
                runner,
                channel,
                scheduler_pb2_grpc.SchedulerServiceStub(channel),
                breaker_pb2_grpc.CircuitBreakerServiceStub(channel),
            )
        finally:
            runner.gate.set()
            await channel.close()
            http.close()
            await http.wait_closed()
            await server.stop(None)
            await scheduler.close()
            metrics.detach()


class Scrape:
    """One /metrics body, parsed: look samples up by name and labels."""

    def __init__(self, text: str) -> None:
        self.families = list(text_string_to_metric_families(text))
        self.samples = [sample for family in self.families for sample in family.samples]

    def get(self, name: str, **labels: str) -> float:
        found = [
            s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]
        return sum(found)

    def label_values(self) -> set[str]:
        return {value for sample in self.samples for value in sample.labels.values()}


async def scrape(http: MetricsServer, path: str = "/metrics") -> Scrape:
    def fetch() -> str:
        url = f"http://{http.host}:{http.port}{path}"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=")
            return response.read().decode()

    return Scrape(await asyncio.to_thread(fetch))


def dispatch(task_id: str, payload: bytes = b"ok", **fields) -> job_pb2.TaskSpec:
    return job_pb2.TaskSpec(
        id=task_id, dispatch=job_pb2.DispatchAction(queue="q", payload=payload), **fields
    )


async def run_job(d: Daemon, *tasks: job_pb2.TaskSpec) -> tuple[str, int]:
    """Submit and watch to the end; the job id and how many WatchResponses came."""
    submitted = await d.stub.Submit(scheduler_pb2.SubmitRequest(job=job_pb2.JobSpec(tasks=tasks)))
    responses = 0
    async for _ in d.stub.Watch(scheduler_pb2.WatchRequest(job_id=submitted.job_id)):
        responses += 1
    return submitted.job_id, responses


async def test_jobs_tasks_histograms_and_grpc_counters(daemon):
    seats = job_pb2.ResourceRequirement(type=job_pb2.RESOURCE_TYPE_CUSTOM, name="seats", amount=1)
    first, watch_one = await run_job(
        daemon,
        dispatch("a", resources=[seats]),
        dispatch("b", b"fail"),
        dispatch("c", dependencies=["b"]),
        job_pb2.TaskSpec(id="x", exec=job_pb2.ExecAction(argv=["true"])),
    )
    second, watch_two = await run_job(daemon, dispatch("only"))
    with pytest.raises(grpc.aio.AioRpcError):
        await daemon.stub.Submit(scheduler_pb2.SubmitRequest(job=job_pb2.JobSpec()))
    with pytest.raises(grpc.aio.AioRpcError):
        await daemon.stub.GetJob(scheduler_pb2.GetJobRequest(job_id="nope"))
    await daemon.stub.GetJob(scheduler_pb2.GetJobRequest(job_id=first))

    m = await scrape(daemon.http)
    assert m.get("dukat_jobs_submitted_total") == 2
    assert m.get("dukat_jobs_finished_total", state="failed") == 1
    assert m.get("dukat_jobs_finished_total", state="succeeded") == 1
    assert m.get("dukat_tasks_finished_total", state="succeeded", kind="dispatch") == 2
    assert m.get("dukat_tasks_finished_total", state="failed", kind="dispatch") == 1
    assert m.get("dukat_tasks_finished_total", state="skipped", kind="dispatch") == 1
    assert m.get("dukat_tasks_finished_total", state="succeeded", kind="exec") == 1
    # Histograms: one observation per attempt that ran, in buckets from ms to hours.
    assert m.get("dukat_task_duration_seconds_count", kind="dispatch") == 3
    assert m.get("dukat_task_duration_seconds_count", kind="exec") == 1
    assert m.get("dukat_task_queue_wait_seconds_count", kind="dispatch") == 3
    assert m.get("dukat_task_duration_seconds_bucket", kind="exec", le="14400.0") == 1
    assert m.get("dukat_task_duration_seconds_sum", kind="exec") > 0
    assert m.get("dukat_tasks_running") == 0 and m.get("dukat_tasks_ready") == 0
    assert m.get("dukat_resource_capacity", resource="seats") == 2
    assert m.get("dukat_resource_capacity", resource="cpu") == 1
    assert m.get("dukat_resource_used", resource="seats") == 0

    def handled(method: str, code: str, grpc_type: str = "unary") -> float:
        return m.get(
            "grpc_server_handled_total",
            grpc_service=SCHED,
            grpc_method=method,
            grpc_code=code,
            grpc_type=grpc_type,
        )

    assert handled("Submit", "OK") == 2
    assert handled("Submit", "InvalidArgument") == 1
    assert handled("GetJob", "NotFound") == 1
    assert handled("GetJob", "OK") == 1
    assert handled("Watch", "OK", "server_stream") == 2
    assert m.get("grpc_server_started_total", grpc_service=SCHED, grpc_method="Submit") == 3
    watch = {"grpc_service": SCHED, "grpc_method": "Watch", "grpc_type": "server_stream"}
    assert m.get("grpc_server_msg_received_total", **watch) == 2
    assert m.get("grpc_server_msg_sent_total", **watch) == watch_one + watch_two
    assert m.get("grpc_server_msg_sent_total", grpc_method="Submit") == 2  # errors send none
    assert m.get("grpc_server_handling_seconds_count", grpc_method="Submit") == 3

    # No unbounded labels: neither job ids nor task ids appear anywhere.
    values = m.label_values()
    assert not values & {first, second, "a", "b", "c", "x", "only"}


async def test_interruptions_are_counted_by_reason_and_are_no_retries(daemon):
    m = await scrape(daemon.http)
    reasons = {
        "daemon_restart",
        "daemon_stopping",
        "worker_lost",
        "executor_stopped",
        "node_lost",
        "cluster_lost",
        "other",
    }
    assert {
        s.labels["reason"] for s in m.samples if s.name == "dukat_task_interruptions_total"
    } == reasons
    retry = job_pb2.RetryPolicy(max_attempts=2, initial_backoff=duration_pb2.Duration())
    await run_job(
        daemon,
        dispatch("interrupted", b"interrupt-once"),
        dispatch("retried", b"fail-once", retry=retry),
        dispatch("also", b"interrupt-once", retry=retry),
    )
    m = await scrape(daemon.http)
    assert m.get("dukat_task_interruptions_total", reason="worker_lost") == 2
    assert m.get("dukat_task_interruptions_total") == 2
    assert m.get("dukat_task_retries_total", kind="dispatch") == 1
    assert m.get("dukat_tasks_finished_total", state="succeeded", kind="dispatch") == 3


async def test_tasks_a_rerun_carries_over_are_not_counted_as_finished_again(daemon):
    old, _ = await run_job(daemon, dispatch("a"), dispatch("b", b"fail", dependencies=["a"]))
    rerun = await daemon.stub.Submit(scheduler_pb2.SubmitRequest(rerun_of=old))
    async for _ in daemon.stub.Watch(scheduler_pb2.WatchRequest(job_id=rerun.job_id)):
        pass
    m = await scrape(daemon.http)
    assert m.get("dukat_jobs_submitted_total") == 2
    # `a` ran once, in the first job; `b` failed in each.
    assert m.get("dukat_tasks_finished_total", state="succeeded", kind="dispatch") == 1
    assert m.get("dukat_tasks_finished_total", state="failed", kind="dispatch") == 2


async def test_running_and_ready_gauges_follow_the_tasks(daemon):
    job = job_pb2.JobSpec(tasks=[dispatch("slow", b"gate"), dispatch("next")])
    job_id = (await daemon.stub.Submit(scheduler_pb2.SubmitRequest(job=job))).job_id
    await wait_for(lambda: daemon.scheduler.running == 1)
    m = await scrape(daemon.http)
    assert m.get("dukat_tasks_running") == 1
    assert m.get("dukat_tasks_ready") == 1  # max_concurrency=1: it waits for the slot
    daemon.runner.gate.set()
    await finished(daemon.scheduler, job_id)
    m = await scrape(daemon.http)
    assert m.get("dukat_tasks_running") == 0 and m.get("dukat_tasks_ready") == 0


async def test_breaker_state_numbers_and_transitions(daemon):
    stub = daemon.breakers
    await stub.Acquire(B.AcquireRequest(name="fresh"))
    config = B.CircuitBreakerConfig(failure_threshold=2)
    await stub.ConfigureBreaker(B.ConfigureBreakerRequest(name="db", config=config))
    for _ in range(2):
        got = await stub.Acquire(B.AcquireRequest(name="db"))
        await stub.Record(
            B.RecordRequest(name="db", permit=got.permit, outcome=B.CALL_OUTCOME_FAILURE)
        )
    m = await scrape(daemon.http)
    assert m.get("dukat_breaker_state", breaker="db") == 1  # OPEN, the engine's number
    assert m.get("dukat_breaker_state", breaker="fresh") == 0  # made on first use: CLOSED
    transitions = {"breaker": "db", "from_state": "closed", "to_state": "open"}
    assert m.get("dukat_breaker_transitions_total", **transitions) == 1
    daemon.scheduler.breakers.get("db").configure(timeout_seconds=0)
    assert daemon.scheduler.breakers.get("db").state.name == "HALF_OPEN"
    m = await scrape(daemon.http)
    assert m.get("dukat_breaker_state", breaker="db") == 2
    await stub.ResetBreaker(B.ResetBreakerRequest(name="db"))
    m = await scrape(daemon.http)
    assert m.get("dukat_breaker_state", breaker="db") == 0
    assert m.get("dukat_breaker_transitions_total", breaker="db", to_state="closed") == 1
    assert m.get("grpc_server_handled_total", grpc_method="Record", grpc_code="OK") == 2


async def test_a_breaker_let_go_to_make_room_takes_its_series_with_it():
    scheduler = Scheduler(breakers=BreakerRegistry(max_breakers=1))
    metrics = DaemonMetrics()
    metrics.attach(scheduler)
    try:
        old = scheduler.breakers.get("old")
        old.failure(RuntimeError("down"), permit=old.acquire())
        old.reset()  # closed again, at rest: the next name may take its place
        names = Scrape(generate_latest(metrics.registry).decode()).label_values()
        assert "old" in names
        scheduler.breakers.get("new")
        names = Scrape(generate_latest(metrics.registry).decode()).label_values()
        assert "old" not in names and "new" in names
    finally:
        metrics.detach()
        await scheduler.close()


async def test_workers_connected_is_a_gauge_for_the_work_service(daemon):
    daemon.metrics.workers_connected.inc()
    daemon.metrics.workers_connected.inc()
    daemon.metrics.workers_connected.dec()
    assert (await scrape(daemon.http)).get("dukat_workers_connected") == 1


async def test_bidi_streams_count_each_message_and_garbage_is_invalid_argument(daemon):
    reflection = reflection_pb2_grpc.ServerReflectionStub(daemon.channel)
    call = reflection.ServerReflectionInfo()
    for _ in range(3):
        await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        await call.read()
    await call.done_writing()
    assert await call.read() is grpc.aio.EOF
    garbage = daemon.channel.unary_unary(f"/{SCHED}/GetJob")
    with pytest.raises(grpc.aio.AioRpcError):
        await garbage(b"\xff\xff\xff")

    m = await scrape(daemon.http)
    info = {"grpc_method": "ServerReflectionInfo", "grpc_type": "bidi_stream"}
    assert m.get("grpc_server_msg_received_total", **info) == 3
    assert m.get("grpc_server_msg_sent_total", **info) == 3
    assert m.get("grpc_server_handled_total", grpc_code="OK", **info) == 1
    assert (
        m.get("grpc_server_handled_total", grpc_method="GetJob", grpc_code="InvalidArgument") == 1
    )
    assert m.get("grpc_server_msg_received_total", grpc_method="GetJob") == 1


async def test_client_streams_unknown_errors_and_set_code():
    """The kinds the daemon's own services do not have yet, on a bare grpc.aio server."""
    registry = CollectorRegistry()
    interceptor = GrpcServerMetrics(registry)

    async def gather_bytes(requests, context) -> bytes:
        return b"".join([request async for request in requests])

    async def broken(request, context) -> bytes:
        raise RuntimeError("a bug")

    async def quiet_not_found(request, context) -> bytes:
        context.set_code(grpc.StatusCode.NOT_FOUND)
        return b""

    handlers = {
        "Gather": grpc.stream_unary_rpc_method_handler(gather_bytes),
        "Broken": grpc.unary_unary_rpc_method_handler(broken),
        "Quiet": grpc.unary_unary_rpc_method_handler(quiet_not_found),
    }
    server = grpc.aio.server(interceptors=[interceptor])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.T", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            gathered = await channel.stream_unary("/t.T/Gather")(iter([b"a", b"b", b"c"]))
            assert gathered == b"abc"
            with pytest.raises(grpc.aio.AioRpcError):
                await channel.unary_unary("/t.T/Broken")(b"")
            with pytest.raises(grpc.aio.AioRpcError):
                await channel.unary_unary("/t.T/Quiet")(b"")
    finally:
        await server.stop(None)

    def value(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, {"grpc_service": "t.T", **labels}) or 0.0

    gather = {"grpc_method": "Gather", "grpc_type": "client_stream"}
    assert value("grpc_server_msg_received_total", **gather) == 3
    assert value("grpc_server_msg_sent_total", **gather) == 1
    assert value("grpc_server_handled_total", grpc_code="OK", **gather) == 1
    broken_labels = {"grpc_method": "Broken", "grpc_type": "unary", "grpc_code": "Unknown"}
    assert value("grpc_server_handled_total", **broken_labels) == 1
    quiet = {"grpc_method": "Quiet", "grpc_type": "unary", "grpc_code": "NotFound"}
    assert value("grpc_server_handled_total", **quiet) == 1


async def test_the_metrics_server_binds_loopback_by_default_and_serves_only_metrics():
    registry = CollectorRegistry()
    Counter("probe", "A probe.", registry=registry).inc()
    http = await start_metrics_server(registry, port=0)
    try:
        assert http.host == "127.0.0.1"
        assert (await scrape(http)).get("probe_total") == 1

        def status_of(path: str, method: str = "GET") -> int:
            request = urllib.request.Request(f"http://127.0.0.1:{http.port}{path}", method=method)
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status
            except urllib.error.HTTPError as error:
                return error.code

        assert await asyncio.to_thread(status_of, "/") == 404
        assert await asyncio.to_thread(status_of, "/metrics", "POST") == 405
        assert await asyncio.to_thread(status_of, "/metrics", "HEAD") == 200
        assert await asyncio.to_thread(status_of, "/metrics?name[]=probe") == 200
    finally:
        http.close()
        await http.wait_closed()


async def test_a_scraper_that_never_finishes_asking_does_not_block_others():
    registry = CollectorRegistry()
    http = await start_metrics_server(registry, port=0)
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", http.port)
        writer.write(b"GET /metrics HTTP/1.1\r\n")  # and then nothing
        await writer.drain()
        assert (await scrape(http)).samples == []
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    finally:
        http.close()
        await http.wait_closed()


def test_metrics_live_in_their_own_registry_and_resources_are_typed():
    one, two = DaemonMetrics(), DaemonMetrics()  # no clash: not the global registry
    assert one.registry is not two.registry
    pool = ResourcePool({ResourceType.CPU: 4})
    one.on_pool(pool)
    assert pool.try_allocate("t", [ResourceRequirement(ResourceType.CPU, 1.5)])
    one.on_pool(pool)
    assert one.registry.get_sample_value("dukat_resource_used", {"resource": "cpu"}) == 1.5
