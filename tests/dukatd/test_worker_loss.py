"""A worker process killed with SIGKILL mid-task: its attempts are retried on another worker.

Real processes on both sides: `python -m dukatd`, and a worker in a Python process of its
own (`dukat.client`'s worker, as a user would run it), killed while it holds every task.
"""

from __future__ import annotations

import asyncio
import sys

import dukat
from dukat.actions import DispatchAction
from dukat.client import DispatchTask
from dukat.core.retry import RetryPolicy
from dukat.core.spec import JobSpec, TaskSpec
from dukat.core.states import JobState, TaskState
from tests.dukatd.daemon_process import REPO

# Says which task it started on stdout, then never finishes it.
DOOMED_WORKER = """
import asyncio, sys
import dukat

async def hold(task):
    print(f"started {task.task_id} {task.attempt}", flush=True)
    await asyncio.Event().wait()

async def main():
    async with dukat.connect(sys.argv[1]) as client:
        await client.worker("q", hold, concurrency=3).run()

asyncio.run(main())
"""

RETRY = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.05)


async def test_the_tasks_of_a_killed_worker_process_succeed_on_the_next(daemons) -> None:
    daemon = await daemons().serving()
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-W",
        "error",
        "-c",
        DOOMED_WORKER,
        daemon.address,
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO,
    )
    try:
        leaves = tuple(
            TaskSpec(name, DispatchAction("q", name.encode()), retry=RETRY) for name in "abc"
        )
        after = TaskSpec("d", DispatchAction("q", b"d"), dependencies=("a", "b", "c"))
        async with dukat.connect(daemon.address) as client:
            handle = await client.submit(JobSpec(tasks=(*leaves, after)))
            assert worker.stdout is not None
            started = [await asyncio.wait_for(worker.stdout.readline(), 30) for _ in range(3)]
            assert sorted(started) == [b"started a 1\n", b"started b 1\n", b"started c 1\n"]

            worker.kill()  # SIGKILL: no goodbye, the daemon finds the stream gone
            await worker.wait()

            served: list[tuple[str, int]] = []

            async def shout(task: DispatchTask) -> bytes:
                served.append((task.task_id, task.attempt))
                return task.payload.upper()

            async with client.worker("q", shout, concurrency=3):
                job = await asyncio.wait_for(handle.wait(), 30)
            snapshot = await handle.get()
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    assert job.state is JobState.SUCCEEDED, job
    assert sorted(served) == [("a", 2), ("b", 2), ("c", 2), ("d", 1)]
    assert {t.id: (t.state, t.attempts) for t in snapshot.tasks} == {
        "a": (TaskState.SUCCEEDED, 2),
        "b": (TaskState.SUCCEEDED, 2),
        "c": (TaskState.SUCCEEDED, 2),
        "d": (TaskState.SUCCEEDED, 1),
    }
    assert snapshot.task("a").result.payload == b"A"
