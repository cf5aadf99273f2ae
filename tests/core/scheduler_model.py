"""A model of a random run of the scheduler, checked as it goes (for the property tests).

Plans describe random jobs; `Probe` watches a run of them — at every event (a scheduler
listener), at every allocation and release (a pool listener) and at every task start (inside
the task) — and records each broken invariant; `check` runs a scenario and fails on any.

Durations are numbers of `await asyncio.sleep(0)`, so an example takes milliseconds and its
interleaving depends only on the scheduling order, never on the machine's speed. The one
wall-clock bound, `DEADLOCK_SECONDS`, turns a hang into a failure; nothing asserts on time.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from dukat.core import (
    CallableAction,
    Clock,
    Event,
    InProcessRunner,
    JobSpec,
    JobState,
    JobStateChanged,
    ResourcePool,
    ResourceRequirement,
    ResourceType,
    RetryPolicy,
    Scheduler,
    TaskContext,
    TaskSpec,
    TaskState,
    TaskStateChanged,
    TriggerRule,
    current_task,
)
from dukat.core.states import TASK_TRANSITIONS
from dukat.errors import TaskInterruptedError

DEADLOCK_SECONDS = 5.0  # generous: a healthy example ends in milliseconds
LICENCE = "licence"  # the custom resource of every example: a small concurrency group
RUNS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

TERMINAL = frozenset(s for s in TaskState if s.is_terminal)
ST = TaskState


class Boom(Exception):
    """What a planned failure raises."""


# -- plans: what a random example runs ---------------------------------------------------------


@dataclass(frozen=True)
class TaskPlan:
    id: str
    deps: tuple[str, ...] = ()
    yields: int = 0
    """How long an attempt runs, in `sleep(0)` yields."""
    failures: int = 0
    """Attempts that raise `Boom` before one succeeds (see `script`)."""
    interruptions: int = 0
    """Attempts that raise `TaskInterruptedError`, taking turns with the failures, first."""
    max_interruptions: int = 3
    max_attempts: int = 1
    cpu: int = 0
    """Tenths of the CPU (capacity 1.0); 0 asks for none."""
    licences: int = 0
    priority: int = 0
    all_done: bool = False
    cancels: tuple[str, ...] | None = None
    """At the end of its first attempt the task itself cancels these tasks of its job (() for
    the whole job, itself included); None: it cancels nothing."""
    admission: int = 0
    """Loop turns its runner takes to admit each attempt (`Runner.admit`); 0: no admission."""
    seconds: int = 0
    """Seconds of the scheduler's clock each attempt also takes, after its yields (only the
    drain's tests give any, on a ManualClock that they move)."""

    @property
    def resources(self) -> tuple[ResourceRequirement, ...]:
        resources = []
        if self.cpu:
            resources.append(ResourceRequirement(ResourceType.CPU, self.cpu / 10))
        if self.licences:
            resources.append(ResourceRequirement(ResourceType.CUSTOM, self.licences, LICENCE))
        return tuple(resources)

    @property
    def script(self) -> tuple[str, ...]:
        """What each attempt does until one succeeds: "interrupted" or "failed", in turns
        (interrupted first) while both are left; the attempts after it succeed."""
        script: list[str] = []
        interruptions, failures = self.interruptions, self.failures
        while interruptions or failures:
            if interruptions:
                script.append("interrupted")
                interruptions -= 1
            if failures:
                script.append("failed")
                failures -= 1
        return tuple(script)

    def outcome(self) -> tuple[TaskState, int, int]:
        """Final state, attempts and interruptions, run alone: an interruption costs the
        retry policy nothing, one past `max_interruptions` fails the task."""
        attempts = interrupted = failed = 0
        for step in self.script:
            attempts += 1
            if step == "interrupted":
                interrupted += 1
                if interrupted > self.max_interruptions:
                    return ST.FAILED, attempts, interrupted
            else:
                failed += 1
                if failed >= self.max_attempts:
                    return ST.FAILED, attempts, interrupted
        return ST.SUCCEEDED, attempts + 1, interrupted

    @property
    def waits_when_picked(self) -> bool:
        """It may be READY yet picked: waiting for its resources or its admission."""
        return bool(self.cpu or self.licences or self.admission)

    @property
    def retry(self) -> RetryPolicy | None:
        if self.max_attempts == 1:
            return None
        # No backoff: the retry timer fires on the next loop iteration, not after real time.
        return RetryPolicy(
            max_attempts=self.max_attempts, initial_backoff=0, max_backoff=0, jitter=0
        )

    @property
    def trigger_rule(self) -> TriggerRule:
        return TriggerRule.ALL_DONE if self.all_done else TriggerRule.ALL_SUCCESS

    def spec(self, probe: Probe, job_id: str) -> TaskSpec:
        return TaskSpec(
            id=self.id,
            action=(
                AdmittedCall(attempt, (probe, job_id, self.id), turns=self.admission)
                if self.admission
                else CallableAction(attempt, (probe, job_id, self.id))
            ),
            dependencies=self.deps,
            resources=self.resources,
            retry=self.retry,
            priority=self.priority,
            trigger_rule=self.trigger_rule,
            max_interruptions=self.max_interruptions,
        )


