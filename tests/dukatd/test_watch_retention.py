"""Watch on a journaled daemon while retention drops finished jobs: every watch ends.

The journal holds each job's events back from watchers until they are on disk, and
publishes them after each commit; a commit that also dropped finished jobs once published
nothing for the jobs written before the drop, and a job dropped before its publish came was
never published at all: their watchers waited for ever (issue 10, item 1).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import dukat
from dukat.actions import DispatchAction
from dukat.core import JobSpec, TaskSpec
from dukat.v1 import job_pb2, scheduler_pb2
from tests.dukatd.test_recovery import Running
from tests.helpers import wait_for

JOBS = 60
RETAINED = 3


def one_task_job() -> JobSpec:
    return JobSpec(tasks=(TaskSpec("t", DispatchAction("q", b"x")),))


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
