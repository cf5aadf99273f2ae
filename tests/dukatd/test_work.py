"""SchedulerService.Work over real gRPC: raw-stub workers serving dispatch tasks."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable

import grpc
import pytest
from google.rpc import code_pb2

from dukat.actions import DispatchResult
from dukat.core.clock import ManualClock
from dukat.core.retry import RetryPolicy
from dukat.core.scheduler import Scheduler
from dukat.core.states import JobState, TaskState
from dukat.errors import HeartbeatTimeoutError, ProtocolError
from dukat.v1 import job_pb2, scheduler_pb2, scheduler_pb2_grpc, work_pb2
from dukatd.metrics import DaemonMetrics
from dukatd.status import to_status
from dukatd.work_hub import WorkerHub
from tests.dukatd.work_worker import dispatch, failure, success, work_daemon
from tests.helpers import finished, settle, wait_for

RETRY = RetryPolicy(max_attempts=3, initial_backoff=0.0, jitter=0.0)


async def test_a_worker_serves_tasks_and_the_job_succeeds_with_their_payloads() -> None:
    async with work_daemon() as daemon:
        worker = await daemon.worker(worker_id="w1")
        assert worker.welcome.worker_id == "w1"
        assert worker.welcome.max_result_bytes == 1024 * 1024
        job_id = await daemon.submit(*(dispatch(f"t{i}", b"p%d" % i) for i in range(5)))
        assert await finished(daemon.scheduler, job_id) is JobState.SUCCEEDED
        got = await daemon.stub.GetJob(scheduler_pb2.GetJobRequest(job_id=job_id))
        assert got.job.state == job_pb2.JOB_STATE_SUCCEEDED
        assert got.job.task_counts.succeeded == 5
        results = daemon.scheduler.results(job_id)
        assert results["t3"].result == DispatchResult(b"p3", "text/plain")
        events = [
            event
            async for response in daemon.stub.Watch(scheduler_pb2.WatchRequest(job_id=job_id))
            for event in response.events
        ]
        assert events[-1].job_state.state == job_pb2.JOB_STATE_SUCCEEDED


async def test_dependents_get_their_upstream_results_in_order() -> None:
    def handler(assignment: work_pb2.TaskAssignment) -> work_pb2.WorkResult:
        joined = b"+".join(up.payload for up in assignment.upstream_results)
        return success(assignment, assignment.payload + joined)

    async with work_daemon() as daemon:
        worker = await daemon.worker(handler=handler)
        job_id = await daemon.submit(
            dispatch("a", b"A"), dispatch("b", b"B"), dispatch("c", b"C", dependencies=("b", "a"))
        )
        assert await finished(daemon.scheduler, job_id) is JobState.SUCCEEDED
        (c,) = [a for a in worker.assignments if a.task_id == "c"]
        assert [up.task_id for up in c.upstream_results] == ["b", "a"]
        assert c.upstream_results[0].content_type == "text/plain"
        assert c.upstream_results[0].state == job_pb2.TASK_STATE_SUCCEEDED
        assert daemon.scheduler.results(job_id)["c"].result.payload == b"CB+A"


async def test_retryable_errors_are_retried_and_others_fail_at_once() -> None:
    def handler(assignment: work_pb2.TaskAssignment) -> work_pb2.WorkResult:
        if assignment.payload == b"flaky" and assignment.attempt == 1:
            return failure(assignment, "try again", retryable=True)
        if assignment.payload == b"broken":
            return failure(assignment, "bad input", retryable=False)
        return success(assignment)

    async with work_daemon() as daemon:
        await daemon.worker(handler=handler)
        job_id = await daemon.submit(
            dispatch("flaky", b"flaky", retry=RETRY), dispatch("broken", b"broken", retry=RETRY)
        )
        assert await finished(daemon.scheduler, job_id) is JobState.FAILED
        results = daemon.scheduler.results(job_id)
        assert results["flaky"].state is TaskState.SUCCEEDED
        assert results["flaky"].attempts == 2
        assert results["broken"].state is TaskState.FAILED
        assert results["broken"].attempts == 1  # not retryable: two attempts left unused
        assert "ValueError: bad input" in results["broken"].message


async def test_progress_reports_become_progress_events() -> None:
    async with work_daemon() as daemon:
        worker = await daemon.worker(handler=lambda assignment: None)
        job_id = await daemon.submit(dispatch("t"))
        await wait_for(lambda: worker.held)
        (assignment,) = worker.held.values()
        key = {"job_id": job_id, "task_id": "t", "attempt": assignment.attempt}
        worker.send(
            [success(assignment)],
            [work_pb2.WorkProgress(**key, fraction=0.5, message="halfway")],
        )
        assert await finished(daemon.scheduler, job_id) is JobState.SUCCEEDED
        events = [
            event
            async for response in daemon.stub.Watch(scheduler_pb2.WatchRequest(job_id=job_id))
            for event in response.events
        ]
        (progress,) = [e.progress for e in events if e.WhichOneof("kind") == "progress"]
        assert (progress.task_id, progress.fraction, progress.message) == ("t", 0.5, "halfway")


async def test_many_tasks_travel_in_few_messages_both_ways() -> None:
    async with work_daemon() as daemon:
        worker = await daemon.worker(max_in_flight=500)
        job_id = await daemon.submit(*(dispatch(f"t{i}") for i in range(400)))
        assert await finished(daemon.scheduler, job_id) is JobState.SUCCEEDED
        assert len(worker.assignments) == 400
        assert worker.messages <= 40, worker.messages  # batched: not one message per task


async def test_a_worker_never_holds_more_than_its_max_in_flight() -> None:
    async with work_daemon() as daemon:
        worker = await daemon.worker(max_in_flight=3, handler=lambda assignment: None)
        job_id = await daemon.submit(*(dispatch(f"t{i}") for i in range(10)))
        await wait_for(lambda: len(worker.held) == 3)
        await settle()
        assert len(worker.assignments) == 3
        first = next(iter(worker.held.values()))
        worker.send([success(first)])  # one result: room for exactly one more
        await wait_for(lambda: len(worker.assignments) == 4)
        await settle()
        assert len(worker.assignments) == 4
        worker.handler = success
        worker.send([success(a) for a in list(worker.held.values())])
        assert await finished(daemon.scheduler, job_id) is JobState.SUCCEEDED
        assert worker.peak == 3


async def test_work_is_shared_round_robin_between_workers() -> None:
    async with work_daemon() as daemon:
        one = await daemon.worker(handler=lambda assignment: None)
        two = await daemon.worker(handler=lambda assignment: None)
        await daemon.submit(*(dispatch(f"t{i}") for i in range(10)))
        await wait_for(lambda: len(one.held) + len(two.held) == 10)
        assert len(one.held) == len(two.held) == 5


async def test_a_killed_worker_loses_its_tasks_to_another() -> None:
    async with work_daemon() as daemon:
        doomed = await daemon.worker(handler=lambda assignment: None)
        job_id = await daemon.submit(*(dispatch(f"t{i}", retry=RETRY) for i in range(4)))
        await wait_for(lambda: len(doomed.held) == 4)
        await doomed.close()
        survivor = await daemon.worker()
        assert await finished(daemon.scheduler, job_id) is JobState.SUCCEEDED
        assert sorted(a.task_id for a in survivor.assignments) == ["t0", "t1", "t2", "t3"]
        assert all(a.attempt == 2 for a in survivor.assignments)
        assert all(r.attempts == 2 for r in daemon.scheduler.results(job_id).values())


async def test_a_lost_worker_interrupts_its_tasks_which_run_again_unless_they_must_not() -> None:
    """No retry policy: the lost attempt was interrupted, not failed, and runs again; a task
    with max_interruptions=0 fails instead."""
    async with work_daemon() as daemon:
        doomed = await daemon.worker(handler=lambda assignment: None, worker_id="w1")
        job_id = await daemon.submit(dispatch("t"), dispatch("once", max_interruptions=0))
        await wait_for(lambda: len(doomed.held) == 2)
        await doomed.close()
        await daemon.worker()
        assert await finished(daemon.scheduler, job_id) is JobState.FAILED
        results = daemon.scheduler.results(job_id)
        assert (results["t"].state, results["t"].attempts, results["t"].interruptions) == (
            TaskState.SUCCEEDED,
            2,
            1,
        )
        assert results["once"].message == (
            "TaskInterruptedError: interrupted (worker 'w1' left); max_interruptions is 0: "
            "it must not run twice"
        )


async def test_a_silent_worker_loses_its_tasks_and_its_stream() -> None:
    clock = ManualClock()  # the daemon's: the silence is timed on it, not waited for
    async with work_daemon(clock=clock, heartbeat_interval=1, heartbeat_timeout=3) as daemon:
        silent = await daemon.worker(handler=lambda assignment: None)
        assert silent.welcome.heartbeat_timeout.ToMilliseconds() == 3000
        job_id = await daemon.submit(*(dispatch(f"t{i}", retry=RETRY) for i in range(3)))
        await wait_for(lambda: len(silent.held) == 3)
        silent.stop_heartbeats()
        await clock.advance(2.9)
        await settle()
        assert silent.status is None and len(daemon.hub.sessions) == 1  # not silent long enough
        await clock.advance(0.2)
        await wait_for(lambda: silent.status is not None)
        assert silent.status is grpc.StatusCode.DEADLINE_EXCEEDED
        assert "sent nothing for 3.0s, more than the heartbeat_timeout of 3s" in silent.details
        survivor = await daemon.worker()
        assert await finished(daemon.scheduler, job_id) is JobState.SUCCEEDED
        assert len(survivor.assignments) == 3
        events = [e async for batch in daemon.scheduler.watch(job_id) for e in batch]
        retrying = [e.message for e in events if getattr(e, "state", None) is TaskState.RETRYING]
        assert len(retrying) == 3
        silent_for = re.compile(r"interrupted \(worker '.+' went silent for \d+\.\ds\), 1 of 3")
        assert all(silent_for.match(message) for message in retrying), retrying


async def test_the_daemon_heartbeats_to_a_worker_it_has_nothing_for() -> None:
    clock = ManualClock()  # the worker's heartbeats come in real time: a long timeout
    async with work_daemon(clock=clock, heartbeat_interval=1, heartbeat_timeout=30) as daemon:
        worker = await daemon.worker()
        assert worker.welcome.daemon_heartbeats
        await clock.advance(0.9)
        await settle()
        assert worker.messages == 0  # an interval has not passed since the welcome
        for beats in (1, 2, 3):  # one a heartbeat interval, no more
            await clock.advance(1)
            await wait_for(lambda beats=beats: worker.heartbeats == beats)
        await settle()
        assert worker.messages == worker.heartbeats == 3  # nothing else was sent
        job_id = await daemon.submit(dispatch("t"))
        assert await finished(daemon.scheduler, job_id) is JobState.SUCCEEDED


async def test_a_late_result_of_an_old_attempt_is_ignored() -> None:
    async with work_daemon() as daemon:
        worker = await daemon.worker(max_in_flight=2, handler=lambda assignment: None)
        job_id = await daemon.submit(dispatch("t", b"x", timeout=0.2, retry=RETRY))
        await wait_for(lambda: len(worker.assignments) == 2)  # attempt 1 timed out, then 2
        first, second = worker.assignments
        assert (first.attempt, second.attempt) == (1, 2)
        assert [(c.task_id, c.attempt) for c in worker.cancels] == [("t", 1)]
        worker.send([success(first, b"late")])
        worker.send([success(second, b"fresh")])
        worker.send([success(second, b"again")])  # a duplicate: never applied twice
        assert await finished(daemon.scheduler, job_id) is JobState.SUCCEEDED
        await settle()
        result = daemon.scheduler.results(job_id)["t"]
        assert (result.result.payload, result.attempts) == (b"fresh", 2)
        assert worker.status is None  # stale reports are ignored, not punished


async def test_cancelling_a_job_sends_task_cancel_to_the_worker() -> None:
    async with work_daemon() as daemon:
        worker = await daemon.worker(handler=lambda assignment: None)
        job_id = await daemon.submit(dispatch("t"))
        await wait_for(lambda: worker.held)
        await daemon.stub.Cancel(scheduler_pb2.CancelRequest(job_id=job_id))
        await wait_for(lambda: worker.cancels)
        (cancel,) = worker.cancels
        assert (cancel.job_id, cancel.task_id, cancel.attempt) == (job_id, "t", 1)
        assert await finished(daemon.scheduler, job_id) is JobState.CANCELLED
        # The slot is free only once the worker answers the cancel.
        (session,) = daemon.hub.sessions
        assert session.credit == 99
        worker.send([failure(next(iter(worker.held.values())), "stopped", retryable=False)])
        await wait_for(lambda: session.credit == 100)


async def test_an_oversize_result_fails_the_task_and_the_stream_stays_up() -> None:
    def handler(assignment: work_pb2.TaskAssignment) -> work_pb2.WorkResult:
        return success(assignment, b"x" * (2000 if assignment.payload == b"big" else 10))

    async with work_daemon(max_result_bytes=1000) as daemon:
        worker = await daemon.worker(handler=handler)
        job_id = await daemon.submit(dispatch("big", b"big", retry=RETRY))
        assert await finished(daemon.scheduler, job_id) is JobState.FAILED
        result = daemon.scheduler.results(job_id)["big"]
        assert result.attempts == 1
        assert "max_result_bytes (1000)" in result.message
        job_id = await daemon.submit(dispatch("small"))
        assert await finished(daemon.scheduler, job_id) is JobState.SUCCEEDED
        assert worker.status is None


async def _refused(address: str, *requests: scheduler_pb2.WorkRequest) -> grpc.aio.AioRpcError:
    async with grpc.aio.insecure_channel(address) as channel:
        call = scheduler_pb2_grpc.SchedulerServiceStub(channel).Work(iter(requests))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in call:
                pass
        return caught.value


def _update(*results: work_pb2.WorkResult) -> scheduler_pb2.WorkRequest:
    return scheduler_pb2.WorkRequest(update=work_pb2.WorkerUpdate(results=results))


HELLO = scheduler_pb2.WorkRequest(hello=work_pb2.WorkerHello(queues=["q"], max_in_flight=1))
STRANGER = work_pb2.WorkResult(
    job_id="nope", task_id="t", attempt=1, success=work_pb2.WorkSuccess()
)


@pytest.mark.parametrize(
    ("requests", "code", "words"),
    [
        ((_update(STRANGER),), grpc.StatusCode.FAILED_PRECONDITION, "first WorkRequest"),
        ((HELLO, _update(STRANGER)), grpc.StatusCode.FAILED_PRECONDITION, "'nope'"),
        ((HELLO, HELLO), grpc.StatusCode.FAILED_PRECONDITION, "second hello"),
        (
            (scheduler_pb2.WorkRequest(hello=work_pb2.WorkerHello(max_in_flight=1)),),
            grpc.StatusCode.INVALID_ARGUMENT,
            "hello.queues",
        ),
        (
            (HELLO, _update(work_pb2.WorkResult(job_id="j", task_id="t", attempt=1))),
            grpc.StatusCode.INVALID_ARGUMENT,
            "no outcome",
        ),
        ((HELLO, scheduler_pb2.WorkRequest()), grpc.StatusCode.INVALID_ARGUMENT, "neither"),
    ],
    ids=["update-first", "unknown-job", "second-hello", "no-queues", "no-outcome", "empty"],
)
async def test_protocol_errors_end_the_stream_and_the_daemon_serves_on(
    requests: tuple[scheduler_pb2.WorkRequest, ...], code: grpc.StatusCode, words: str
) -> None:
    async with work_daemon() as daemon:
        error = await _refused(daemon.address, *requests)
        assert error.code() == code
        assert words in error.details()
        await daemon.worker()
        job_id = await daemon.submit(dispatch("t"))
        assert await finished(daemon.scheduler, job_id) is JobState.SUCCEEDED


async def test_garbage_bytes_end_the_stream_with_invalid_argument() -> None:
    async with work_daemon() as daemon, grpc.aio.insecure_channel(daemon.address) as channel:
        raw = channel.stream_stream(
            "/dukat.v1.SchedulerService/Work",
            request_serializer=lambda data: data,
            response_deserializer=lambda data: data,
        )
        hello = HELLO.SerializeToString()
        for requests in ([b"\xff\xff\xff"], [hello, b"\x12\xff\xff"]):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                async for _ in raw(iter(requests)):
                    pass
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        await daemon.worker()
        job_id = await daemon.submit(dispatch("t"))
        assert await finished(daemon.scheduler, job_id) is JobState.SUCCEEDED


BIG = b"x" * (1024 * 1024)
Misuse = Callable[[str], scheduler_pb2.WorkRequest]


def _progress(fraction: float) -> Misuse:
    def misuse(job_id: str) -> scheduler_pb2.WorkRequest:
        report = work_pb2.WorkProgress(job_id=job_id, task_id="t0", attempt=1, fraction=fraction)
        return scheduler_pb2.WorkRequest(update=work_pb2.WorkerUpdate(progress=[report]))

    return misuse


def _no_outcome(job_id: str) -> scheduler_pb2.WorkRequest:
    return _update(work_pb2.WorkResult(job_id=job_id, task_id="t0", attempt=1))


def _oversize(job_id: str) -> scheduler_pb2.WorkRequest:
    return _update(
        work_pb2.WorkResult(
            job_id=job_id, task_id="t0", attempt=1, success=work_pb2.WorkSuccess(payload=25 * BIG)
        )
    )


async def _end_of(call: grpc.aio.StreamStreamCall) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        while await call.read() is not grpc.aio.EOF:
            pass
    return caught.value


@pytest.mark.parametrize(
    ("misuse", "code", "words"),
    [
        (lambda job_id: HELLO, grpc.StatusCode.FAILED_PRECONDITION, "second hello"),
        (_progress(math.nan), grpc.StatusCode.INVALID_ARGUMENT, "fraction"),
        (_progress(math.inf), grpc.StatusCode.INVALID_ARGUMENT, "fraction"),
        (_progress(1.5), grpc.StatusCode.INVALID_ARGUMENT, "fraction"),
        (lambda job_id: _update(STRANGER), grpc.StatusCode.FAILED_PRECONDITION, "'nope'"),
        (_no_outcome, grpc.StatusCode.INVALID_ARGUMENT, "no outcome"),
        (lambda job_id: scheduler_pb2.WorkRequest(), grpc.StatusCode.INVALID_ARGUMENT, "neither"),
        (_oversize, grpc.StatusCode.RESOURCE_EXHAUSTED, "larger than max"),
        (None, grpc.StatusCode.DEADLINE_EXCEEDED, "heartbeat_timeout"),
    ],
    ids=[
        "second-hello",
        "nan-progress",
        "inf-progress",
        "progress-over-1",
        "unknown-job",
        "no-outcome",
        "empty",
        "over-max-message-bytes",
        "silent",
    ],
)
async def test_a_stream_ended_while_the_daemon_writes_to_it_still_gets_its_status(
    misuse: Misuse | None, code: grpc.StatusCode, words: str
) -> None:
    # The worker reads nothing while 1 MiB assignments pile up for it, so the daemon's writer
    # is stuck behind flow control when the stream fails. Its attempts are given up at once;
    # the status follows what was sent already, not the client's own deadline.
    clock = ManualClock()  # the daemon's: only the silent stream's test moves it
    async with (
        work_daemon(clock=clock, max_message_bytes=24 * len(BIG)) as daemon,
        grpc.aio.insecure_channel(daemon.address) as channel,
    ):
        call = scheduler_pb2_grpc.SchedulerServiceStub(channel).Work(timeout=60)
        hello = work_pb2.WorkerHello(queues=["q"], max_in_flight=20)
        await call.write(scheduler_pb2.WorkRequest(hello=hello))
        assert (await call.read()).HasField("welcome")
        (session,) = daemon.hub.sessions
        job_id = await daemon.submit(*(dispatch(f"t{i}", BIG, retry=RETRY) for i in range(20)))
        # All twenty assigned, and more to write than the worker lets through unread.
        await wait_for(lambda: len(session.outstanding) == 20 and session.to_send)
        if misuse is not None:
            await call.write(misuse(job_id))
        else:
            await clock.advance(5.1)  # past the heartbeat_timeout
        await wait_for(lambda: session not in daemon.hub.sessions, within=10)

        error = await asyncio.wait_for(_end_of(call), 10)
        assert error.code() == code, error
        assert words in (error.details() or "")
        await daemon.worker(handler=lambda assignment: success(assignment, b"ok"))
        assert await finished(daemon.scheduler, job_id) is JobState.SUCCEEDED


async def test_tasks_on_a_queue_nobody_serves_wait_for_a_worker() -> None:
    async with work_daemon() as daemon:
        job_id = await daemon.submit(dispatch("t", b"x"))
        await settle()
        assert daemon.scheduler.job_state(job_id) is JobState.RUNNING
        # READY, outside the scheduler's slots, until a worker can take it
        assert daemon.scheduler.get_job(job_id).task("t").state is TaskState.READY
        assert daemon.scheduler.running == 0
        assert "waiting:0 admitting:1" in repr(daemon.hub)
        await daemon.worker()
        assert await finished(daemon.scheduler, job_id) is JobState.SUCCEEDED


async def test_a_dispatch_task_takes_a_slot_only_when_a_worker_has_room_for_it() -> None:
    async with work_daemon() as daemon:
        worker = await daemon.worker(max_in_flight=3, handler=lambda assignment: None)
        job_id = await daemon.submit(*(dispatch(f"t{i}") for i in range(10)))
        await wait_for(lambda: len(worker.held) == 3)
        await settle()
        states = [task.state for task in daemon.scheduler.get_job(job_id).tasks]
        assert states.count(TaskState.RUNNING) == 3 == daemon.scheduler.running
        assert states.count(TaskState.READY) == 7  # waiting for the worker, in no slot
        assert "waiting:0 admitting:7" in repr(daemon.hub)
        first = next(iter(worker.held.values()))
        worker.send([success(first)])  # room for one more: one more is admitted and sent
        await wait_for(lambda: len(worker.assignments) == 4)
        await settle()
        assert daemon.scheduler.running == 3 and len(worker.assignments) == 4


async def test_cancelled_tasks_that_never_reached_a_worker_leave_nothing_behind() -> None:
    async with work_daemon() as daemon:
        job_id = await daemon.submit(*(dispatch(f"t{i}") for i in range(200)))
        await wait_for(lambda: "admitting:200" in repr(daemon.hub))
        await daemon.stub.Cancel(scheduler_pb2.CancelRequest(job_id=job_id))
        assert await finished(daemon.scheduler, job_id) is JobState.CANCELLED
        await settle()
        worker = await daemon.worker()
        await settle()
        assert worker.assignments == []
        assert "waiting:0 admitting:0" in repr(daemon.hub)
        assert not daemon.hub._admitting  # rebuilt away, not left for the next worker to skip


async def test_the_hub_tells_its_listeners_how_many_workers_are_connected() -> None:
    async with work_daemon() as daemon:
        metrics = DaemonMetrics()
        counts: list[int] = []
        daemon.hub.add_listener(counts.append)
        daemon.hub.add_listener(metrics.workers_connected.set)

        def gauge() -> float | None:
            return metrics.registry.get_sample_value("dukat_workers_connected")

        one = await daemon.worker()
        two = await daemon.worker()
        assert gauge() == 2
        await one.close()
        await wait_for(lambda: gauge() == 1)
        await two.close()
        await wait_for(lambda: gauge() == 0)
        assert counts == [0, 1, 2, 1, 0]  # told the count at once when added
        daemon.hub.remove_listener(counts.append)
        await (await daemon.worker()).close()
        await wait_for(lambda: gauge() == 0)
        assert counts == [0, 1, 2, 1, 0]


async def test_no_assignment_goes_out_before_before_send_returns() -> None:
    # The daemon passes its journal's sync: no worker runs an attempt not yet on disk.
    gate = asyncio.Event()
    calls: list[int] = []

    async def before_send() -> None:
        calls.append(len(calls))
        await gate.wait()

    clock = ManualClock()
    async with work_daemon(before_send=before_send, clock=clock, heartbeat_interval=1) as daemon:
        worker = await daemon.worker()
        job_id = await daemon.submit(dispatch("a", b"A"))
        await wait_for(lambda: calls == [0])
        await settle()
        assert worker.assignments == []  # held behind the wait
        assert daemon.scheduler.get_job(job_id).task("a").state is TaskState.RUNNING
        # A journal that takes long (a full disk) does not make the daemon look gone.
        for beats in (1, 2, 3):
            await clock.advance(1)
            await wait_for(lambda beats=beats: worker.heartbeats == beats)
        assert calls == [0] and worker.assignments == []
        gate.set()
        assert await finished(daemon.scheduler, job_id) is JobState.SUCCEEDED
        assert [a.task_id for a in worker.assignments] == ["a"]


def test_the_dispatch_errors_get_the_statuses_the_protocol_names() -> None:
    # The dispatch modules raise dukat.errors; the daemon's status module alone knows gRPC.
    assert to_status(ProtocolError("a second hello")).code == code_pb2.FAILED_PRECONDITION
    silent = HeartbeatTimeoutError("silent", silent=31.0, timeout=30.0)
    assert to_status(silent).code == code_pb2.DEADLINE_EXCEEDED


async def test_the_hub_times_heartbeats_on_the_schedulers_clock_unless_given_one() -> None:
    clock, other = ManualClock(), ManualClock()
    scheduler = Scheduler(clock=clock)
    try:
        assert WorkerHub(scheduler).clock is clock
        assert WorkerHub(scheduler, clock=other, install=False).clock is other
    finally:
        await scheduler.close(grace=0)
