"""Submit, events, wait, cancel, get_job and jobs() against a real daemon on a unix socket."""

from __future__ import annotations

import asyncio

import pytest

import dukat
from dukat.actions import DispatchAction, DispatchResult, ExecAction, ExecResult
from dukat.client import Client, JobHandle, Reconnect
from dukat.core.events import JobStateChanged, TaskStateChanged
from dukat.core.results import JobSnapshot, TaskResult
from dukat.core.scheduler import Scheduler
from dukat.core.spec import JobSpec, TaskSpec
from dukat.core.states import JobState, TaskState
from dukatd.exec_runner import ExecRunner
from tests.client.daemon import Daemon, running_daemon
from tests.helpers import wait_for


def task(task_id: str, payload: bytes = b"ok", **fields: object) -> TaskSpec:
    return TaskSpec(task_id, DispatchAction("q", payload), **fields)  # type: ignore[arg-type]


def job(*tasks: TaskSpec, **fields: object) -> JobSpec:
    return JobSpec(tasks=tasks, **fields)  # type: ignore[arg-type]


async def test_a_submitted_job_runs_and_wait_gives_its_snapshot(client: Client) -> None:
    handle = await client.submit(job(task("a"), task("b", dependencies=("a",))))
    assert isinstance(handle, JobHandle)
    snapshot = await asyncio.wait_for(handle.wait(), 10)
    assert isinstance(snapshot, JobSnapshot)
    assert snapshot.state is JobState.SUCCEEDED
    assert [(t.id, t.state) for t in snapshot.tasks] == [
        ("a", TaskState.SUCCEEDED),
        ("b", TaskState.SUCCEEDED),
    ]
    assert await client.get_job(handle.job_id) == snapshot
    # wait() on a finished job answers at once.
    assert (await handle.wait()).state is JobState.SUCCEEDED


async def test_wait_follows_a_live_job_from_submit_and_from_an_id(
    client: Client, daemon: Daemon
) -> None:
    handle = await client.submit(job(task("wait", b"gate"), task("then", dependencies=("wait",))))
    waiters = [asyncio.create_task(h.wait()) for h in (handle, client.job(handle.job_id))]
    await wait_for(lambda: daemon.service.watchers == 2)  # both watching the job's events
    assert not any(w.done() for w in waiters)
    daemon.runner.gate.set()
    first, second = await asyncio.wait_for(asyncio.gather(*waiters), 10)
    assert first == second and first.state is JobState.SUCCEEDED
    assert [t.state for t in first.tasks] == [TaskState.SUCCEEDED] * 2


async def test_events_are_engine_events_in_sequence_ending_with_the_terminal_one(
    client: Client,
) -> None:
    handle = await client.submit(job(task("a"), task("b", b"fail")))
    events = [event async for event in handle.events()]
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert all(e.job_id == handle.job_id for e in events)
    assert isinstance(events[-1], JobStateChanged) and events[-1].state is JobState.FAILED
    failed = [e for e in events if isinstance(e, TaskStateChanged) and e.state is TaskState.FAILED]
    assert [e.task_id for e in failed] == ["b"] and "asked to fail" in failed[0].message
    tail = [event async for event in handle.events(after_sequence=3)]
    assert tail == events[3:]


async def test_events_follow_a_live_job_and_stop_when_the_consumer_stops(
    client: Client, daemon: Daemon
) -> None:
    handle = await client.submit(job(task("wait", b"gate"), task("then", dependencies=("wait",))))
    seen: list[object] = []

    async def consume() -> None:
        async for event in handle.events():
            seen.append(event)

    consumer = asyncio.create_task(consume())
    await wait_for(
        lambda: any(isinstance(e, TaskStateChanged) and e.state is TaskState.RUNNING for e in seen)
    )
    assert not consumer.done()
    daemon.runner.gate.set()
    await asyncio.wait_for(consumer, 10)
    assert isinstance(seen[-1], JobStateChanged) and seen[-1].state is JobState.SUCCEEDED

    # Breaking out of the loop ends the watch on the daemon as well.
    events = handle.events()
    async for _ in events:
        break
    await events.aclose()


async def test_a_repeated_request_id_gives_the_same_job(client: Client) -> None:
    first = await client.submit(job(task("a")), request_id="r-1")
    again = await client.submit(job(task("a")), request_id="r-1")
    other = await client.submit(job(task("a")))
    assert first == again and first != other


async def test_cancel_a_task_and_its_downstream_then_the_job(
    client: Client, daemon: Daemon
) -> None:
    handle = await client.submit(
        job(task("slow", b"gate"), task("after", dependencies=("slow",)), task("other", b"gate"))
    )
    await wait_for(
        lambda: daemon.scheduler.get_job(handle.job_id).task("slow").state is TaskState.RUNNING
    )
    assert await handle.cancel("slow") == 2
    assert await handle.cancel("slow") == 0  # idempotent
    snapshot = await handle.get()
    assert snapshot.task("slow").state is TaskState.CANCELLED
    assert snapshot.task("after").state is TaskState.CANCELLED
    assert snapshot.task("other").state is not TaskState.CANCELLED
    assert await handle.cancel() == 1
    assert (await handle.wait()).state is JobState.CANCELLED


