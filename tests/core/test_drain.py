"""Scheduler.drain: nothing new starts, running attempts get a grace, then are cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from dukat.core import (
    CallableAction,
    JobSpec,
    JobState,
    RetryPolicy,
    TaskSpec,
    TaskState,
)
from dukat.errors import ValidationError
from tests.core.test_admission import GatedRunner, Remote
from tests.helpers import Probe, finished, settle, states, wait_for

S = TaskState


def spec(task_id: str, func: Callable[..., Any], *deps: str, **options: Any) -> TaskSpec:
    return TaskSpec(id=task_id, action=CallableAction(func), dependencies=deps, **options)


async def noop() -> None:
    return None


async def test_running_attempts_finish_within_the_grace_and_ready_ones_wait(make):
    s = make(max_concurrency=1)
    probe = Probe()
    j = s.submit(JobSpec(tasks=(spec("a", probe.task("a")), spec("b", noop, "a"), spec("c", noop))))
    await wait_for(lambda: probe.started == ["a"])
    draining = asyncio.create_task(s.drain(10.0))
    await settle()
    assert not draining.done()
    probe.gate.set()  # a ends within the grace; b becomes ready, and neither b nor c starts
    assert await asyncio.wait_for(draining, 5) == 0
    await settle()
    assert states(s, j) == {"a": S.SUCCEEDED, "b": S.READY, "c": S.READY}
    assert s.running == 0
    await s.close()
    assert await finished(s, j) is JobState.CANCELLED


async def test_attempts_still_running_when_the_grace_is_over_are_cancelled(make, clock):
    s = make()
    probe = Probe()
    j = s.submit(JobSpec(tasks=(spec("slow", probe.task("slow")), spec("after", noop, "slow"))))
    await wait_for(lambda: probe.started == ["slow"])
    draining = asyncio.create_task(s.drain(5.0))
    await clock.advance(4.9)
    assert not draining.done() and states(s, j)["slow"] is S.RUNNING
    await clock.advance(0.1)
    assert await asyncio.wait_for(draining, 5) == 1
    await wait_for(lambda: states(s, j)["slow"] is S.CANCELLED)
    assert probe.cancelled == ["slow"]
    assert s.results(j)["slow"].message == "cancelled: the drain's grace ran out"


async def test_a_drain_with_nothing_running_returns_at_once(make):
    s = make()
    assert await asyncio.wait_for(s.drain(60.0), 5) == 0
    j = s.submit(JobSpec(tasks=(spec("t", noop),)))  # still taken, but it waits
    await settle()
    assert states(s, j) == {"t": S.READY}
    await s.close()
    assert await finished(s, j) is JobState.CANCELLED


async def test_nothing_is_admitted_or_retried_into_a_slot_while_draining(make, clock):
    gated = GatedRunner()
    s = make(runners={Remote: gated})
    probe = Probe()

    async def fails() -> None:
        raise ConnectionError("try again")

    retry = RetryPolicy(max_attempts=2, initial_backoff=1.0, jitter=0.0)
    j = s.submit(
        JobSpec(
            tasks=(
                TaskSpec(id="remote", action=Remote()),
                spec("flaky", fails, retry=retry),
                spec("slow", probe.task("slow")),
            )
        )
    )
    await wait_for(lambda: "remote" in gated.waiting and probe.started == ["slow"])
    await wait_for(lambda: states(s, j)["flaky"] is S.RETRYING)
    draining = asyncio.create_task(s.drain(30.0))
    gated.open("remote")
    await clock.advance(1.0)  # flaky's backoff is over: READY, and it stays so
    await settle()
    assert states(s, j) == {"remote": S.READY, "flaky": S.READY, "slow": S.RUNNING}
    assert gated.ran == []
    probe.gate.set()
    assert await asyncio.wait_for(draining, 5) == 0


@pytest.mark.parametrize("grace", [-1.0, float("nan"), float("inf"), "5"])
async def test_the_grace_must_be_a_finite_number_of_seconds(make, grace):
    with pytest.raises(ValidationError, match="grace"):
        await make().drain(grace)
