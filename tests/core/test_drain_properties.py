"""Property-based tests of `Scheduler.drain(grace)`: random jobs, a drain at a random moment.

The scenarios of `scheduler_model` (random DAGs, failures, retries, resources, limits,
admissions, cancels), with attempts that also take whole seconds of a `ManualClock`, a few
ticks of that clock before the drain, and the drain called at a random step of the script.
`scheduler_model.Probe` checks the scheduler's invariants throughout (no over-allocation,
every resource back at the end); `DrainProbe` adds the drain's own:

- no attempt starts once the drain was called (READY tasks, retries whose backoff ran out and
  tasks whose upstreams finished all wait);
- an attempt that ends within the grace keeps its outcome (nothing cancels it early);
- one still running when the grace is over ends CANCELLED, at that moment, with the drain's
  reason, and `drain` returns how many those were.

The grace is 0 or a whole number of seconds plus a half, and attempts take whole seconds:
only a grace of 0 can end at the moment an attempt does. After the drain the remaining jobs
are cancelled (what `close` does) and the usual end checks run.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

import pytest
from hypothesis import Phase, example, find, given, settings
from hypothesis import strategies as st

from dukat.core import JobState, ManualClock, TaskState, TaskStateChanged
from tests.core.scheduler_model import (
    RUNS,
    Action,
    JobPlan,
    Probe,
    Scenario,
    TaskPlan,
    check,
    scenarios,
)
from tests.helpers import wait_for

ST = TaskState
DRAIN_REASON = "cancelled: the drain's grace ran out"
SECONDS = (0, 0, 1, 2, 3, 5)  # what an attempt takes on the clock; 0 is twice as likely


@dataclass(frozen=True)
class DrainScenario:
    scenario: Scenario
    """Its tasks' `seconds` say how long each attempt takes on the clock."""
    drain_at: int
    """The script's step at which the drain is called."""
    grace: float
    ticks: frozenset[int] = frozenset()
    """Steps before which the clock moves one second (retries wait for it, as do attempts)."""


@st.composite
def drain_scenarios(draw: st.DrawFn) -> DrainScenario:
    scenario = draw(scenarios())
    seconds = st.sampled_from(SECONDS)
    jobs = tuple(
        replace(job, tasks=tuple(replace(task, seconds=draw(seconds)) for task in job.tasks))
        for job in scenario.jobs
    )
    return DrainScenario(
        replace(scenario, jobs=jobs),
        drain_at=draw(st.sampled_from([0, 1, 2, 4, 8, 12, 20])),
        grace=draw(st.sampled_from([0.0, 0.5, 1.5, 2.5, 4.5])),
        ticks=frozenset(draw(st.sets(st.integers(0, 20), max_size=3))),
    )