class AdmittedCall(CallableAction):
    """A callable whose runner admits each attempt `turns` loop turns after it is picked."""

    __slots__ = ("turns",)

    def __init__(self, func: Any, args: tuple[Any, ...], *, turns: int) -> None:
        super().__init__(func, args)
        self.turns = turns


class AdmittingRunner(InProcessRunner):
    """The in-process runner behind an admission that takes a few loop turns."""

    def admit(self, context: TaskContext) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        _admit_later(future, context.action.turns)
        return future


def _admit_later(future: asyncio.Future[None], turns: int) -> None:
    if future.done():  # cancelled: the task was let go while it waited
        return
    if turns:
        asyncio.get_running_loop().call_soon(_admit_later, future, turns - 1)
    else:
        future.set_result(None)


@dataclass(frozen=True)
class JobPlan:
    tasks: tuple[TaskPlan, ...]
    """In submission order, which is not necessarily a topological one."""
    limit: int | None = None
    fail_fast: bool = False

    def by_id(self) -> dict[str, TaskPlan]:
        return {task.id: task for task in self.tasks}

    def downstream(self, task_ids: tuple[str, ...]) -> set[str]:
        """The tasks and everything that depends on them, directly or not."""
        dependents = defaultdict(list)
        for task in self.tasks:
            for dep in task.deps:
                dependents[dep].append(task.id)
        found: set[str] = set()
        stack = list(task_ids)
        while stack:
            task_id = stack.pop()
            if task_id not in found:
                found.add(task_id)
                stack.extend(dependents[task_id])
        return found

    def expected(self) -> dict[str, tuple[TaskState, int, int]]:
        """Each task's final state, attempts and interruptions when nothing cancels the job."""
        tasks = self.by_id()
        outcome: dict[str, tuple[TaskState, int, int]] = {}

        def resolve(task_id: str) -> tuple[TaskState, int, int]:
            if task_id not in outcome:
                task = tasks[task_id]
                upstream = [resolve(dep)[0] for dep in task.deps]
                if not task.all_done and any(s is not ST.SUCCEEDED for s in upstream):
                    outcome[task_id] = (ST.SKIPPED, 0, 0)
                else:
                    outcome[task_id] = task.outcome()
            return outcome[task_id]

        for task in self.tasks:
            resolve(task.id)
        return outcome


@dataclass(frozen=True)
class Action:
    at: int
    """The driver's yields before it acts; actions due at the same yield run in one step."""
    job: int
    cancel: tuple[str, ...] | None = None
    """None: submit job number `job`; () cancel the whole job; else cancel these tasks."""


@dataclass(frozen=True)
class Scenario:
    max_concurrency: int
    licences: int
    jobs: tuple[JobPlan, ...]
    actions: tuple[Action, ...]


