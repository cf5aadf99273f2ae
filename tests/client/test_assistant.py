"""End to end through a real daemon's Work: client.worker and the AsyncAssistant's remote mode.

Needs the daemon's side of Work (dukatd.work_hub); skipped until it is in the tree.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import dukat
from dukat.actions import DispatchAction
from dukat.client import Client, DispatchTask
from dukat.client._assistant import _RemoteContext
from dukat.core import CircuitBreakerConfig, TaskContext, current_task, report_progress
from dukat.core.async_assistant import get_async_assistant
from dukat.core.scheduler import Scheduler
from dukat.core.spec import JobSpec, TaskSpec
from dukat.core.states import JobState, TaskState, TriggerRule
from dukat.errors import DaemonNotFoundError, TaskFailedRemotely, TaskTimeoutError
from tests.client.daemon import Daemon, running_daemon
from tests.helpers import wait_for

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

work_hub = pytest.importorskip("dukatd.work_hub", reason="the daemon does not serve Work yet")


@pytest.fixture
async def daemon() -> AsyncIterator[Daemon]:
    scheduler = Scheduler(max_concurrency=32)
    hub = work_hub.WorkerHub(scheduler)
    async with running_daemon(scheduler=scheduler, work_hub=hub) as d:
        yield d


@pytest.fixture
async def client(daemon: Daemon) -> AsyncIterator[Client]:
    async with dukat.connect(daemon.address) as c:
        yield c


async def test_a_worker_serves_a_dag_and_sees_upstream_results(client: Client) -> None:
    async def handler(task: DispatchTask) -> bytes:
        task.report_progress(0.5, "working")
        return task.payload + b"".join(u.payload for u in task.upstream_results)

    spec = JobSpec(
        tasks=(
            TaskSpec("a", DispatchAction("q", b"A")),
            TaskSpec("b", DispatchAction("q", b"B"), dependencies=("a",)),
        )
    )
    async with client.worker("q", handler, 4):
        handle = await client.submit(spec)
        snapshot = await asyncio.wait_for(handle.wait(), 10)
    assert snapshot.state is JobState.SUCCEEDED
    events = [e async for e in handle.events()]
    assert any(getattr(e, "message", "") == "working" for e in events)


async def test_the_remote_assistant_gives_what_embedded_mode_gives(daemon: Daemon) -> None:
    tries = 0

    async def flaky() -> dict:
        nonlocal tries
        tries += 1
        if tries < 2:
            raise ConnectionError("reset")
        report_progress(1.0, "done")
        return {"rows": 3}

    async def broken() -> None:
        raise ValueError("bad row")

    async def slow() -> None:
        await asyncio.sleep(5)

    def plain(x: int) -> int:
        return x * 2

    tasks = [
        {"task_id": "flaky", "func": flaky, "retry": {"max_attempts": 3, "initial_backoff": 0}},
        {"task_id": "plain", "func": plain, "args": (21,), "dependencies": ["flaky"]},
        {"task_id": "broken", "func": broken, "retry": {"max_attempts": 3, "retry_on": KeyError}},
        {"task_id": "after", "func": plain, "args": (1,), "dependencies": ["broken"]},
        {"task_id": "slow", "func": slow, "timeout": 0.2},
    ]
    async with await get_async_assistant(model_name="m", address=daemon.address) as remote:
        results = await asyncio.wait_for(remote.execute_tasks_in_parallel(tasks), 20)
    flaky_result = results["flaky"]
    assert (flaky_result.state, flaky_result.result, flaky_result.attempts) == (
        TaskState.SUCCEEDED,
        {"rows": 3},
        2,
    )
    assert results["plain"].result == 42
    assert results["broken"].state is TaskState.FAILED
    assert isinstance(results["broken"].error, ValueError)  # the exception itself
    assert results["broken"].attempts == 1  # retry_on KeyError: a ValueError is not retried
    assert results["after"].state is TaskState.SKIPPED
    assert results["slow"].state is TaskState.FAILED
    assert isinstance(results["slow"].error, TaskTimeoutError) or "time" in results["slow"].message


def test_the_remote_context_has_everything_the_embedded_one_has() -> None:
    # report_waiting is for a runner's admission (the daemon's), never for a task's callable.
    public = {name for name in dir(TaskContext) if not name.startswith("_")} - {"report_waiting"}
    assert public <= set(dir(_RemoteContext)), public - set(dir(_RemoteContext))


def seen_by(task_id: str, seen: dict[str, dict[str, Any]]) -> Callable[..., Any]:
    """A task that notes what current_task() tells it, returns `task_id`'s upper case, and
    fails if its id says so."""

    async def run(*args: Any) -> str:
        context = current_task()
        context.report_progress(0.5, "half")
        seen[task_id] = {
            "ids": (type(context.job_id), context.task_id, context.attempt),
            "action": (context.action.func is run, context.action.args),
            "labels": dict(context.labels),
            "timeout": context.timeout,
            "upstream_results": dict(context.upstream_results),
            "upstream_outcomes": [
                (o.task_id, o.state, o.result, type(o.error), o.attempts, o.message)
                for o in context.upstream_outcomes
            ],
        }
        if task_id.startswith("broken"):
            raise LookupError(f"{task_id} is broken")
        return task_id.upper()

    return run


def parity_tasks(seen: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"task_id": "search", "func": seen_by("search", seen), "args": (1,)},
        {"task_id": "broken", "func": seen_by("broken", seen)},
        {
            "task_id": "summarise",
            "func": seen_by("summarise", seen),
            "dependencies": ["search"],
            "labels": {"step": "2"},
            "timeout": 30,
        },
        {
            "task_id": "cleanup",
            "func": seen_by("cleanup", seen),
            "dependencies": ["summarise", "broken"],
            "trigger_rule": TriggerRule.ALL_DONE,
        },
    ]


async def test_current_task_gives_the_same_remote_as_embedded(daemon: Daemon) -> None:
    embedded_seen: dict[str, dict[str, Any]] = {}
    remote_seen: dict[str, dict[str, Any]] = {}
    async with await get_async_assistant(model_name="parity") as embedded:
        expected = await embedded.execute_tasks_in_parallel(parity_tasks(embedded_seen))
    async with await get_async_assistant(model_name="parity", address=daemon.address) as remote:
        got = await asyncio.wait_for(
            remote.execute_tasks_in_parallel(parity_tasks(remote_seen)), 20
        )
    assert remote_seen["summarise"]["upstream_results"] == {"search": "SEARCH"}
    assert remote_seen["cleanup"]["upstream_outcomes"] == [
        ("summarise", TaskState.SUCCEEDED, "SUMMARISE", type(None), 1, ""),
        ("broken", TaskState.FAILED, None, LookupError, 1, "LookupError: broken is broken"),
    ]
    assert remote_seen == embedded_seen
    assert {t: (r.state, r.result, r.attempts) for t, r in got.items()} == {
        t: (r.state, r.result, r.attempts) for t, r in expected.items()
    }
    assert isinstance(got["broken"].error, LookupError)  # the exception raised here


async def test_a_task_the_daemon_failed_has_an_error_with_the_daemons_type(
    daemon: Daemon,
) -> None:
    # An open breaker fails the attempt at the daemon: the callable never runs here.
    daemon.scheduler.breakers.configure("shut", CircuitBreakerConfig(failure_threshold=1))
    daemon.scheduler.breakers.get("shut").failure(RuntimeError("down"))

    async def never() -> None:
        raise AssertionError("the breaker is open")

    tasks = [{"task_id": "guarded", "func": never, "circuit_breaker": "shut"}]
    async with await get_async_assistant(address=daemon.address) as remote:
        results = await asyncio.wait_for(remote.execute_tasks_in_parallel(tasks), 20)
    error = results["guarded"].error
    assert isinstance(error, TaskFailedRemotely) and error.type == "CircuitBreakerError"
    assert "circuit breaker 'shut' is open" in str(error)
    assert results["guarded"].message.startswith("CircuitBreakerError: circuit breaker")


async def test_the_remote_assistant_sends_max_interruptions(daemon: Daemon) -> None:
    async def quick() -> int:
        return 1

    tasks = [
        {"task_id": "once", "func": quick, "max_interruptions": 0},
        {"task_id": "default", "func": quick},
    ]
    async with await get_async_assistant(model_name="once", address=daemon.address) as remote:
        results = await asyncio.wait_for(remote.execute_tasks_in_parallel(tasks), 20)
    assert [(r.state, r.interruptions) for r in results.values()] == [(TaskState.SUCCEEDED, 0)] * 2
    [job] = daemon.scheduler.jobs(labels={"model": "once"})
    specs = {t: daemon.scheduler.task_spec(job.job_id, t) for t in ("once", "default")}
    assert {t: spec.max_interruptions for t, spec in specs.items()} == {"once": 0, "default": 3}


async def test_cancelling_the_caller_cancels_its_job_on_the_daemon(daemon: Daemon) -> None:
    started = asyncio.Event()

    async def stuck() -> None:
        started.set()
        await asyncio.Event().wait()

    tasks = [
        {"task_id": "stuck", "func": stuck},
        {"task_id": "after", "func": stuck, "dependencies": ["stuck"]},
    ]
    async with await get_async_assistant(model_name="cancelled", address=daemon.address) as remote:
        running = asyncio.create_task(remote.execute_tasks_in_parallel(tasks))
        await asyncio.wait_for(started.wait(), 10)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
    async with dukat.connect(daemon.address) as client:
        (job,) = [job async for job in client.jobs(labels={"model": "cancelled"})]
        snapshot = await asyncio.wait_for(client.job(job.job_id).wait(), 10)
    assert snapshot.state is JobState.CANCELLED
    assert {task.id: task.state for task in snapshot.tasks} == {
        "stuck": TaskState.CANCELLED,
        "after": TaskState.CANCELLED,
    }


async def test_the_remote_assistant_says_so_when_retention_drops_its_job_as_it_ends() -> None:
    # The job's tasks, which its results are read from, go with the job: no empty answer.
    scheduler = Scheduler(max_concurrency=4, retain_finished_jobs=0)
    gate = asyncio.Event()

    async def gated() -> str:
        await gate.wait()
        return "done"

    async with (
        running_daemon(scheduler=scheduler, work_hub=work_hub.WorkerHub(scheduler)) as daemon,
        await get_async_assistant(model_name="dropped", address=daemon.address) as remote,
    ):
        running = asyncio.create_task(
            remote.execute_tasks_in_parallel([{"task_id": "a", "func": gated}])
        )
        await wait_for(lambda: daemon.service.watchers == 1)  # waiting for the job's end
        gate.set()
        with pytest.raises(DaemonNotFoundError, match="--retain-finished-jobs"):
            await asyncio.wait_for(running, 10)


# Cancelled at 0 to 3.75 ms: some of these land after the daemon made the job but before
# its answer came back (without a request id, a second job was then made and left behind).
@pytest.mark.parametrize("delay_ms", [quarter / 4 for quarter in range(16)])
async def test_a_caller_cancelled_during_its_submit_leaves_one_job_cancelled(
    daemon: Daemon, delay_ms: float
) -> None:
    async def stuck() -> None:
        await asyncio.Event().wait()

    async with await get_async_assistant(model_name="early", address=daemon.address) as remote:
        running = asyncio.create_task(
            remote.execute_tasks_in_parallel([{"task_id": "stuck", "func": stuck}])
        )
        await asyncio.sleep(delay_ms / 1000)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
    async with dukat.connect(daemon.address) as client:
        jobs = [job async for job in client.jobs(labels={"model": "early"})]
        assert len(jobs) == 1  # made by the Submit or by asking again, never by both
        snapshot = await asyncio.wait_for(client.job(jobs[0].job_id).wait(), 10)
    assert snapshot.state is JobState.CANCELLED


async def test_the_example_runs_its_assistant_section_through_the_daemon(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.spec_from_file_location("tour", EXAMPLES / "async_processing.py")
    assert spec is not None and spec.loader is not None
    tour = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tour)
    monkeypatch.setenv("DUKAT_ADDRESS", daemon.address)
    await asyncio.wait_for(tour.assistant(), 20)
    out = capsys.readouterr().out
    assert f"through dukatd at {daemon.address}" in out
    assert "plan           succeeded  attempts=1  ['search', 'summarise']" in out
    assert "act            succeeded  attempts=1  done" in out
