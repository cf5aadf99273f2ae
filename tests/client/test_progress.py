"""The client's trackers and status calls against a real daemon on a unix socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

import dukat
from dukat.actions import DispatchAction
from dukat.client import Client, DispatchTask
from dukat.core import CircuitBreakerState, JobProgress, JobSpec, JobState, Scheduler, TaskSpec
from dukat.core.async_assistant import get_async_assistant
from dukat.core.states import TaskState
from dukatd.work_hub import WorkerHub
from tests.client.daemon import Daemon, running_daemon
from tests.helpers import wait_for


@pytest.fixture
async def daemon() -> AsyncIterator[Daemon]:
    scheduler = Scheduler(max_concurrency=8, event_log_length=1_000)
    async with running_daemon(scheduler=scheduler, work_hub=WorkerHub(scheduler)) as d:
        yield d


@pytest.fixture
async def client(daemon: Daemon) -> AsyncIterator[Client]:
    async with dukat.connect(daemon.address) as c:
        yield c


async def test_a_handle_tracker_follows_the_job_through_the_daemon(client: Client) -> None:
    gate = asyncio.Event()

    async def handler(task: DispatchTask) -> bytes:
        task.report_progress(0.5, f"half of {task.task_id}")
        await gate.wait()
        return b""

    tasks = tuple(TaskSpec(name, DispatchAction("q")) for name in ("a", "b"))
    after = TaskSpec("c", DispatchAction("q"), dependencies=("a", "b"))
    async with client.worker("q", handler, 2):
        handle = await client.submit(JobSpec(tasks=(*tasks, after)))
        async with handle.track() as tracker:
            seen: list[JobProgress] = []

            async def read() -> None:
                async for progress in tracker:
                    seen.append(progress)
                    if len(progress.running) == 2 and progress.fraction == pytest.approx(1 / 3):
                        gate.set()

            await asyncio.wait_for(read(), 10)
    final = seen[-1]
    assert final.state is JobState.SUCCEEDED and final.job_id == handle.job_id
    assert (final.total, final.count(TaskState.SUCCEEDED), final.running) == (3, 3, ())
    assert any([t.message for t in p.running] == ["half of a", "half of b"] for p in seen), (
        "the running tasks' reports came through"
    )


async def test_a_tracker_of_a_finished_job_on_the_daemon_gives_its_end(client: Client) -> None:
    async with client.worker("q", lambda task: asyncio.sleep(0, b"")):
        handle = await client.submit(JobSpec(tasks=(TaskSpec("a", DispatchAction("q")),)))
        await handle.wait()
    final = await asyncio.wait_for(handle.track().wait(), 10)
    assert final.state is JobState.SUCCEEDED and final.done == final.total == 1


async def test_a_remote_assistant_tracker_follows_its_next_batch(daemon: Daemon) -> None:
    async def work() -> str:
        await asyncio.sleep(0)
        return "ok"

    async with await get_async_assistant(address=daemon.address) as assistant:
        tracker = assistant.track()
        results = await assistant.execute_tasks_in_parallel(
            [{"task_id": "a", "func": work}, {"task_id": "b", "func": work, "dependencies": ["a"]}]
        )
        final = await asyncio.wait_for(tracker.wait(), 10)
    assert all(r.succeeded for r in results.values())
    assert final.state is JobState.SUCCEEDED and final.count(TaskState.SUCCEEDED) == 2


async def test_status_and_breakers_say_how_the_daemon_stands(
    client: Client, daemon: Daemon
) -> None:
    async def handler(task: DispatchTask) -> bytes:
        return b""

    daemon.scheduler.breakers.get("api").failure(RuntimeError("down"))
    async with client.worker(["q", "r"], handler, 3):
        await wait_for(lambda: daemon.service.work_hub.sessions)  # the worker said hello
        status = await asyncio.wait_for(client.status(), 10)
    assert status.version == dukat.__version__
    assert status.listen == (daemon.address,) and status.max_concurrency == 8
    assert {r.name for r in status.resources} >= {"cpu", "memory"}
    assert [(q.name, q.workers, q.slots) for q in status.queues] == [("q", 1, 3), ("r", 1, 3)]
    (api,) = await client.breakers()
    assert (api.name, api.state, api.consecutive_failures) == ("api", CircuitBreakerState.CLOSED, 1)