class DrainProbe(Probe):
    """`Probe`, plus the drain's invariants (module docstring)."""

    def __init__(self, plan: DrainScenario) -> None:
        self.clock = ManualClock()
        super().__init__(plan.scenario, self.clock)
        self.plan = plan
        self.drain_called: float | None = None  # the clock when drain() was called
        self.cut: set[tuple[str, str]] = set()  # cancelled by the drain at the grace's end

    @property
    def grace_over(self) -> float:
        assert self.drain_called is not None
        return self.drain_called + self.plan.grace

    async def drain(self) -> int:
        self.drain_called = self.clock.now()
        running = sum(state is ST.RUNNING for state in self.state.values())
        self.seen["running when the drain began"] += running
        # drain() stops every start before it first yields: the flag above is exact.
        return await self.scheduler.drain(self.plan.grace)

    async def drive(self) -> list[str]:
        actions = list(self.scenario.actions)
        last = max([self.plan.drain_at, *self.plan.ticks, *(a.at for a in actions)])
        submitted: list[str] = []
        job_ids: dict[int, str] = {}
        draining: asyncio.Task[int] | None = None
        for step in range(last + 1):
            if step in self.plan.ticks:
                await self.clock.advance(1.0)
            for action in actions:
                if action.at != step:
                    continue
                if action.cancel is None:
                    job_ids[action.job] = self.submit(action.job)
                    submitted.append(job_ids[action.job])
                elif action.job in job_ids:
                    self.cancel(job_ids[action.job], action.cancel)
            if step == self.plan.drain_at:
                draining = asyncio.create_task(self.drain())
            await asyncio.sleep(0)
        assert draining is not None
        while not draining.done():
            await self.clock.advance(1.0)
        drained = draining.result()
        if drained != len(self.cut):
            self.violation(f"drain() said it cancelled {drained}; it cut {sorted(self.cut)}")
        # The cut attempts were asked to stop, not awaited: let them end (and time pass, so
        # that one the drain forgot would end late, and a retry's backoff run out), then do
        # what close() does, through the probe, which keeps track of what it cancels.
        await self.clock.advance(max(SECONDS))
        await wait_for(lambda: self.scheduler.running == 0)
        self.touched |= {job_id for job_id, _ in self.cut}
        for job_id in submitted:
            if self.scheduler.job_state(job_id) is JobState.RUNNING:
                self.seen["jobs left for close"] += 1
                self.cancel(job_id, ())
        return submitted

    def on_task_state(self, event: TaskStateChanged) -> None:
        key = (event.job_id, event.task_id)
        before = self.state[key]
        super().on_task_state(event)
        if self.drain_called is None:
            return
        now = self.clock.now()
        if event.state is ST.RUNNING:
            self.violation(f"{key} started (attempt {event.attempt}) after drain() was called")
        if event.state is ST.READY:
            self.seen["READY while draining"] += 1
        if before is not ST.RUNNING:
            return
        asked = key in self.no_start or event.job_id in self.failed_fast
        cancelled = event.state is ST.CANCELLED
        # At the very end of the grace (only a grace of 0 gets there: attempts take whole
        # seconds), an attempt that ends before the drain's timer fires keeps its outcome.
        if now < self.grace_over or (now == self.grace_over and not cancelled):
            self.seen["ended within the grace"] += 1
            if cancelled and not asked:
                self.violation(f"{key} cancelled at {now}, within the grace ({self.grace_over})")
        elif not cancelled:
            self.violation(f"{key} ended {event.state.name} at {now}, after the grace")
        elif not asked:
            self.cut.add(key)

    async def body(self, job_id: str, task_id: str) -> str:
        if self.drain_called is not None:
            self.violation(f"{(job_id, task_id)} body started after drain() was called")
        return await super().body(job_id, task_id)

    async def check_end(self, submitted: list[str], waited: list[JobState]) -> None:
        await super().check_end(submitted, waited)
        results = {job_id: self.scheduler.results(job_id) for job_id in submitted}
        for job_id, task_id in self.cut:
            message = results[job_id][task_id].message
            if message != DRAIN_REASON:
                self.violation(f"{(job_id, task_id)} cut with the message {message!r}")
        self.seen["cut at the grace's end"] += len(self.cut)


# One slow task cut, one quick one that ends within the grace, a chain whose next task
# becomes READY during the grace and must wait, and a retry whose backoff ends meanwhile.
MIXED = DrainScenario(
    Scenario(
        max_concurrency=3,
        licences=1,
        jobs=(
            JobPlan(
                tasks=(
                    TaskPlan("t0", seconds=5, licences=1),
                    TaskPlan("t1", seconds=1),
                    TaskPlan("t2", ("t1",)),
                    TaskPlan("t3", yields=2, failures=1, max_attempts=2, cpu=5),
                )
            ),
        ),
        actions=(Action(0, 0),),
    ),
    drain_at=4,
    grace=2.5,
)


@RUNS
@given(drain_scenarios())
@example(MIXED)
def test_drain_invariants_hold_for_random_jobs(plan: DrainScenario) -> None:
    check(plan, DrainProbe)


@pytest.mark.parametrize(
    "situation",
    [
        "running when the drain began",
        "ended within the grace",
        "cut at the grace's end",
        "READY while draining",
        "jobs left for close",
    ],
)
def test_random_drains_reach_the_hard_cases(situation: str) -> None:
    """The drain's invariants are not checked in vain: random examples get into each case."""
    find(
        drain_scenarios(),
        lambda plan: check(plan, DrainProbe).seen[situation] > 0,
        settings=settings(max_examples=2000, database=None, phases=[Phase.generate]),
    )


def test_the_mixed_example_cuts_the_slow_task_and_keeps_the_quick_one() -> None:
    probe = check(MIXED, DrainProbe)
    assert probe.cut == {("job0", "t0")}
    assert probe.state["job0", "t1"] is ST.SUCCEEDED
    assert probe.state["job0", "t2"] is ST.CANCELLED  # READY during the grace, never started
    assert probe.state["job0", "t3"] is ST.CANCELLED  # its retry waited
