"""A worker that drains (WorkerUpdate.draining): assigned nothing more, it finishes what it
holds and leaves with the stream ended OK, and no task runs twice or fails for it."""

from __future__ import annotations

import asyncio

import grpc

import dukat
from dukat.core.states import JobState
from dukat.v1 import work_pb2
from dukatd.daemon_service import queues_of
from tests.dukatd.work_worker import dispatch, success, work_daemon
from tests.helpers import finished, settle, wait_for


def hold(assignment: work_pb2.TaskAssignment) -> None:
    return None


async def test_a_draining_worker_finishes_what_it_holds_and_gets_nothing_more() -> None:
    async with work_daemon() as daemon:
        draining = await daemon.worker(max_in_flight=2, handler=hold)
        job_id = await daemon.submit(*(dispatch(f"t{i}") for i in range(4)))
        await wait_for(lambda: len(draining.held) == 2)
        draining.drain()
        await settle()
        other = await daemon.worker()
        await wait_for(lambda: len(other.assignments) == 2)
        # `dukat status` counts the queue's workers: the draining one serves it no more.
        assert [(q.name, q.workers) for q in queues_of(daemon.hub.sessions)] == [("q", 1)]
        # Its slots free up as it hands in its results: still nothing new for it.
        draining.send([success(a) for a in list(draining.held.values())])
        assert await finished(daemon.scheduler, job_id) is JobState.SUCCEEDED
        later = await daemon.submit(*(dispatch(f"later{i}") for i in range(4)))
        assert await finished(daemon.scheduler, later) is JobState.SUCCEEDED
        assert len(draining.assignments) == 2 and not draining.cancels
        # Holding nothing more, it was let go: the daemon ended the stream, OK.
        assert await asyncio.wait_for(draining.ended(), 5) is grpc.StatusCode.OK
        results = daemon.scheduler.results(job_id)
        assert {r.attempts for r in results.values()} == {1}  # nothing ran twice


async def test_assignments_not_sent_yet_go_back_to_their_queue_when_the_worker_drains() -> None:
    gate = asyncio.Event()
    async with work_daemon(before_send=gate.wait) as daemon:
        draining = await daemon.worker(max_in_flight=5, handler=hold)
        job_id = await daemon.submit(dispatch("a"), dispatch("b"))
        await wait_for(lambda: len(daemon.hub.sessions) == 1)
        (session,) = daemon.hub.sessions
        await wait_for(lambda: len(session.to_send) == 2)  # assigned, held by before_send
        draining.drain()
        await wait_for(lambda: session.draining)
        gate.set()
        other = await daemon.worker()
        assert await finished(daemon.scheduler, job_id) is JobState.SUCCEEDED
        assert draining.assignments == [] and len(other.assignments) == 2
        assert await asyncio.wait_for(draining.ended(), 5) is grpc.StatusCode.OK


async def test_a_draining_worker_runs_an_assignment_already_on_its_way_before_it_is_let_go() -> (
    None
):
    async with work_daemon() as daemon:
        draining = await daemon.worker(max_in_flight=1, handler=hold)
        job_id = await daemon.submit(dispatch("first"), dispatch("second"))
        await wait_for(lambda: draining.held)
        # Its result and its draining in one update, as the daemon already assigned it the
        # next task (the credit the result freed): that one is on its way, and outstanding.
        (first,) = draining.held.values()
        draining.send([success(first)])
        await wait_for(lambda: len(draining.assignments) == 2)
        draining.drain()
        await settle()
        assert draining.status is None  # it holds "second": not let go yet
        (second,) = draining.held.values()
        draining.send([success(second)])
        assert await asyncio.wait_for(draining.ended(), 5) is grpc.StatusCode.OK
        assert await finished(daemon.scheduler, job_id) is JobState.SUCCEEDED
        results = daemon.scheduler.results(job_id)
        assert {r.attempts for r in results.values()} == {1}


async def test_a_worker_that_closes_while_still_holding_tasks_loses_them_to_another() -> None:
    async with work_daemon() as daemon:
        draining = await daemon.worker(max_in_flight=1, handler=hold)
        job_id = await daemon.submit(dispatch("t", retry=None))
        await wait_for(lambda: draining.held)
        draining.drain()
        draining.close_side()  # without its result: as if it had left
        assert await asyncio.wait_for(draining.ended(), 5) is grpc.StatusCode.OK
        await daemon.worker()
        state = await finished(daemon.scheduler, job_id)
        # One attempt and no retry policy: the lost attempt was interrupted, not failed.
        assert state is JobState.SUCCEEDED
        result = daemon.scheduler.results(job_id)["t"]
        assert (result.attempts, result.interruptions) == (2, 1)


async def test_the_python_worker_drains_mid_job_and_loses_nothing() -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    ran: list[str] = []

    async def slow(task: dukat.client.DispatchTask) -> bytes:
        ran.append(task.task_id)
        started.set()
        await release.wait()
        return task.payload

    async def fast(task: dukat.client.DispatchTask) -> bytes:
        ran.append(task.task_id)
        return task.payload

    async with work_daemon() as daemon, dukat.connect(daemon.address) as client:
        first = client.worker("q", slow, concurrency=2)
        await first.__aenter__()
        job_id = await daemon.submit(*(dispatch(f"t{i}", b"%d" % i) for i in range(6)))
        await wait_for(lambda: len(ran) == 2)
        drained = asyncio.create_task(first.drain())
        await wait_for(lambda: all(s.draining for s in daemon.hub.sessions))
        async with client.worker("q", fast, concurrency=4):
            await wait_for(lambda: len(ran) == 6)
            assert not drained.done()  # it still holds two
            release.set()
            await asyncio.wait_for(drained, 5)
            assert first.completed == 2 and not first.connected.is_set()
            assert await finished(daemon.scheduler, job_id) is JobState.SUCCEEDED
        results = daemon.scheduler.results(job_id)
        assert sorted(ran) == [f"t{i}" for i in range(6)]  # each ran once
        assert {r.attempts for r in results.values()} == {1}
        assert results["t0"].result.payload == b"0"
