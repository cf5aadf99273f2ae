"""client.worker(): the Work protocol of work.proto, against a stand-in daemon side.

A small servicer here plays the daemon's part of the contract (the daemon's own is
dukatd.work_hub's, tested in tests/dukatd/test_work.py): it checks the hello, welcomes, sends
the assignments and cancels a test gives it, and records every update the worker sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from types import SimpleNamespace

import grpc
import pytest
from google.protobuf import duration_pb2

import dukat
from dukat import convert, errors
from dukat.client import Client, DispatchTask, Reconnect, UpstreamResult, _reconnect
from dukat.core.states import TaskState
from dukat.v1 import job_pb2, scheduler_pb2, work_pb2
from tests.helpers import wait_for


class StandIn:
    """The daemon's side of one or more Work streams."""

    def __init__(self) -> None:
        self.hellos: list[work_pb2.WorkerHello] = []
        self.updates: list[work_pb2.WorkerUpdate] = []
        self.outbox: asyncio.Queue[scheduler_pb2.WorkResponse | None] = asyncio.Queue()
        self.metadata: list[dict[str, str]] = []
        self.end_code = grpc.StatusCode.UNAVAILABLE
        """The status a stream ends with when the test puts None in the outbox."""
        self.heartbeats = False
        """Whether the welcome promises the daemon's heartbeats (this one sends none)."""

    async def Work(self, request_iterator: object, context: grpc.aio.ServicerContext) -> None:
        self.metadata.append(dict(context.invocation_metadata() or ()))
        first = await context.read()
        self.hellos.append(first.hello)
        welcome = work_pb2.WorkerWelcome(
            worker_id=first.hello.worker_id or "made-up",
            heartbeat_interval=duration_pb2.Duration(nanos=50_000_000),
            heartbeat_timeout=duration_pb2.Duration(nanos=300_000_000),
            max_result_bytes=100,
            daemon_heartbeats=self.heartbeats,
        )
        await context.write(scheduler_pb2.WorkResponse(welcome=welcome))

        async def pump() -> None:
            while (response := await self.outbox.get()) is not None:
                await context.write(response)
            await context.abort(self.end_code, "ended by the test")

        pumping = asyncio.create_task(pump())
        try:
            while (request := await context.read()) is not grpc.aio.EOF:
                self.updates.append(request.update)
        finally:
            pumping.cancel()

    def results(self) -> dict[tuple[str, int], work_pb2.WorkResult]:
        return {(r.task_id, r.attempt): r for u in self.updates for r in u.results}

    def progress(self) -> list[work_pb2.WorkProgress]:
        return [p for u in self.updates for p in u.progress]


def assign(task_id: str, payload: bytes, attempt: int = 1, **fields: object):
    return work_pb2.TaskAssignment(
        job_id="j", task_id=task_id, attempt=attempt, queue="q", payload=payload, **fields
    )


