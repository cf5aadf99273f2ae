"""A worker process killed with SIGKILL mid-task: its attempts were interrupted, not failed.

Real processes on both sides: `python -m dukatd`, and workers in Python processes of their
own (`dukat.client`'s worker, as a user would run it), killed while they hold tasks. A killed
worker is a rolling deploy gone rough, not a bug of the task: the task runs again on the next
worker without spending its retry policy (the default, one attempt, included), its breaker
counts no failure, and only a task interrupted more than its `max_interruptions` fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator

import grpc

import dukat
from dukat.actions import DispatchAction
from dukat.client import DispatchTask
from dukat.core.breaker import CircuitBreakerState
from dukat.core.events import TaskStateChanged
from dukat.core.retry import RetryPolicy
from dukat.core.spec import JobSpec, TaskSpec
from dukat.core.states import JobState, TaskState
from dukat.v1 import breaker_pb2, breaker_pb2_grpc
from tests.dukatd.daemon_process import REPO

# Says which attempt it started on stdout, then never finishes it; an attempt 1 of a task
# whose payload is b"fail-first" fails instead.
DOOMED_WORKER = """
import asyncio, sys
import dukat

async def hold(task):
    print(f"started {task.task_id} {task.attempt}", flush=True)
    if task.payload == b"fail-first" and task.attempt == 1:
        raise ValueError("the first attempt fails")
    await asyncio.Event().wait()

async def main():
    async with dukat.connect(sys.argv[1]) as client:
        await client.worker("q", hold, concurrency=4, worker_id=sys.argv[2]).run()

