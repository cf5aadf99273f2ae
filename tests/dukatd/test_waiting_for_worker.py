"""A dispatch task whose queue no worker serves says so, against a real dukatd: GetJob's
`waiting_for`, one TaskWaiting event per task, and the `dukat_tasks_waiting_for_worker` gauge;
all of it clears once a worker serves the queue."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from prometheus_client.parser import text_string_to_metric_families

import dukat
from dukat.actions import DispatchAction
from dukat.client import Client, DispatchTask
from dukat.core.events import Event, TaskStateChanged, TaskWaiting
from dukat.core.retry import RetryPolicy
from dukat.core.spec import JobSpec, TaskSpec
from dukat.core.states import JobState, TaskState
from tests.dukatd.daemon_process import DaemonProcess
from tests.helpers import wait_for

T = TypeVar("T")
NOBODY = "a worker for queue 'nobody' (none connected)"
RETRY = RetryPolicy(max_attempts=3, initial_backoff=0.0, jitter=0.0)
RUNNING = TaskState.RUNNING


async def until(look: Callable[[], Awaitable[T]], expected: T, within: float = 10.0) -> None:
    """Look again (a call to the daemon) until it sees `expected`; fail after `within` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while (seen := await look()) != expected:
        assert loop.time() < deadline, f"still {seen!r}, not {expected!r}"
        await asyncio.sleep(0.02)


async def waiting(daemon: DaemonProcess, port: str) -> dict[str, float]:
    """The gauge's samples by their `workers` label, scraped from the daemon's /metrics."""

    def fetch() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            return response.read().decode()

    families = text_string_to_metric_families(await asyncio.to_thread(fetch))
    return {
        sample.labels["workers"]: sample.value
        for family in families
        if family.name == "dukat_tasks_waiting_for_worker"
        for sample in family.samples
    }


async def statuses(client: Client, job_id: str) -> dict[str, tuple[TaskState, str, str]]:
    job = await client.get_job(job_id)
    return {t.id: (t.state, t.waiting_for, t.waiting_for_queue) for t in job.tasks}


async def test_a_task_on_a_queue_nobody_serves_says_so_until_a_worker_comes(
    daemons: Callable[..., DaemonProcess],
) -> None:
    daemon = await daemons("--metrics-listen", "127.0.0.1:0").serving()
    await wait_for(lambda: "metrics on" in daemon.log(), within=10)
    port = re.findall(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", daemon.log())[0]
    gate = asyncio.Event()

    async def held(task: DispatchTask) -> bytes:
        await gate.wait()
        return b"held"

    async def quick(task: DispatchTask) -> bytes:
        return b"done"

    async with dukat.connect(daemon.address) as client:
        spec = JobSpec(
            tasks=tuple(
                TaskSpec(task_id, DispatchAction("nobody", b""), retry=RETRY)
                for task_id in ("a", "b")
            )
        )
        handle = await client.submit(spec)
        events: list[Event] = []

        async def follow() -> None:
            async for event in handle.events():
                events.append(event)

        following = asyncio.create_task(follow())

        # Nobody serves the queue: each task says so, in GetJob, in an event and in metrics.
        told = {"a": (TaskState.READY, NOBODY, "nobody"), "b": (TaskState.READY, NOBODY, "nobody")}
        assert await statuses(client, handle.job_id) == told
        await wait_for(
            lambda: {e.task_id for e in events if isinstance(e, TaskWaiting)} == {"a", "b"}
        )
        await until(lambda: waiting(daemon, port), {"none": 2.0, "busy": 0.0})

        # A worker with room for one: one runs, the other waits for a busy worker, which will
        # come back to it: nothing to say of it.
        async with client.worker("nobody", held, concurrency=1) as worker:
            await worker.connected.wait()
            await wait_for(lambda: any(getattr(e, "state", None) is RUNNING for e in events))
            now = await statuses(client, handle.job_id)
            assert sorted(state.value for state, _, _ in now.values()) == ["ready", "running"]
            assert {said for _, said, _ in now.values()} == {""}
            await until(lambda: waiting(daemon, port), {"none": 0.0, "busy": 1.0})
        # The worker left holding an attempt: it is retried, and both wait on nobody again.
        await until(lambda: statuses(client, handle.job_id), told)
        await until(lambda: waiting(daemon, port), {"none": 2.0, "busy": 0.0})

        async with client.worker("nobody", quick, concurrency=2):
            job = await asyncio.wait_for(handle.wait(), 20)
        await asyncio.wait_for(following, 10)

    assert job.state is JobState.SUCCEEDED
    assert all(task.waiting_for == "" for task in job.tasks)
    said = [(e.task_id, e.waiting_for, e.queue) for e in events if isinstance(e, TaskWaiting)]
    # Once per task, though "a" or "b" waited on nobody twice.
    assert sorted(said) == [("a", NOBODY, "nobody"), ("b", NOBODY, "nobody")]
    assert max(e.attempt for e in events if isinstance(e, TaskStateChanged)) == 2  # a retry


async def test_the_event_is_journaled_and_a_restarted_daemon_says_it_again(
    daemons: Callable[..., DaemonProcess], short_tmp: Path
) -> None:
    state = short_tmp / "state"
    daemon = await daemons(state_dir=state).serving()
    async with dukat.connect(daemon.address) as client:
        spec = JobSpec(tasks=(TaskSpec("a", DispatchAction("nobody", b"")),))
        handle = await client.submit(spec)
        before = [e async for e in _until_waiting(handle.events())]
    daemon.signal(signal.SIGTERM)
    assert await daemon.exited() == 0
    again = await daemons(state_dir=state).serving()
    async with dukat.connect(again.address) as client:
        handle = client.job(handle.job_id)
        after = [e async for e in _until_waiting(handle.events(), count=2)]
        assert (await statuses(client, handle.job_id))["a"][1] == NOBODY
    assert [e.sequence for e in after] == list(range(1, len(after) + 1))  # no gap, none twice
    assert after[: len(before)] == before  # what was said before the restart, kept
    assert [e.task_id for e in after if isinstance(e, TaskWaiting)] == ["a", "a"]


async def _until_waiting(events: AsyncIterator[Event], count: int = 1) -> AsyncIterator[Event]:
    """The events up to the `count`-th TaskWaiting."""
    async with contextlib.aclosing(events):
        async for event in events:
            yield event
            if isinstance(event, TaskWaiting):
                count -= 1
                if not count:
                    return