@contextlib.asynccontextmanager
async def serving(stand_in: StandIn) -> AsyncIterator[str]:
    handler = grpc.method_handlers_generic_handler(
        "dukat.v1.SchedulerService",
        {
            "Work": grpc.stream_stream_rpc_method_handler(
                stand_in.Work,
                request_deserializer=scheduler_pb2.WorkRequest.FromString,
                response_serializer=scheduler_pb2.WorkResponse.SerializeToString,
            )
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="dukat-work-") as directory:
        address = f"unix:{directory}/w.sock"
        server.add_insecure_port(address)
        await server.start()
        try:
            yield address
        finally:
            await server.stop(None)


FAST = Reconnect(initial_backoff=0.01, max_backoff=0.05, give_up_after=5)


@pytest.fixture
async def stand_in() -> AsyncIterator[tuple[StandIn, Client]]:
    daemon = StandIn()
    async with (
        serving(daemon) as address,
        dukat.connect(address, token="t", reconnect=FAST) as client,
    ):
        yield daemon, client


async def handler(task: DispatchTask) -> bytes:
    if task.payload == b"fail":
        raise ValueError("bad input")
    if task.payload == b"fatal":
        raise KeyError("no such row")
    if task.payload == b"big":
        return b"x" * 101
    if task.payload == b"slow":
        task.report_progress(0.5, "halfway")
        await asyncio.sleep(30)
    if task.payload == b"text":
        return "not bytes"  # type: ignore[return-value]
    return task.payload.upper() + b"".join(u.payload for u in task.upstream_results)


async def test_hello_assignments_and_batched_results(stand_in) -> None:
    daemon, client = stand_in
    worker = client.worker(["q", "r"], handler, 3, retryable=lambda e: isinstance(e, ValueError))
    async with worker:
        await asyncio.wait_for(worker.connected.wait(), 5)
        assert daemon.hellos[0].queues == ["q", "r"] and daemon.hellos[0].max_in_flight == 3
        assert daemon.metadata[0]["authorization"] == "Bearer t"
        upstream = work_pb2.UpstreamResult(
            task_id="up", state=job_pb2.TASK_STATE_SUCCEEDED, payload=b"+up"
        )
        daemon.outbox.put_nowait(
            scheduler_pb2.WorkResponse(
                assignments=[
                    assign("a", b"ok", upstream_results=[upstream]),
                    assign("b", b"fail"),
                    assign("c", b"fatal"),
                ]
            )
        )
        await wait_for(lambda: len(daemon.results()) == 3)
        daemon.outbox.put_nowait(
            scheduler_pb2.WorkResponse(assignments=[assign("d", b"big"), assign("e", b"text")])
        )
        await wait_for(lambda: len(daemon.results()) == 5)
    results = daemon.results()
    assert results["a", 1].success.payload == b"OK+up"
    assert (results["b", 1].error.type, results["b", 1].error.retryable) == ("ValueError", True)
    assert results["b", 1].error.message == "bad input"
    assert (results["c", 1].error.type, results["c", 1].error.retryable) == ("KeyError", False)
    assert (
        results["d", 1].error.retryable is False and "limit of 100" in results["d", 1].error.message
    )
    assert results["e", 1].error.type == "TypeError"
    # Results of one message's assignments come back together.
    assert any(len(u.results) == 3 for u in daemon.updates)


async def test_heartbeats_are_empty_updates_at_the_welcomes_interval(stand_in) -> None:
    daemon, client = stand_in
    async with client.worker("q", handler) as worker:
        await asyncio.wait_for(worker.connected.wait(), 5)
        await wait_for(lambda: len(daemon.updates) >= 3)
    assert all(not u.results and not u.progress for u in daemon.updates)


async def test_progress_is_sent_and_a_cancel_stops_the_handler(stand_in) -> None:
    daemon, client = stand_in
    async with client.worker("q", handler, 2) as worker:
        await asyncio.wait_for(worker.connected.wait(), 5)
        daemon.outbox.put_nowait(scheduler_pb2.WorkResponse(assignments=[assign("s", b"slow")]))
        await wait_for(lambda: daemon.progress())
        progress = daemon.progress()[0]
        assert (progress.task_id, progress.attempt, progress.fraction, progress.message) == (
            "s",
            1,
            0.5,
            "halfway",
        )
        cancel = work_pb2.TaskCancel(job_id="j", task_id="s", attempt=1, reason="timeout")
        daemon.outbox.put_nowait(scheduler_pb2.WorkResponse(cancels=[cancel]))
        await wait_for(lambda: ("s", 1) in daemon.results())
    assert daemon.results()["s", 1].error.type == "CancelledError"


async def test_after_the_stream_breaks_the_worker_says_hello_again(stand_in) -> None:
    daemon, client = stand_in
    async with client.worker("q", handler) as worker:
        await asyncio.wait_for(worker.connected.wait(), 5)
        daemon.outbox.put_nowait(scheduler_pb2.WorkResponse(assignments=[assign("s", b"slow")]))
        await wait_for(lambda: daemon.progress())
        daemon.outbox.put_nowait(None)  # the daemon ends the stream: UNAVAILABLE
        await wait_for(lambda: len(daemon.hellos) == 2)
        await asyncio.wait_for(worker.connected.wait(), 5)
        # The lost stream's attempt was abandoned, not reported on the new stream.
        daemon.outbox.put_nowait(scheduler_pb2.WorkResponse(assignments=[assign("s", b"x", 2)]))
        await wait_for(lambda: ("s", 2) in daemon.results())
    assert ("s", 1) not in daemon.results()


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.DEADLINE_EXCEEDED,  # missed heartbeats (a stalled loop)
        grpc.StatusCode.CANCELLED,  # a call cut at the end of a daemon's shutdown grace
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
    ],
)
async def test_a_stream_ended_by_any_other_status_is_retried(stand_in, code) -> None:
    daemon, client = stand_in
    daemon.end_code = code
    async with client.worker("q", handler) as worker:
        await asyncio.wait_for(worker.connected.wait(), 5)
        daemon.outbox.put_nowait(None)
        await wait_for(lambda: len(daemon.hellos) == 2)
        await asyncio.wait_for(worker.connected.wait(), 5)