async def test_jobs_lists_every_page_newest_first_filtered_by_state_and_labels(
    client: Client,
) -> None:
    handles = []
    for index in range(7):
        colour = "red" if index % 2 else "blue"
        handles.append(await client.submit(job(task("a"), labels={"colour": colour})))
    for handle in handles:
        await handle.wait()
    failed = await client.submit(job(task("a", b"fail"), labels={"colour": "red"}))
    await failed.wait()

    listed = [j async for j in client.jobs(page_size=2)]
    assert [j.job_id for j in listed] == [h.job_id for h in [*handles, failed]][::-1]
    assert all(j.tasks == () for j in listed)  # listings come without tasks
    red = [j.job_id async for j in client.jobs(labels={"colour": "red"}, page_size=2)]
    assert red == [failed.job_id, *reversed([h.job_id for h in handles[1::2]])]
    only_failed = [j.job_id async for j in client.jobs(JobState.FAILED)]
    assert only_failed == [failed.job_id]
    both = [j.job_id async for j in client.jobs([JobState.FAILED, JobState.SUCCEEDED])]
    assert len(both) == 8


async def test_a_listed_job_counts_its_tasks_by_state(client: Client, daemon: Daemon) -> None:
    """A listing carries no tasks, yet says how they stand (Job.task_counts on the wire)."""
    handle = await client.submit(
        job(
            task("ok"),
            task("bad", b"fail"),
            task("after", dependencies=("bad",)),
            task("w", b"gate"),
        )
    )
    await wait_for(lambda: daemon.scheduler.get_job(handle.job_id).count(TaskState.SKIPPED) == 1)
    (listed,) = [j async for j in client.jobs()]
    assert listed.tasks == ()
    assert listed.total == 4
    assert (listed.count(TaskState.SUCCEEDED), listed.count(TaskState.FAILED)) == (1, 1)
    assert (listed.count(TaskState.SKIPPED), listed.count(TaskState.RUNNING)) == (1, 1)
    daemon.runner.gate.set()
    await handle.wait()
    (listed,) = [j async for j in client.jobs()]
    assert listed.task_counts == (await handle.get()).task_counts
    assert listed.count(TaskState.SUCCEEDED) == 2


async def test_client_job_makes_a_handle_without_a_call(client: Client) -> None:
    handle = client.job("no-such-job")
    assert handle.job_id == "no-such-job" and "no-such-job" in repr(handle)
    with pytest.raises(ValueError, match="needs the id"):
        client.job("")


async def test_events_resume_after_the_daemon_restarts_without_duplicates_or_gaps(
    daemon: Daemon,
) -> None:
    reconnect = Reconnect(initial_backoff=0.01, max_backoff=0.1, give_up_after=10)
    async with dukat.connect(daemon.address, reconnect=reconnect) as client:
        handle = await client.submit(
            job(task("wait", b"gate"), *(task(f"t{i}", dependencies=("wait",)) for i in range(5)))
        )
        seen: list[object] = []

        async def consume() -> None:
            async for event in handle.events():
                seen.append(event)

        consumer = asyncio.create_task(consume())
        await wait_for(lambda: len(seen) >= 3)
        await daemon.stop()
        # While nobody can watch, the job moves on: these events must come after the restart.
        daemon.runner.gate.set()
        await daemon.scheduler.wait(handle.job_id)
        await daemon.restart()
        await asyncio.wait_for(consumer, 10)

    last = daemon.scheduler.get_job(handle.job_id).last_sequence
    assert [e.sequence for e in seen] == list(range(1, last + 1))
    assert isinstance(seen[-1], JobStateChanged) and seen[-1].state is JobState.SUCCEEDED


class ResultRunner:
    """Dispatch tasks in the daemon that succeed with a DispatchResult, as a worker's do."""

    async def run(self, context: object) -> DispatchResult:
        payload = context.action.payload  # type: ignore[attr-defined]
        if payload == b"fail":
            raise RuntimeError("asked to fail")
        return DispatchResult(payload.upper(), "text/plain")


@pytest.mark.parametrize("budget", [16 * 1024 * 1024, 30], ids=["one-call", "over-budget"])
async def test_results_gives_dispatch_and_exec_results_like_the_engine(budget: int) -> None:
    # 30 bytes: one result per GetJob, so results() fetches the rest by task id.
    scheduler = Scheduler(runners={DispatchAction: ResultRunner(), ExecAction: ExecRunner()})
    async with (
        running_daemon(scheduler=scheduler, allow_exec=True, result_budget=budget) as daemon,
        dukat.connect(daemon.address) as client,
    ):
        echo = ExecAction(("sh", "-c", "echo out; echo err >&2"))
        handle = await client.submit(
            job(
                task("d", b"abc"),
                task("d2", b"xyz"),
                TaskSpec("x", echo),
                task("f", b"fail"),
                task("s", dependencies=("f",)),
            )
        )
        await asyncio.wait_for(handle.wait(), 10)
        results = await handle.results()
    assert all(isinstance(r, TaskResult) for r in results.values())
    assert results["d"].result == DispatchResult(b"ABC", "text/plain")
    assert results["d2"].result == DispatchResult(b"XYZ", "text/plain")
    assert results["x"].result == ExecResult(0, b"out\n", b"err\n")
    assert results["d"].succeeded and results["d"].attempts == 1 and results["d"].duration >= 0
    assert results["f"].state is TaskState.FAILED and results["f"].result is None
    assert "asked to fail" in results["f"].message
    assert results["s"].state is TaskState.SKIPPED and "upstream 'f'" in results["s"].message
