"""Property-based tests of the scheduler: random DAGs, failures, resources, limits, cancels.

Each example builds a few random jobs and runs them on one `Scheduler`, driven by a script of
submits and cancels, while `scheduler_model.Probe` checks the invariants as things happen
and again once every job has ended.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, Phase, example, find, given, settings
from hypothesis import strategies as st

from dukat.core import (
    CallableAction,
    JobSpec,
    JobState,
    ManualClock,
    ParallelTaskExecutor,
    ResourcePool,
    ResourceRequirement,
    ResourceType,
    RetryPolicy,
    Scheduler,
    Task,
    TaskSpec,
    TaskState,
    TaskStateChanged,
    current_task,
)
from dukat.errors import TaskInterruptedError
from tests.core.scheduler_model import (
    Action,
    Boom,
    JobPlan,
    Probe,
    Scenario,
    TaskPlan,
    check,
    job_plans,
    scenarios,
)
from tests.helpers import wait_for

DEADLOCK_SECONDS = 5.0  # generous: a healthy example ends in milliseconds
LICENCE = "licence"  # the custom resource of every example: a small concurrency group
RUNS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

TERMINAL = frozenset(s for s in TaskState if s.is_terminal)
ST = TaskState


# -- the scheduler properties ----------------------------------------------------------------

DIAMOND = JobPlan(
    tasks=(
        TaskPlan("t0", yields=2, cpu=5),
        TaskPlan("t1", ("t0",), yields=3, failures=1, max_attempts=2, licences=1),
        TaskPlan("t2", ("t0",), yields=3, failures=1, cpu=10, priority=2),
        TaskPlan("t3", ("t1", "t2"), all_done=True, cpu=5, licences=1),
    ),
    limit=2,
)


# Hand-picked cases, run before the random ones: one job with a retry, a failure and an
# ALL_DONE clean-up under a job limit; three jobs racing for three slots and the CPU, one of
# them fail_fast and one cancelled while it runs; a running task cancelled twice.
ONE_JOB = Scenario(max_concurrency=2, licences=1, jobs=(DIAMOND,), actions=(Action(0, 0),))
FAN = JobPlan(tasks=tuple(TaskPlan(f"t{i}", yields=4, priority=i % 2) for i in range(4)))
RACING_JOBS = Scenario(
    max_concurrency=3,
    licences=1,
    jobs=(DIAMOND, replace(DIAMOND, fail_fast=True), FAN),
    actions=(Action(0, 0), Action(0, 1), Action(0, 2), Action(6, 2, ()), Action(6, 2, ())),
)
CANCEL_RUNNING = Scenario(
    max_concurrency=1,
    licences=2,
    jobs=(DIAMOND,),
    actions=(Action(0, 0), Action(8, 0, ("t1",)), Action(8, 0, ("t1",))),
)

# Found by this test (shrunk): when t0 ends it hands the CPU to t6, and the job is cancelled
# in the same step, before the grant reaches t6 (see test_cancel_gives_back_a_fresh_grant).
FRESH_GRANT_CANCELLED = Scenario(
    max_concurrency=2,
    licences=1,
    jobs=(
        JobPlan(
            tasks=(
                TaskPlan("t0", yields=1, cpu=1),
                *(TaskPlan(f"t{i}") for i in range(1, 6)),
                TaskPlan("t6", cpu=10),
            )
        ),
    ),
    actions=(Action(0, 0), Action(3, 0, ())),
)

# Found by this test (shrunk): the second cancel found t1 still stopping and counted it again
# (see test_cancel_again_counts_nothing_new).
CANCEL_TWICE = Scenario(
    max_concurrency=1,
    licences=1,
    jobs=(JobPlan((TaskPlan("t0"),)), JobPlan((TaskPlan("t0"), TaskPlan("t1", yields=1)))),
    actions=(Action(0, 0), Action(0, 1), Action(2, 1, ()), Action(2, 1, ())),
)


@RUNS
@given(scenarios())
@example(FRESH_GRANT_CANCELLED)
@example(CANCEL_TWICE)
@example(ONE_JOB)
@example(RACING_JOBS)
@example(CANCEL_RUNNING)
def test_scheduler_invariants_hold_for_random_jobs(scenario: Scenario) -> None:
    check(scenario)


@pytest.mark.parametrize(
    "situation",
    [
        "every slot busy",
        "jobs running together",
        "a job at its own limit",
        "events while tasks wait for resources",
        "started ahead of a lower priority",
        "RETRYING",
        "interrupted",
        "ALL_DONE ran after an upstream failed",
        "fail_fast stopped running tasks",
        "running tasks cancelled",
        "tasks cancelled while others wait for resources",
        "cancelled from inside a task",
    ],
)
def test_random_jobs_reach_the_hard_cases(situation: str) -> None:
    """The invariants are not checked in vain: the random jobs do get into each situation.

    The rarest of these needs a few hundred examples at worst (a median near 100), so the
    cap makes a spurious failure practically impossible while the usual cost stays small.
    """
    find(
        scenarios(),
        lambda scenario: check(scenario).seen[situation] > 0,
        settings=settings(max_examples=3000, database=None, phases=[Phase.generate]),
    )


def test_probe_catches_a_broken_invariant() -> None:
    """A scheduler that ignored dependencies would be caught (the probe can fail)."""
    job = JobPlan(tasks=(TaskPlan("t0", yields=3), TaskPlan("t1", ("t0",))))
    scenario = Scenario(1, 1, (job,), (Action(0, 0),))

    async def run() -> Probe:
        probe = Probe(scenario)
        probe.submit(0)
        # What a scheduler that ignored dependencies would report: t1 running before t0 ends.
        probe.check_start(TaskStateChanged(99, "job0", 0.0, "t1", ST.RUNNING, 1))
        await probe.scheduler.wait("job0")
        await probe.scheduler.close()
        return probe

    probe = asyncio.run(run())
    assert any("upstream t0" in v for v in probe.violations)


# -- engine bugs found by the properties, minimised ---------------------------------------------
# Each failed at commit 13e98d5 and is fixed in scheduler.py since; they pin the fix.


async def test_job_submitted_right_after_the_last_job_ends_still_runs() -> None:
    """A worker told to retire must not count as one that can take the new job's tasks.

    The bug: `_retire_idle` resolved the idle workers' futures but left them in `_workers`
    until their coroutines ran; a wake scheduled before that saw the slots full, started no
    worker, and the retiring workers then exited without looking: the new job hung forever.
    """
    scheduler = Scheduler(max_concurrency=1, clock=ManualClock())
    attempted = asyncio.Event()

    async def fail() -> None:
        attempted.set()
        raise Boom

    async def ok() -> str:
        return "ok"

    backoff = RetryPolicy(max_attempts=2, initial_backoff=1, max_backoff=1, jitter=0)
    waiting = scheduler.submit(JobSpec((TaskSpec("a", CallableAction(fail), retry=backoff),)))
    await attempted.wait()
    # The only worker is idle now: the clock never moves, so `a` stays RETRYING.
    assert scheduler.get_job(waiting).tasks[0].state is ST.RETRYING
    # In one step: a job comes and goes (its submit schedules a wake), the last live job is
    # cancelled (so the idle worker is told to retire), and a new job arrives.
    passing = scheduler.submit(JobSpec((TaskSpec("x", CallableAction(ok)),)))
    scheduler.cancel(passing)
    scheduler.cancel(waiting)
    fresh = scheduler.submit(JobSpec((TaskSpec("y", CallableAction(ok)),)))
    try:
        async with asyncio.timeout(DEADLOCK_SECONDS):
            assert await scheduler.wait(fresh) is JobState.SUCCEEDED
    finally:
        await scheduler.close()


async def test_cancel_again_counts_nothing_new() -> None:
    """cancel() returns how many tasks *this call* cancelled; a task being stopped is not one.

    The bug: `_cancel_runs` counted every non-terminal target, so a RUNNING task that an
    earlier cancel had already interrupted was counted again.
    """
    async with Scheduler(max_concurrency=1) as scheduler:
        started = asyncio.Event()

        async def forever() -> None:
            started.set()
            await asyncio.Event().wait()

        job = scheduler.submit(JobSpec((TaskSpec("a", CallableAction(forever)),)))
        await started.wait()
        assert scheduler.cancel(job) == 1
        again = scheduler.cancel(job)  # `a` has not yet seen its CancelledError
        assert await scheduler.wait(job) is JobState.CANCELLED
        assert again == 0


async def test_cancel_gives_back_a_fresh_grant() -> None:
    """A job is not over while one of its tasks still holds resources.

    The bug: `_terminate` cancelled the task's reservation, but one already granted (its
    `_on_granted` callback not yet run) cannot be cancelled, so the grant stayed taken until
    a loop step after the job had ended.
    """
    pool = ResourcePool()
    cpu = (ResourceRequirement(ResourceType.CPU, 1.0),)
    async with Scheduler(resources=pool) as scheduler:

        async def never_runs() -> None:
            raise AssertionError("cancelled before it could run")

        assert pool.try_allocate("outside", cpu)
        job = scheduler.submit(JobSpec((TaskSpec("t", CallableAction(never_runs), resources=cpu),)))
        await wait_for(lambda: pool.waiting == 1)  # the task asks for the CPU held outside
        # In one step: the CPU is handed to the task, and the job is cancelled.
        pool.release_nowait("outside")
        scheduler.cancel(job)
        assert await scheduler.wait(job) is JobState.CANCELLED
        assert pool.usage()["cpu"].used == 0


# -- ParallelTaskExecutor: execute_all always returns ------------------------------------------


async def planned_attempt(yields: int, script: tuple[str, ...]) -> int:
    attempt = current_task().attempt
    if attempt <= len(script):
        raise TaskInterruptedError("planned") if script[attempt - 1] == "interrupted" else Boom
    for _ in range(yields):
        await asyncio.sleep(0)
    return yields


@settings(max_examples=60, deadline=None)
@given(job_plans(licences=1), st.integers(1, 4))
def test_execute_all_always_returns_every_task(plan: JobPlan, max_concurrency: int) -> None:
    async def run() -> tuple[dict, dict]:
        pool = ResourcePool({LICENCE: 1})
        async with ParallelTaskExecutor(max_concurrency, resource_pool=pool) as executor:
            for task in plan.tasks:
                await executor.add_task(
                    Task(task.id, planned_attempt, args=(task.yields, task.script)),
                    dependencies=task.deps,
                    resource_requirements=task.resources,
                    priority=task.priority,
                    trigger_rule=task.trigger_rule,
                    retry=task.retry,
                    max_interruptions=task.max_interruptions,
                )
            async with asyncio.timeout(DEADLOCK_SECONDS):
                results = await executor.execute_all()
            return results, pool.usage()

    results, usage = asyncio.run(run())
    expected = plan.expected()
    outcomes = {task_id: (r.state, r.attempts, r.interruptions) for task_id, r in results.items()}
    assert outcomes == expected
    assert all(u.used == 0 for u in usage.values())
