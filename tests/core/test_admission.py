"""Runners that admit their tasks: a task waiting for admission is READY and holds no slot."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from dukat.core import (
    CallableAction,
    JobSpec,
    JobState,
    ManualClock,
    ResourcePool,
    ResourceRequirement,
    ResourceType,
    RetryPolicy,
    Scheduler,
    TaskContext,
    TaskSpec,
    TaskState,
)
from tests.helpers import Probe, finished, settle, wait_for

S = TaskState


class Remote:
    """An action whose attempts must wait for room elsewhere (a remote worker, say)."""


class GatedRunner:
    """Admits a task only when the test opens a place for it; runs it in no time."""

    def __init__(self, *, admit_now: bool = False) -> None:
        self.admit_now = admit_now
        self.waiting: dict[str, asyncio.Future[None]] = {}
        self.asked: list[tuple[str, int]] = []
        self.ran: list[tuple[str, int]] = []

    def admit(self, context: TaskContext) -> asyncio.Future[None] | None:
        self.asked.append((context.task_id, context.attempt))
        if self.admit_now:
            return None
        future = self.waiting[context.task_id] = asyncio.get_running_loop().create_future()
        return future

    def open(self, task_id: str) -> None:
        self.waiting.pop(task_id).set_result(None)

    async def run(self, context: TaskContext) -> str:
        self.ran.append((context.task_id, context.attempt))
        await asyncio.sleep(0)
        return context.task_id


def remote(task_id: str, *deps: str, **options: Any) -> TaskSpec:
    return TaskSpec(id=task_id, action=Remote(), dependencies=deps, **options)


def local(task_id: str, func: Callable[..., Any], **options: Any) -> TaskSpec:
    return TaskSpec(id=task_id, action=CallableAction(func), **options)


def state(s: Scheduler, job_id: str, task_id: str) -> TaskState:
    return s.get_job(job_id).task(task_id).state


@pytest.fixture
def gated() -> GatedRunner:
    return GatedRunner()


@pytest.fixture
async def make(clock: ManualClock, gated: GatedRunner) -> AsyncIterator[Callable[..., Scheduler]]:
    made: list[Scheduler] = []

    def factory(**options: Any) -> Scheduler:
        options.setdefault("clock", clock)
        options.setdefault("runners", {Remote: gated})
        made.append(Scheduler(**options))
        return made[-1]

    yield factory
    for scheduler in made:
        await asyncio.wait_for(scheduler.close(), 10)


async def test_a_task_waiting_for_admission_holds_no_slot_and_its_timeout_waits(make, gated, clock):
    s = make(max_concurrency=1)
    probe = Probe()
    j = s.submit(JobSpec(tasks=(remote("r", timeout=5.0), local("l", probe.task("l")))))
    await wait_for(lambda: probe.started == ["l"])  # the one slot is free for others
    assert gated.asked == [("r", 1)]
    assert state(s, j, "r") is S.READY and s.running == 1
    await clock.advance(60)  # far past its timeout: it has not started, so nothing counts
    probe.gate.set()
    await wait_for(lambda: state(s, j, "l") is S.SUCCEEDED)
    await settle()
    assert state(s, j, "r") is S.READY and gated.ran == []

    gated.open("r")
    assert await finished(s, j) is JobState.SUCCEEDED
    assert gated.ran == [("r", 1)]
    assert s.results(j)["r"].result == "r"


async def test_the_timeout_counts_from_when_a_slot_runs_the_task(make, clock):
    class Stuck(GatedRunner):
        async def run(self, context: TaskContext) -> str:
            await asyncio.Event().wait()
            return "never"

    stuck = Stuck()
    s = make(runners={Remote: stuck})
    j = s.submit(JobSpec(tasks=(remote("r", timeout=5.0),)))
    await wait_for(lambda: "r" in stuck.waiting)
    await clock.advance(100)
    stuck.open("r")
    await wait_for(lambda: state(s, j, "r") is S.RUNNING)
    await clock.advance(4.9)
    assert state(s, j, "r") is S.RUNNING
    await clock.advance(0.1)
    assert await finished(s, j) is JobState.FAILED


async def test_cancelling_a_task_waiting_for_admission_cancels_its_future(make, gated):
    s = make(max_concurrency=1)
    j = s.submit(JobSpec(tasks=(remote("r"), remote("after", "r"))))
    await wait_for(lambda: "r" in gated.waiting)
    future = gated.waiting["r"]
    assert s.cancel(j) == 2
    assert await finished(s, j) is JobState.CANCELLED
    assert future.cancelled()
    assert state(s, j, "r") is S.CANCELLED and gated.ran == []


async def test_a_task_waiting_for_admission_counts_against_its_jobs_limit(make, gated):
    s = make(max_concurrency=4)
    j = s.submit(JobSpec(tasks=(remote("a"), remote("b")), max_concurrency=1))
    probe = Probe()
    other = s.submit(JobSpec(tasks=(local("x", probe.task("x")),)))
    await wait_for(lambda: probe.started == ["x"])
    await settle()
    assert gated.asked == [("a", 1)]  # b is not even picked while a waits
    gated.open("a")
    await wait_for(lambda: "b" in gated.waiting)
    gated.open("b")
    assert await finished(s, j) is JobState.SUCCEEDED
    probe.gate.set()
    assert await finished(s, other) is JobState.SUCCEEDED


async def test_admitted_now_runs_at_once(make):
    now = GatedRunner(admit_now=True)
    s = make(runners={Remote: now})
    j = s.submit(JobSpec(tasks=(remote("a"), remote("b", "a"))))
    assert await finished(s, j) is JobState.SUCCEEDED
    assert now.asked == now.ran == [("a", 1), ("b", 1)]


async def test_every_attempt_is_admitted_again(make, gated, clock):
    class FailsOnce(GatedRunner):
        async def run(self, context: TaskContext) -> str:
            self.ran.append((context.task_id, context.attempt))
            if context.attempt == 1:
                raise ConnectionError("the worker went away")
            return "ok"

    runner = FailsOnce()
    s = make(runners={Remote: runner})
    retry = RetryPolicy(max_attempts=2, initial_backoff=1.0, jitter=0.0)
    j = s.submit(JobSpec(tasks=(remote("r", retry=retry),)))
    await wait_for(lambda: "r" in runner.waiting)
    runner.open("r")
    await wait_for(lambda: state(s, j, "r") is S.RETRYING)
    await clock.advance(1.0)
    await wait_for(lambda: "r" in runner.waiting)
    assert runner.asked == [("r", 1), ("r", 2)]
    runner.open("r")
    assert await finished(s, j) is JobState.SUCCEEDED


async def test_a_task_waiting_for_admission_holds_no_resources(make, gated):
    pool = ResourcePool({"gpu": 1})
    need = (ResourceRequirement(ResourceType.CUSTOM, 1, name="gpu"),)
    s = make(resources=pool)
    probe = Probe()
    j = s.submit(
        JobSpec(tasks=(remote("r", resources=need), local("l", probe.task("l"), resources=need)))
    )
    await wait_for(lambda: probe.started == ["l"])  # r waits for admission, not on the gpu
    gated.open("r")
    await settle()
    assert state(s, j, "r") is S.READY  # admitted, now waiting for the gpu l holds
    probe.gate.set()
    assert await finished(s, j) is JobState.SUCCEEDED


async def test_an_admit_that_raises_fails_the_attempt(make):
    class Broken(GatedRunner):
        def admit(self, context: TaskContext) -> asyncio.Future[None] | None:
            raise RuntimeError("no admission today")

    s = make(runners={Remote: Broken()})
    j = s.submit(JobSpec(tasks=(remote("r"),)))
    assert await finished(s, j) is JobState.FAILED
    assert "no admission today" in s.results(j)["r"].message


async def test_cancelling_a_waiting_task_lets_its_job_run_its_next_one(make, gated):
    # Found by the properties: the job at its limit, the only worker idle, nothing to wake it.
    s = make(max_concurrency=1)
    probe = Probe()
    j = s.submit(JobSpec(tasks=(remote("r"), local("l", probe.task("l"))), max_concurrency=1))
    await wait_for(lambda: "r" in gated.waiting)
    await settle()
    s.cancel(j, ["r"])
    await wait_for(lambda: probe.started == ["l"])
    probe.gate.set()
    assert await finished(s, j) is JobState.CANCELLED