asyncio.run(main())
"""

NOTHING_TO_WAIT = RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.05)


@contextlib.asynccontextmanager
async def doomed_worker(address: str, worker_id: str) -> AsyncIterator[DoomedWorker]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-W",
        "error",
        "-c",
        DOOMED_WORKER,
        address,
        worker_id,
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO,
    )
    try:
        yield DoomedWorker(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


class DoomedWorker:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def started(self, count: int) -> list[str]:
        """The next `count` attempts it started, as "task attempt", sorted."""
        assert self.process.stdout is not None
        lines = [await asyncio.wait_for(self.process.stdout.readline(), 30) for _ in range(count)]
        return sorted(line.decode().removeprefix("started ").strip() for line in lines)

    async def kill(self) -> None:
        """SIGKILL: no goodbye, the daemon finds the stream gone."""
        self.process.kill()
        await self.process.wait()


async def shout(task: DispatchTask) -> bytes:
    return task.payload.upper()


def retrying(events: list[object]) -> list[str]:
    """The messages of the RETRYING changes among `events`."""
    return [
        e.message
        for e in events
        if isinstance(e, TaskStateChanged) and e.state is TaskState.RETRYING
    ]


async def test_the_tasks_of_a_killed_worker_process_run_again_on_the_next(daemons) -> None:
    """The default policy, one attempt: the attempt a killed worker took is given back, and
    the job succeeds; a task that must not run twice (max_interruptions=0) fails instead,
    naming the worker and why."""
    daemon = await daemons().serving()
    leaves = tuple(TaskSpec(name, DispatchAction("q", name.encode())) for name in "abc")
    after = TaskSpec("d", DispatchAction("q", b"d"), dependencies=("a", "b", "c"))
    once = TaskSpec("once", DispatchAction("q", b"once"), max_interruptions=0)
    async with (
        doomed_worker(daemon.address, "doomed") as doomed,
        dukat.connect(daemon.address) as client,
    ):
        handle = await client.submit(JobSpec(tasks=(*leaves, after)))
        once_handle = await client.submit(JobSpec(tasks=(once,)))
        assert await doomed.started(4) == ["a 1", "b 1", "c 1", "once 1"]
        await doomed.kill()

        served: list[tuple[str, int]] = []

        async def serve(task: DispatchTask) -> bytes:
            served.append((task.task_id, task.attempt))
            return await shout(task)

        async with client.worker("q", serve, concurrency=3):
            job = await asyncio.wait_for(handle.wait(), 30)
            once_job = await asyncio.wait_for(once_handle.wait(), 30)
        events = [event async for event in handle.events()]
    assert job.state is JobState.SUCCEEDED, job
    assert sorted(served) == [("a", 2), ("b", 2), ("c", 2), ("d", 1)]
    assert {t.id: (t.state, t.attempts, t.interruptions) for t in job.tasks} == {
        "a": (TaskState.SUCCEEDED, 2, 1),
        "b": (TaskState.SUCCEEDED, 2, 1),
        "c": (TaskState.SUCCEEDED, 2, 1),
        "d": (TaskState.SUCCEEDED, 1, 0),
    }
    assert job.task("a").result.payload == b"A"
    assert set(retrying(events)) == {"interrupted (worker 'doomed' left), 1 of 3; running again"}
    assert once_job.state is JobState.FAILED
    assert once_job.task("once").error == (
        "TaskInterruptedError: interrupted (worker 'doomed' left); max_interruptions is 0: "
        "it must not run twice"
    )


async def test_a_task_whose_workers_are_killed_past_its_max_interruptions_fails(daemons) -> None:
    daemon = await daemons().serving()
    spec = JobSpec(
        tasks=(
            TaskSpec("a", DispatchAction("q", b"a")),
            TaskSpec("b", DispatchAction("q", b"b"), dependencies=("a",)),
        )
    )
    async with dukat.connect(daemon.address) as client:
        handle = await client.submit(spec)
        for attempt in range(1, 5):
            async with doomed_worker(daemon.address, f"doomed-{attempt}") as doomed:
                assert await doomed.started(1) == [f"a {attempt}"]
                await doomed.kill()
        job = await asyncio.wait_for(handle.wait(), 30)
        events = [event async for event in handle.events()]
    assert job.state is JobState.FAILED
    a = job.task("a")
    assert (a.state, a.attempts, a.interruptions) == (TaskState.FAILED, 4, 4)
    assert a.error == (
        "TaskInterruptedError: interrupted 4 times, the last (worker 'doomed-4' left); "
        "max_interruptions is 3"
    )
    assert job.task("b").state is TaskState.SKIPPED
    assert retrying(events) == [
        f"interrupted (worker 'doomed-{n}' left), {n} of 3; running again" for n in (1, 2, 3)
    ]


async def test_a_task_failed_once_and_interrupted_once_still_gets_its_second_attempt(
    daemons,
) -> None:
    """max_attempts=2: attempt 1 fails, attempt 2 is lost with its worker; attempt 3 is the
    task's second real one."""
    daemon = await daemons().serving()
    task = TaskSpec("a", DispatchAction("q", b"fail-first"), retry=NOTHING_TO_WAIT)
    async with dukat.connect(daemon.address) as client:
        handle = await client.submit(JobSpec(tasks=(task,)))
        async with doomed_worker(daemon.address, "doomed") as doomed:
            assert await doomed.started(2) == ["a 1", "a 2"]
            await doomed.kill()
        async with client.worker("q", shout):
            job = await asyncio.wait_for(handle.wait(), 30)
    assert job.state is JobState.SUCCEEDED, job
    a = job.task("a")
    assert (a.attempts, a.interruptions, a.result.payload) == (3, 1, b"FAIL-FIRST")


async def test_a_killed_worker_counts_as_no_failure_for_the_tasks_breaker(daemons) -> None:
    """A breaker that opens at the first failure stays closed: the worker's death says
    nothing about what the breaker guards."""
    daemon = await daemons().serving()
    async with grpc.aio.insecure_channel(daemon.address) as channel:
        await breaker_pb2_grpc.CircuitBreakerServiceStub(channel).ConfigureBreaker(
            breaker_pb2.ConfigureBreakerRequest(
                name="api", config=breaker_pb2.CircuitBreakerConfig(failure_threshold=1)
            )
        )
    task = TaskSpec("a", DispatchAction("q", b"a"), circuit_breaker="api", retry=NOTHING_TO_WAIT)
    async with dukat.connect(daemon.address) as client:
        handle = await client.submit(JobSpec(tasks=(task,)))
        async with doomed_worker(daemon.address, "doomed") as doomed:
            assert await doomed.started(1) == ["a 1"]
            await doomed.kill()
        async with client.worker("q", shout):
            job = await asyncio.wait_for(handle.wait(), 30)
        assert await client.breaker("api").refresh() is CircuitBreakerState.CLOSED
    assert job.state is JobState.SUCCEEDED, job
    assert (job.task("a").attempts, job.task("a").interruptions) == (2, 1)
