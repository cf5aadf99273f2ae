"""The scheduler's bound on tasks held (`max_tasks`): what it refuses, and what it lets go."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dukat.core import CallableAction, JobSpec, JobState, Scheduler, TaskSpec, TaskState
from dukat.core._gates import Gates
from dukat.core.scheduler import JobEnding
from dukat.errors import CapacityError, NotFoundError, ValidationError
from tests.helpers import finished, settle


def blocked(gate: asyncio.Event) -> CallableAction:
    async def wait() -> None:
        await gate.wait()

    return CallableAction(wait)


async def noop() -> None:
    return None


def job_of(size: int, action: CallableAction | None = None) -> JobSpec:
    action = action or CallableAction(noop)
    return JobSpec(tasks=tuple(TaskSpec(f"t{i}", action) for i in range(size)))


async def test_a_job_the_unfinished_ones_leave_no_room_for_is_refused_and_nothing_kept(make):
    s = make(max_tasks=10)
    gate = asyncio.Event()
    first = s.submit(job_of(6, blocked(gate)))
    with pytest.raises(CapacityError) as caught:
        s.submit(job_of(5))
    error = caught.value
    assert (error.limit, error.capacity, error.held, error.requested) == ("max_tasks", 10, 6, 5)
    assert "max_tasks" in str(error) and "10" in str(error)
    assert [job.job_id for job in s.jobs()] == [first]
    assert s.tasks_held == 6
    four = s.submit(job_of(4))  # exactly up to the bound
    assert s.tasks_held == 10
    gate.set()
    assert await finished(s, first) is JobState.SUCCEEDED
    assert await finished(s, four) is JobState.SUCCEEDED
    s.submit(job_of(5))  # finished jobs make room


async def test_a_job_bigger_than_the_bound_says_it_can_never_fit(make):
    s = make(max_tasks=3)
    with pytest.raises(CapacityError, match="never"):
        s.submit(job_of(4))


async def test_finished_jobs_are_dropped_oldest_first_only_as_far_as_room_is_needed(make):
    s = make(max_tasks=10)
    done = []
    for _ in range(3):
        done.append(s.submit(job_of(3)))
        await finished(s, done[-1])
    assert s.tasks_held == 9
    s.submit(job_of(2))  # 9 + 2 > 10: the oldest finished job goes, the others stay
    with pytest.raises(NotFoundError):
        s.get_job(done[0])
    assert [s.get_job(j).state for j in done[1:]] == [JobState.SUCCEEDED] * 2
    assert s.tasks_held == 8


async def test_a_prepared_job_holds_its_room_until_started_or_abandoned(make):
    s = make(max_tasks=10)
    prepared = s.prepare(job_of(6))
    with pytest.raises(CapacityError):
        s.prepare(job_of(5))  # the first may still start
    s.abandon(prepared)
    s.abandon(prepared)  # idempotent
    second = s.prepare(job_of(10))
    s.start(second)
    s.abandon(second)  # started: nothing to give back
    assert s.tasks_held == 10
    await finished(s, second.job_id)


async def test_an_invalid_job_is_a_validation_error_whatever_the_room(make):
    s = make(max_tasks=1)
    with pytest.raises(ValidationError):
        s.submit(JobSpec(tasks=(TaskSpec("a", CallableAction(noop), dependencies=("b",)),)))
    assert s.tasks_held == 0


async def test_restore_brings_back_more_than_the_bound_and_new_jobs_wait_for_room(make):
    s = make(max_tasks=4)
    gate = asyncio.Event()
    s.restore(job_of(3), job_id="old", created_at=0.0, ended=JobEnding(JobState.SUCCEEDED, 1.0))
    live = s.restore(job_of(5, blocked(gate)), job_id="live", created_at=0.0)
    assert s.tasks_held == 8  # over the bound: a restart brings back everything it had
    with pytest.raises(CapacityError):
        s.submit(job_of(1))
    assert [job.job_id for job in s.jobs()] == [live]  # the finished job went first
    gate.set()
    await finished(s, live)
    s.submit(job_of(1))  # and the live one, once finished, makes room
    assert live not in s


@pytest.mark.parametrize("max_tasks", [0, -1, 1.5, "10", True])
def test_max_tasks_must_be_a_positive_whole_number_or_none(max_tasks: Any):
    with pytest.raises(ValidationError, match="max_tasks"):
        Scheduler(max_tasks=max_tasks)


async def test_a_start_that_fails_half_way_takes_the_job_back_whole(make, monkeypatch):
    s = make(max_tasks=10)
    dropped: list[str] = []
    s.add_drop_listener(dropped.append)
    ran: list[str] = []

    async def record() -> None:
        ran.append("ran")

    prepared = s.prepare(job_of(4, CallableAction(record)))
    make_ready = Gates.make_ready
    calls = 0

    def out_of_memory_at_the_third(self: Gates, run: Any, *args: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise MemoryError
        make_ready(self, run, *args)

    monkeypatch.setattr(Gates, "make_ready", out_of_memory_at_the_third)
    with pytest.raises(MemoryError):
        s.start(prepared)
    monkeypatch.undo()
    await settle()
    assert prepared.job_id not in s and s.jobs() == []
    assert dropped == [prepared.job_id]  # a journal listening lets go of it too
    assert s.tasks_held == 0
    assert ran == []
    assert {run.state for run in prepared.job.tasks.values()} == {TaskState.CANCELLED}
    again = s.submit(job_of(10))  # its room and its id are free again
    assert await finished(s, again) is JobState.SUCCEEDED
