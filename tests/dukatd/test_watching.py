"""Watch and `handle.wait()` on a journaled daemon (issue 10) while retention drops jobs.

The journal holds each job's events back from watchers until they are on disk, and
publishes them after each commit; a commit that also dropped finished jobs once published
nothing for the jobs written before the drop, and a job dropped before its publish came was
never published at all: their watchers waited for ever (item 1). One client's idle watches
could take every Watch slot, and `wait()` failed without one (item 8). `wait()` asked GetJob
for the job after its end, which a job dropped meanwhile answered NOT_FOUND (item 11).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

import dukat
from dukat.actions import DispatchAction
from dukat.core import JobSpec, JobState, TaskSpec, TaskState
from dukat.errors import DaemonNotFoundError, ResourceExhaustedError
from dukat.v1 import job_pb2, scheduler_pb2
from tests.dukatd.test_metrics import scrape
from tests.dukatd.test_recovery import Running
from tests.helpers import wait_for

JOBS = 60
RETAINED = 3


def one_task_job(**labels: str) -> JobSpec:
    return JobSpec(tasks=(TaskSpec("t", DispatchAction("q", b"x")),), labels=labels)


async def echo(task: object) -> bytes:
    return b"done"


async def job_states_seen(running: Running, job_id: str) -> list[int]:
    """The job states a Watch from the start shows, once it ends by itself."""
    request = scheduler_pb2.WatchRequest(job_id=job_id, job_events_only=True)
    return [
        event.job_state.state
        async for reply in running.jobs.Watch(request)
        for event in reply.events
        if event.HasField("job_state")
    ]


async def test_every_watch_ends_while_retention_drops_finished_jobs(short_tmp: Path):
    async with (
        Running(short_tmp, retain_finished_jobs=RETAINED) as running,
        dukat.connect(running.config.listen[0]) as client,
    ):
        handles = [await client.submit(one_task_job()) for _ in range(JOBS)]
        watches = [asyncio.create_task(job_states_seen(running, h.job_id)) for h in handles]
        service = running.daemon.service
        await wait_for(lambda: service.watchers == JOBS)  # before any job can finish
        async with client.worker("q", echo, concurrency=8):
            seen = await asyncio.wait_for(asyncio.gather(*watches), 20)
        assert all(states[-1] == job_pb2.JOB_STATE_SUCCEEDED for states in seen)
        # The jobs still held are watchable from the start, and their watches end too.
        for handle in handles[-RETAINED:]:
            states = await asyncio.wait_for(job_states_seen(running, handle.job_id), 5)
            assert states[-1] == job_pb2.JOB_STATE_SUCCEEDED


async def test_wait_gives_the_end_of_a_job_that_retention_drops_as_it_ends(short_tmp: Path):
    async with (
        Running(short_tmp, retain_finished_jobs=0) as running,
        dukat.connect(running.config.listen[0]) as client,
    ):
        handle = await client.submit(one_task_job(team="data"))
        seen = await handle.get()
        waiting = asyncio.create_task(handle.wait())
        await wait_for(lambda: running.daemon.service.watchers == 1)
        async with client.worker("q", echo):
            job = await asyncio.wait_for(waiting, 10)
        with pytest.raises(DaemonNotFoundError):
            await handle.get()  # it is gone: what wait gives comes from its events
        assert (job.job_id, job.state) == (handle.job_id, JobState.SUCCEEDED)
        assert job.labels == seen.labels == {"team": "data"}
        assert job.message == "1 tasks succeeded" and job.created_at == seen.created_at
        assert job.finished_at is not None and job.finished_at >= job.created_at
        assert job.last_sequence > seen.last_sequence
        assert job.tasks == ()  # the daemon no longer holds them


async def test_one_client_cannot_take_every_watch_slot(short_tmp: Path):
    async with (
        Running(short_tmp, max_watch_streams_per_client=2) as running,
        dukat.connect(running.config.listen[0]) as greedy,
        dukat.connect(running.config.listen[0]) as other,
    ):
        handle = await greedy.submit(one_task_job())
        streams = [handle.events() for _ in range(2)]
        for stream in streams:
            await anext(stream)
        with pytest.raises(ResourceExhaustedError, match="per client"):
            await anext(handle.events())
        # Another client (another connection, on the same socket) still watches.
        watched = other.job(handle.job_id).events()
        await anext(watched)
        assert running.daemon.service.watchers == 3
        for stream in [*streams, watched]:
            await stream.aclose()


async def test_calls_without_a_client_id_are_counted_by_peer(short_tmp: Path):
    # A unix socket shows every peer as "unix:": its clients that send no id count as one.
    async with (
        Running(short_tmp, max_watch_streams_per_client=1) as running,
        dukat.connect(running.config.listen[0]) as client,
    ):
        handle = await client.submit(one_task_job())
        request = scheduler_pb2.WatchRequest(job_id=handle.job_id)
        anonymous = running.jobs.Watch(request)
        await anonymous.initial_metadata()
        await wait_for(lambda: running.daemon.service.watchers == 1)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async for _ in running.jobs.Watch(request):
                pass
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        identified = handle.events()
        await anext(identified)  # a client that says who it is has its own count
        await identified.aclose()
        anonymous.cancel()


async def handled(running: Running, method: str, code: str = "") -> float:
    """RPCs of `method` the daemon completed (with status `code`), from its /metrics."""
    assert running.daemon.metrics_http is not None
    labels = {"grpc_method": method, **({"grpc_code": code} if code else {})}
    return (await scrape(running.daemon.metrics_http)).get("grpc_server_handled_total", **labels)


async def test_wait_polls_get_job_while_watch_is_refused(short_tmp: Path):
    async with (
        Running(short_tmp, max_watch_streams_per_client=1, metrics_listen="127.0.0.1:0") as running,
        dukat.connect(running.config.listen[0]) as client,
    ):
        first, second = [await client.submit(one_task_job()) for _ in range(2)]
        watching = asyncio.create_task(first.wait())
        service = running.daemon.service
        await wait_for(lambda: service.watchers == 1)
        # Its Watch is refused: it polls (a handle by id, which learns a task id to ask for).
        polling = asyncio.create_task(client.job(second.job_id).wait())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while not await handled(running, "Watch", "ResourceExhausted"):
            assert loop.time() < deadline, "the second Watch was not refused"
        polls = await handled(running, "GetJob")
        while await handled(running, "GetJob") < polls + 2:
            assert loop.time() < deadline, "wait() does not poll GetJob"
        assert not polling.done() and service.watchers == 1
        async with client.worker("q", echo):
            first_job, second_job = await asyncio.wait_for(asyncio.gather(watching, polling), 10)
        assert first_job.state is second_job.state is JobState.SUCCEEDED
        assert [task.state for task in second_job.tasks] == [TaskState.SUCCEEDED]