@st.composite
def task_plans(draw: st.DrawFn, index: int, licences: int) -> TaskPlan:
    deps = draw(st.sets(st.integers(0, index - 1), max_size=3)) if index else set()
    return TaskPlan(
        id=f"t{index}",
        deps=tuple(f"t{d}" for d in sorted(deps)),
        yields=draw(st.integers(0, 6)),
        failures=draw(st.sampled_from([0, 0, 0, 1, 2])),
        interruptions=draw(st.sampled_from([0, 0, 0, 0, 1, 2])),
        max_interruptions=draw(st.sampled_from([3, 3, 1, 0])),
        max_attempts=draw(st.integers(1, 3)),
        cpu=draw(st.sampled_from([0, 0, 1, 3, 5, 7, 10])),
        licences=draw(st.integers(0, licences)),
        priority=draw(st.integers(-2, 2)),
        all_done=draw(st.sampled_from([False, False, False, True])),
        admission=draw(st.sampled_from([0, 0, 0, 1, 3])),
    )


@st.composite
def job_plans(draw: st.DrawFn, licences: int) -> JobPlan:
    size = draw(st.integers(1, 7))
    tasks = [draw(task_plans(index, licences)) for index in range(size)]
    ids = [task.id for task in tasks]
    for index, task in enumerate(tasks):
        if draw(st.integers(0, 9)) == 9:  # rare, and shrinks away
            targets = draw(st.one_of(st.just(()), st.lists(st.sampled_from(ids), max_size=2)))
            tasks[index] = replace(task, cancels=tuple(targets))
    return JobPlan(
        tasks=tuple(draw(st.permutations(tasks))),
        limit=draw(st.one_of(st.none(), st.integers(1, 3))),
        fail_fast=draw(st.booleans()),
    )


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    licences = draw(st.integers(1, 3))
    jobs = draw(st.lists(job_plans(licences), min_size=1, max_size=4))
    actions = []
    for index, job in enumerate(jobs):
        # Few distinct times, so that submits and cancels often share a step: the races
        # between a job ending and another arriving live there.
        submit_at = draw(st.sampled_from([0, 2, 4, 8]))
        actions.append(Action(submit_at, index))
        for _ in range(draw(st.integers(0, 3))):
            ids = [task.id for task in job.tasks]
            targets = draw(st.one_of(st.just(()), st.lists(st.sampled_from(ids), max_size=2)))
            # Relative to the submit, so that most cancels find the job running.
            delay = draw(st.sampled_from([0, 1, 2, 4, 8, 16]))
            actions.append(Action(submit_at + delay, index, tuple(targets)))
    # Stable sort of a random permutation: ties run in one step, in a random order.
    actions = sorted(draw(st.permutations(actions)), key=lambda action: action.at)
    return Scenario(
        max_concurrency=draw(st.integers(1, 4)),
        licences=licences,
        jobs=tuple(jobs),
        actions=tuple(actions),
    )


# -- the probe: a model of the run, checked as it goes ------------------------------------------