async def test_a_daemon_that_promised_heartbeats_and_went_silent_is_left(stand_in, caplog):
    daemon, client = stand_in
    daemon.heartbeats = True
    async with client.worker("q", handler) as worker:
        await asyncio.wait_for(worker.connected.wait(), 5)
        await wait_for(lambda: len(daemon.hellos) == 2)  # 0.3 s of silence: a new stream
    assert "the daemon sent nothing for 0.3s, its heartbeat timeout" in caplog.text


async def test_the_silence_of_a_daemon_that_promised_no_heartbeats_means_nothing(stand_in):
    # An older daemon says nothing while it has nothing to assign: its stream is kept.
    daemon, client = stand_in
    async with client.worker("q", handler) as worker:
        await asyncio.wait_for(worker.connected.wait(), 5)
        await wait_for(lambda: len(daemon.updates) >= 12)  # 0.6 s of the worker's heartbeats
        assert len(daemon.hellos) == 1 and worker.connected.is_set()


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (grpc.StatusCode.UNAUTHENTICATED, errors.UnauthenticatedError),
        (grpc.StatusCode.PERMISSION_DENIED, errors.PermissionDeniedError),
        (grpc.StatusCode.INVALID_ARGUMENT, errors.InvalidArgumentError),
        (grpc.StatusCode.UNIMPLEMENTED, errors.DaemonError),
    ],
)
async def test_a_status_no_new_stream_can_change_ends_the_worker(stand_in, code, error) -> None:
    daemon, client = stand_in
    daemon.end_code = code
    worker = client.worker("q", handler)
    running = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.connected.wait(), 5)
    daemon.outbox.put_nowait(None)
    with pytest.raises(error) as raised:
        await asyncio.wait_for(running, 5)
    assert raised.value.code == code.name
    assert len(daemon.hellos) == 1


@pytest.fixture
def waits(monkeypatch) -> list[float]:
    """The reconnect waits, recorded instead of slept (the rest of asyncio is left alone)."""
    recorded: list[float] = []

    async def sleep(delay: float) -> None:
        recorded.append(delay)
        await asyncio.sleep(0)

    fake = SimpleNamespace(sleep=sleep, get_running_loop=asyncio.get_running_loop)
    monkeypatch.setattr(_reconnect, "asyncio", fake)
    return recorded


async def test_without_a_daemon_the_worker_keeps_trying_waiting_longer_each_time(waits) -> None:
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="dukat-work-") as directory:
        async with (
            dukat.connect(f"unix:{directory}/nobody.sock") as client,
            client.worker("q", handler) as worker,
        ):
            await wait_for(lambda: len(waits) >= 9)
            assert not worker.connected.is_set()
    # WORKER_RECONNECT: 0.1 s doubling to a 5 s cap, each jittered down by up to a half.
    for wait, cap in zip(waits, (0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5, 5, 5), strict=False):
        assert cap / 2 <= wait <= cap, waits


async def test_a_welcome_starts_the_backoff_over(stand_in, waits) -> None:
    daemon, client = stand_in
    reconnect = Reconnect(initial_backoff=1, max_backoff=8, give_up_after=None)
    async with client.worker("q", handler, reconnect=reconnect) as worker:
        for hellos in (2, 3, 4):
            await asyncio.wait_for(worker.connected.wait(), 5)
            daemon.outbox.put_nowait(None)
            await wait_for(lambda n=hellos: len(daemon.hellos) == n)
    assert len(waits) == 3 and all(0.5 <= wait <= 1 for wait in waits), waits


def test_dispatch_task_is_frozen_data_from_an_assignment() -> None:
    upstream = work_pb2.UpstreamResult(task_id="u", state=job_pb2.TASK_STATE_FAILED, error="no")
    assignment = assign("a", b"p", 2, upstream_results=[upstream], content_type="text/plain")
    assignment.timeout.FromSeconds(3)
    task = convert.dispatch_task_from_proto(assignment)
    assert task == DispatchTask(
        "j",
        "a",
        2,
        "q",
        b"p",
        "text/plain",
        (UpstreamResult("u", TaskState.FAILED, error="no"),),
        3.0,
    )
    task.report_progress(0.1)  # no sink: nowhere to go, and no error
    with pytest.raises(ValueError, match="between 0 and 1"):
        task.report_progress(2)


async def test_bad_worker_arguments_name_the_fix(stand_in) -> None:
    _, client = stand_in
    with pytest.raises(ValueError, match="at least one named queue"):
        client.worker([], handler)
    with pytest.raises(ValueError, match="concurrency must be at least 1"):
        client.worker("q", handler, 0)