class Probe:
    """Watches one scheduler run and records every invariant it sees broken.

    Listeners and task bodies must not raise into the engine (that would test the error
    handling, not the property), so violations are collected and asserted at the end.
    """

    def __init__(self, scenario: Scenario, clock: Clock | None = None) -> None:
        self.scenario = scenario
        self.pool = ResourcePool({LICENCE: scenario.licences})
        self.capacity = {key: round(c * 1000) for key, c in self.pool.capacities.items()}
        self.scheduler = Scheduler(
            max_concurrency=scenario.max_concurrency,
            resources=self.pool,
            runners={AdmittedCall: AdmittingRunner()},
            clock=clock,
        )
        self.scheduler.add_listener(self.on_event)
        self.pool.add_listener(self.on_pool_change)
        self.violations: list[str] = []

        self.plans: dict[str, JobPlan] = {}  # by job id, once submitted
        self.state: dict[tuple[str, str], TaskState] = {}
        self.attempts: Counter[tuple[str, str]] = Counter()
        self.events: dict[str, list[Event]] = defaultdict(list)
        self.job_state: dict[str, JobState] = {}
        # what the events say is running, and what is really executing a body
        self.running: Counter[str] = Counter()
        self.bodies: Counter[str] = Counter()
        self.body_use: Counter[str] = Counter()  # milli-units held by executing bodies
        # cancellation
        self.no_start: set[tuple[str, str]] = set()  # cancelled: must never start again
        self.must_cancel: set[tuple[str, str]] = set()  # live when cancelled: must end CANCELLED
        self.stopping: set[tuple[str, str]] = set()  # running when cancelled, not yet ended
        self.touched: set[str] = set()  # jobs some cancel call actually affected
        self.failed_fast: set[str] = set()  # fail_fast jobs that had a task fail
        self.live_at_failure: dict[str, set[str]] = {}
        # what happened, to show the checks were not vacuous
        self.seen: Counter[str] = Counter()

    def violation(self, message: str) -> None:
        self.violations.append(message)

    # -- the script -------------------------------------------------------------------------

    async def drive(self) -> list[str]:
        step = 0
        submitted: list[str] = []
        job_ids: dict[int, str] = {}
        for action in self.scenario.actions:
            while step < action.at:
                await asyncio.sleep(0)
                step += 1
            if action.cancel is None:
                job_ids[action.job] = self.submit(action.job)
                submitted.append(job_ids[action.job])
            elif action.job in job_ids:
                self.cancel(job_ids[action.job], action.cancel)
        return submitted

    def submit(self, index: int) -> str:
        job_id = f"job{index}"
        plan = self.scenario.jobs[index]
        self.plans[job_id] = plan
        for task in plan.tasks:
            self.state[job_id, task.id] = ST.PENDING
        spec = JobSpec(
            tasks=tuple(task.spec(self, job_id) for task in plan.tasks),
            fail_fast=plan.fail_fast,
            max_concurrency=plan.limit,
        )
        assert self.scheduler.submit(spec, job_id=job_id) == job_id
        return job_id

    def cancel(self, job_id: str, task_ids: tuple[str, ...]) -> None:
        plan = self.plans[job_id]
        targets = plan.downstream(task_ids) if task_ids else set(plan.by_id())
        keys = {(job_id, task_id) for task_id in targets}
        live = {key for key in keys if self.state[key] not in TERMINAL}
        fresh = live - self.stopping
        # Nothing can start inside cancel() itself, so the ban may begin before the call.
        self.no_start |= keys
        cancelled = self.scheduler.cancel(job_id, task_ids)
        # "How many tasks this call cancelled": a task already being stopped is not news.
        if cancelled != len(fresh):
            self.violation(
                f"cancel({job_id}, {task_ids}) returned {cancelled}; "
                f"{len(fresh)} newly cancelled of {len(live)} live"
            )
        if live:
            self.touched.add(job_id)
        self.seen["running tasks cancelled"] += sum(self.state[key] is ST.RUNNING for key in fresh)
        self.seen["tasks cancelled while others wait for resources"] += bool(
            fresh and self.pool.waiting
        )
        self.must_cancel |= live
        self.stopping |= {key for key in live if self.state[key] is ST.RUNNING}
        for key in live - self.stopping:
            if self.state[key] is not ST.CANCELLED:
                self.violation(f"{key} is {self.state[key].name} right after cancel()")

    # -- listeners --------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        job_id = event.job_id
        self.events[job_id].append(event)
        if isinstance(event, TaskStateChanged):
            self.on_task_state(event)
        elif isinstance(event, JobStateChanged):
            self.on_job_state(event)

    def on_task_state(self, event: TaskStateChanged) -> None:
        key = (event.job_id, event.task_id)
        before, after = self.state[key], event.state
        if after not in TASK_TRANSITIONS[before]:
            self.violation(f"{key}: illegal transition {before.name} -> {after.name}")
        self.state[key] = after
        if before is ST.RUNNING:
            self.running[event.job_id] -= 1
            self.stopping.discard(key)
        if after is ST.RUNNING:
            self.attempts[key] += 1
            self.running[event.job_id] += 1
            self.check_start(event)
            self.seen["most running"] = max(self.seen["most running"], self.running.total())
        self.seen[after.name] += 1
        if self.pool.waiting:
            self.seen["events while tasks wait for resources"] += 1
        if after is ST.FAILED:
            plan = self.plans[event.job_id]
            if plan.fail_fast and event.job_id not in self.failed_fast:
                self.failed_fast.add(event.job_id)
                self.live_at_failure[event.job_id] = {
                    t.id for t in plan.tasks if self.state[event.job_id, t.id] not in TERMINAL
                }
                # The job cancels itself: its running tasks are being stopped from now on.
                running = {
                    (event.job_id, t.id)
                    for t in plan.tasks
                    if self.state[event.job_id, t.id] is ST.RUNNING
                }
                self.stopping |= running
                self.seen["fail_fast stopped running tasks"] += bool(running)

    def check_start(self, event: TaskStateChanged) -> None:
        job_id, task_id = event.job_id, event.task_id
        key = (job_id, task_id)
        plan = self.plans[job_id]
        task = plan.by_id()[task_id]
        self.check_upstreams(job_id, task, "RUNNING")
        if key in self.no_start:
            self.violation(f"{key} started after it was cancelled")
        if job_id in self.failed_fast:
            self.violation(f"{key} started after a task of its fail_fast job failed")
        if event.attempt != self.attempts[key]:
            self.violation(f"{key} RUNNING as attempt {event.attempt}, {self.attempts[key]}th")
        # Each attempt fails, is interrupted or ends the task: at most so many of them.
        if self.attempts[key] > task.max_attempts + task.max_interruptions:
            self.violation(
                f"{key} ran {self.attempts[key]} times; max {task.max_attempts} attempts "
                f"and {task.max_interruptions} interruptions"
            )
        total = sum(self.running.values())
        if total > self.scenario.max_concurrency or self.scheduler.running > total:
            self.violation(
                f"{key} made {total} running (scheduler says {self.scheduler.running}); "
                f"max_concurrency {self.scenario.max_concurrency}"
            )
        if plan.limit is not None and self.running[job_id] > plan.limit:
            self.violation(
                f"{key} made {self.running[job_id]} running in a job limited to {plan.limit}"
            )
        if not task.waits_when_picked:
            # A task without resources comes straight off its job's ready queue, so no READY
            # task of the job that also needs nothing may outrank it. (Tasks with resources
            # or an admission may be READY yet dispatched, waiting for their grant, so they
            # are left out.)
            for other in plan.tasks:
                if self.state[job_id, other.id] is not ST.READY or other.waits_when_picked:
                    continue
                if other.priority > task.priority:
                    self.violation(
                        f"{key} (priority {task.priority}) started before READY "
                        f"{other.id} (priority {other.priority})"
                    )
                elif other.priority < task.priority:
                    self.seen["started ahead of a lower priority"] += 1
        if task.all_done and any(self.state[job_id, dep] is not ST.SUCCEEDED for dep in task.deps):
            self.seen["ALL_DONE ran after an upstream failed"] += 1
        if total == self.scenario.max_concurrency > 1:
            self.seen["every slot busy"] += 1
        if plan.limit is not None and self.running[job_id] == plan.limit < total:
            self.seen["a job at its own limit"] += 1
        if sum(1 for count in self.running.values() if count) > 1:
            self.seen["jobs running together"] += 1

    def check_upstreams(self, job_id: str, task: TaskPlan, when: str) -> None:
        for dep in task.deps:
            upstream = self.state[job_id, dep]
            ok = upstream in TERMINAL if task.all_done else upstream is ST.SUCCEEDED
            if not ok:
                self.violation(
                    f"{job_id}/{task.id} {when} while upstream {dep} is {upstream.name}"
                    f" (trigger {'ALL_DONE' if task.all_done else 'ALL_SUCCESS'})"
                )

    def on_job_state(self, event: JobStateChanged) -> None:
        job_id = event.job_id
        self.job_state[job_id] = event.state
        if not event.state.is_terminal:
            return
        plan = self.plans[job_id]
        states = [self.state[job_id, task.id] for task in plan.tasks]
        if any(state not in TERMINAL for state in states):
            self.violation(f"{job_id} ended {event.state.name} with tasks {states}")
        if self.running[job_id]:
            self.violation(f"{job_id} ended with {self.running[job_id]} tasks running")
        if ST.FAILED in states:
            expected = JobState.FAILED
        elif all(state is ST.SUCCEEDED for state in states):
            expected = JobState.SUCCEEDED
        else:
            expected = JobState.CANCELLED
        if event.state is not expected:
            self.violation(f"{job_id} ended {event.state.name} with tasks {states}")

    def on_pool_change(self, pool: ResourcePool) -> None:
        self.seen["pool changes"] += 1
        for key, usage in pool.usage().items():
            if not 0 <= usage.used <= usage.capacity:
                self.violation(f"{key} over-allocated: {usage.used} of {usage.capacity}")

    # -- inside every task ------------------------------------------------------------------

    async def body(self, job_id: str, task_id: str) -> str:
        context = current_task()
        key = (job_id, task_id)
        plan = self.plans[job_id]
        task = plan.by_id()[task_id]
        if self.state[key] is not ST.RUNNING or context.attempt != self.attempts[key]:
            self.violation(f"{key} body runs in state {self.state[key].name}")
        self.check_upstreams(job_id, task, "body started")
        results = context.upstream_results
        for dep in task.deps:
            if self.state[job_id, dep] is ST.SUCCEEDED and results.get(dep) != f"{job_id}/{dep}":
                self.violation(f"{key} sees upstream result {results.get(dep)!r} for {dep}")
        use = {"cpu": task.cpu * 100, LICENCE: task.licences * 1000}
        self.bodies[job_id] += 1
        self.body_use.update(use)
        try:
            if self.bodies.total() > self.scenario.max_concurrency:
                self.violation(f"{self.bodies.total()} bodies executing at once")
            if plan.limit is not None and self.bodies[job_id] > plan.limit:
                self.violation(f"{self.bodies[job_id]} bodies of {job_id} executing at once")
            for resource in use:
                if self.body_use[resource] > self.capacity[resource]:
                    self.violation(
                        f"executing bodies hold {self.body_use[resource]} milli-{resource}, "
                        f"capacity {self.capacity[resource]}"
                    )
            for _ in range(task.yields):
                await asyncio.sleep(0)
            if task.seconds:
                await self.scheduler.clock.sleep(task.seconds)
            if task.cancels is not None and context.attempt == 1:
                # From inside: the task's own worker is the running asyncio task here.
                self.seen["cancelled from inside a task"] += 1
                self.cancel(job_id, task.cancels)
            script = task.script
            step = script[context.attempt - 1] if context.attempt <= len(script) else ""
            if step == "interrupted":
                self.seen["interrupted"] += 1
                raise TaskInterruptedError(f"{key} attempt {context.attempt}")
            if step == "failed":
                raise Boom(f"{key} attempt {context.attempt}")
            return f"{job_id}/{task_id}"
        finally:
            self.bodies[job_id] -= 1
            self.body_use.subtract(use)

    # -- after the end ----------------------------------------------------------------------

    async def check_end(self, submitted: list[str], waited: list[JobState]) -> None:
        scheduler = self.scheduler
        for job_id, state in zip(submitted, waited, strict=True):
            plan = self.plans[job_id]
            if state is not scheduler.job_state(job_id) or state is not self.job_state[job_id]:
                self.violation(f"wait({job_id}) said {state}, events {self.job_state[job_id]}")
            await self.check_log(job_id, plan)
            results = scheduler.results(job_id)
            for task in plan.tasks:
                key = (job_id, task.id)
                result = results[task.id]
                if result.state is not self.state[key]:
                    self.violation(f"{key} result {result.state}, events {self.state[key]}")
                if result.attempts != self.attempts[key]:
                    self.violation(f"{key} {result.attempts} attempts, {self.attempts[key]} ran")
                if result.state is ST.SUCCEEDED and result.result != f"{job_id}/{task.id}":
                    self.violation(f"{key} result {result.result!r}")
                if result.state is ST.FAILED and not isinstance(
                    result.error, Boom | TaskInterruptedError
                ):
                    self.violation(f"{key} failed with {result.error!r}")
                if (
                    not 0
                    <= result.interruptions
                    <= min(result.attempts, task.max_interruptions + 1)
                ):
                    self.violation(f"{key} {result.interruptions} interruptions: {result}")
                if key in self.must_cancel and result.state is not ST.CANCELLED:
                    self.violation(f"{key} was live when cancelled but ended {result.state}")
            if job_id in self.failed_fast:
                for task_id in self.live_at_failure[job_id]:
                    if results[task_id].state not in (ST.SKIPPED, ST.CANCELLED):
                        self.violation(
                            f"{job_id}/{task_id} ended {results[task_id].state} after its "
                            "fail_fast job failed"
                        )
            if job_id not in self.touched:
                self.check_oracle(job_id, plan, results)
        if scheduler.running:
            self.violation(f"scheduler.running is {scheduler.running} after every job ended")
        busy = {key: usage for key, usage in self.pool.usage().items() if usage.used}
        if busy or self.pool.waiting:
            self.violation(f"resources not all back: {busy}, {self.pool.waiting} waiting")

    async def check_log(self, job_id: str, plan: JobPlan) -> None:
        events = self.events[job_id]
        if [e.sequence for e in events] != list(range(1, len(events) + 1)):
            self.violation(f"{job_id} sequences {[e.sequence for e in events]}")
        logged = [event async for batch in self.scheduler.watch(job_id) for event in batch]
        if logged != events:
            self.violation(f"{job_id}: the log and the listener saw different events")
        if not (
            isinstance(events[0], JobStateChanged)
            and events[0].state is JobState.RUNNING
            and isinstance(events[-1], JobStateChanged)
            and events[-1].state.is_terminal
        ):
            self.violation(f"{job_id}'s log does not open RUNNING and close terminal")
        paths: dict[str, list[TaskState]] = {task.id: [ST.PENDING] for task in plan.tasks}
        for event in events:
            if isinstance(event, TaskStateChanged):
                paths[event.task_id].append(event.state)
        for task_id, path in paths.items():
            legal = all(b in TASK_TRANSITIONS[a] for a, b in itertools.pairwise(path))
            if not legal or sum(s in TERMINAL for s in path) != 1 or path[-1] not in TERMINAL:
                self.violation(f"{job_id}/{task_id} went {[s.name for s in path]}")

    def check_oracle(self, job_id: str, plan: JobPlan, results: dict) -> None:
        """Untouched by cancels, a job's outcome follows from its plan alone."""
        expected = plan.expected()
        if plan.fail_fast and any(state is ST.FAILED for state, _, _ in expected.values()):
            return  # which tasks the failure cancels depends on timing; checked above
        for task_id, (state, attempts, interruptions) in expected.items():
            result = results[task_id]
            if (result.state, result.attempts, result.interruptions) != (
                state,
                attempts,
                interruptions,
            ):
                self.violation(
                    f"{job_id}/{task_id} ended {result.state.name} after {result.attempts} "
                    f"attempts ({result.interruptions} interrupted); the plan says "
                    f"{state.name} after {attempts} ({interruptions})"
                )


async def attempt(probe: Probe, job_id: str, task_id: str) -> str:
    # A module-level function, not a bound method: the runner caches what it learns about
    # each callable, and a method of every example's probe would keep them all alive.
    return await probe.body(job_id, task_id)


async def run_scenario(scenario: Any, probe_type: Callable[[Any], Probe] = Probe) -> Probe:
    """Run `scenario` under a `probe_type(scenario)` (a Probe, or one that checks more)."""
    probe = probe_type(scenario)
    try:
        async with asyncio.timeout(DEADLOCK_SECONDS):
            submitted = await probe.drive()
            waited = [await probe.scheduler.wait(job_id) for job_id in submitted]
    except TimeoutError:
        states = {job_id: probe.scheduler.get_job(job_id) for job_id in probe.plans}
        pytest.fail(f"deadlock: jobs did not end: {states} {probe.scheduler!r}")
    await probe.check_end(submitted, waited)
    await probe.scheduler.close()
    return probe


def check(scenario: Any, probe_type: Callable[[Any], Probe] = Probe) -> Probe:
    probe = asyncio.run(run_scenario(scenario, probe_type))
    assert not probe.violations, "\n".join(probe.violations[:20])
    return probe
