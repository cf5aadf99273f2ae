"""Progress you can hold: the fold of a job's events, and trackers fed from each source."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from dukat.core import (
    JobProgress,
    JobSpec,
    JobState,
    ManualClock,
    ParallelTaskExecutor,
    ProgressFold,
    ProgressTracker,
    RetryPolicy,
    Scheduler,
    Task,
    TaskSpec,
    TaskState,
    current_task,
    report_progress,
)
from dukat.core.async_assistant import AsyncAssistant
from dukat.core.events import Event
from dukat.core.runners import CallableAction
from tests.core.scheduler_model import (
    RUNS,
    AdmittedCall,
    AdmittingRunner,
    Probe,
    Scenario,
    check,
    scenarios,
)
from tests.core.test_properties import CANCEL_RUNNING, CANCEL_TWICE, RACING_JOBS
from tests.helpers import wait_for

ST = TaskState

# -- the property: folding a job's events gives its final counts ------------------------------


class ProgressProbe(Probe):
    """A probe that also folds every job's events three ways, and checks each at the end:

    - from nothing but the job's size, every event the listener saw;
    - from a snapshot taken in the middle of the run (at the `snapshot_at`-th event), the
      events after it;
    - from a watcher that reads slowly a log of `log_limit` events, so that it falls
      behind and is given `Snapshot` events;

    and a `Scheduler.track` tracker started at submit.
    """

    def __init__(self, scenario: Scenario, *, log_limit: int, snapshot_at: int, lag: int) -> None:
        super().__init__(scenario)
        self.scheduler.remove_listener(self.on_event)
        self.scheduler = Scheduler(
            max_concurrency=scenario.max_concurrency,
            resources=self.pool,
            runners={AdmittedCall: AdmittingRunner()},
            event_log_length=log_limit,
        )
        self.scheduler.add_listener(self.on_event)
        self.log_limit = log_limit
        self.snapshot_at = snapshot_at
        self.lag = lag
        self.mid_run: dict[str, ProgressFold] = {}
        self.watched: dict[str, ProgressFold] = {}
        self.watchers: list[asyncio.Task[None]] = []
        self.trackers: dict[str, ProgressTracker] = {}

    def submit(self, index: int) -> str:
        job_id = super().submit(index)
        self.trackers[job_id] = self.scheduler.track(job_id)
        self.watchers.append(asyncio.create_task(self.watch(job_id)))
        return job_id

    def on_event(self, event: Event) -> None:
        super().on_event(event)
        job_id = event.job_id
        if job_id in self.mid_run:
            self.mid_run[job_id].apply([event])
        elif len(self.events[job_id]) == self.snapshot_at:
            self.mid_run[job_id] = ProgressFold.of(self.scheduler.get_job(job_id))

    async def watch(self, job_id: str) -> None:
        fold = self.watched[job_id] = ProgressFold.of(self.scheduler.get_job(job_id))
        async for batch in self.scheduler.watch(job_id, fold.last_sequence, max_batch=3):
            fold.apply(batch)
            self.seen["snapshots folded"] += any(type(e).__name__ == "Snapshot" for e in batch)
            for _ in range(self.lag):
                await asyncio.sleep(0)

    async def check_log(self, job_id: str, plan: Any) -> None:
        if self.log_limit >= 10_000:  # with a short log the watch replays a snapshot
            await super().check_log(job_id, plan)

    async def check_end(self, submitted: list[str], waited: list[JobState]) -> None:
        await super().check_end(submitted, waited)
        await asyncio.gather(*self.watchers)
        for job_id in submitted:
            final = self.scheduler.get_job(job_id)
            from_start = ProgressFold(job_id, len(self.plans[job_id].tasks))
            from_start.apply(self.events[job_id])
            folds = {"from the start": from_start, "watched": self.watched[job_id]}
            if job_id in self.mid_run:
                folds["from a snapshot"] = self.mid_run[job_id]
            progresses = {name: fold.progress(0.0) for name, fold in folds.items()}
            progresses["tracked"] = self.trackers[job_id].progress
            for name, progress in progresses.items():
                self.compare(name, progress, final)

    def compare(self, name: str, progress: JobProgress, final: Any) -> None:
        got = (progress.state, progress.total, dict(progress.counts), progress.last_sequence)
        want = (final.state, final.total, dict(final.task_counts), final.last_sequence)
        if got != want:
            self.violation(f"{final.job_id} {name}: folded {got}, the job ended {want}")
        if progress.running or progress.done != final.total or progress.fraction != 1.0:
            self.violation(f"{final.job_id} {name}: finished yet {progress}")


@RUNS
@given(
    scenarios(),
    st.sampled_from([1, 2, 5, 10_000]),
    st.integers(1, 30),
    st.integers(0, 3),
)
@example(RACING_JOBS, 2, 3, 1)
@example(CANCEL_RUNNING, 1, 5, 2)
@example(CANCEL_TWICE, 10_000, 2, 0)
def test_the_fold_of_a_jobs_events_matches_its_final_counts(
    scenario: Scenario, log_limit: int, snapshot_at: int, lag: int
) -> None:
    """Random jobs (retries, skips, ALL_DONE, fail_fast, cancels, several jobs at once) run by
    a real scheduler: however their events are folded, the progress ends where the job did."""
    check(scenario, partial(ProgressProbe, log_limit=log_limit, snapshot_at=snapshot_at, lag=lag))


def test_the_random_runs_fold_snapshots_too() -> None:
    """Not in vain: a slow watcher of a short log does get Snapshot events to fold."""
    probe = check(RACING_JOBS, partial(ProgressProbe, log_limit=1, snapshot_at=2, lag=3))
    assert probe.seen["snapshots folded"] > 0


# -- the value ----------------------------------------------------------------------------------


async def test_progress_counts_the_running_tasks_reports_and_time(clock: ManualClock) -> None:
    gate = asyncio.Event()

    async def step() -> None:
        context = current_task()
        report_progress(0.5, f"half of {context.task_id}")
        context.output("stdout", "a line")
        await gate.wait()

    async with Scheduler(max_concurrency=2, clock=clock) as scheduler:
        specs = [TaskSpec(name, CallableAction(step)) for name in ("a", "b")]
        specs.append(TaskSpec("c", CallableAction(step), dependencies=("a", "b")))
        job_id = scheduler.submit(JobSpec(tasks=tuple(specs)))
        tracker = scheduler.track(job_id)
        await wait_for(lambda: len(tracker.progress.running) == 2)
        await wait_for(lambda: all(t.fraction == 0.5 for t in tracker.progress.running))
        await clock.advance(10)
        progress = tracker.progress
        assert (progress.total, progress.done, progress.count(ST.PENDING)) == (3, 0, 1)
        assert [(t.task_id, t.attempt, t.message, t.output) for t in progress.running] == [
            ("a", 1, "half of a", "a line"),
            ("b", 1, "half of b", "a line"),
        ]
        # Two halves of three tasks: a third done, in 10 s, so 20 s to go at this pace.
        assert progress.fraction == pytest.approx(1 / 3)
        assert progress.elapsed == 10.0
        assert progress.remaining == pytest.approx(20.0)
        gate.set()
        final = await tracker.wait()
    assert final.state is JobState.SUCCEEDED and final.finished
    assert (final.done, final.fraction, final.remaining, final.running) == (3, 1.0, 0.0, ())
    assert final.elapsed == 10.0  # until it finished, however late it is read


def test_a_fold_ignores_events_it_already_has() -> None:
    """A replay that overlaps (a watch resumed after a reconnect) counts nothing twice."""

    async def run() -> list[list[Event]]:
        async with Scheduler() as scheduler:
            job_id = scheduler.submit(JobSpec(tasks=(TaskSpec("a", CallableAction(noop)),)))
            await scheduler.wait(job_id)
            return [batch async for batch in scheduler.watch(job_id)]

    (events,) = asyncio.run(run())
    fold = ProgressFold(events[0].job_id, 1)
    fold.apply(events[:3])
    fold.apply(events)
    assert fold.progress(0.0).counts[ST.SUCCEEDED] == 1
    assert sum(fold.progress(0.0).counts.values()) == 1


async def noop() -> None:
    await asyncio.sleep(0)


# -- the sources --------------------------------------------------------------------------------


async def gated(gate: asyncio.Event, fraction: float) -> str:
    report_progress(fraction, "working")
    await gate.wait()
    return "done"


async def test_an_executor_tracker_follows_its_next_job_as_it_runs() -> None:
    gate = asyncio.Event()
    async with ParallelTaskExecutor(max_concurrency=2) as executor:
        tracker = executor.track()  # before execute_all: it follows the job once it starts
        assert not tracker.started and tracker.progress.total == 0
        await executor.add_task(Task("a", gated, args=(gate, 0.25)))
        await executor.add_task(Task("b", gated, args=(gate, 0.75)))
        await executor.add_task(Task("c", noop), dependencies=["a"])
        seen: list[JobProgress] = []

        async def read() -> None:
            async for progress in tracker:
                seen.append(progress)
                if len(progress.running) == 2 and progress.fraction == (0.25 + 0.75) / 3:
                    gate.set()

        results, _ = await asyncio.wait_for(asyncio.gather(executor.execute_all(), read()), 10)
    assert all(r.succeeded for r in results.values())
    assert tracker.job_id == executor.job_id
    assert seen[0].total == 3 and seen[-1].state is JobState.SUCCEEDED
    assert seen[-1].count(ST.SUCCEEDED) == 3 and gate.is_set()


async def test_an_executor_tracker_made_while_it_runs_follows_the_running_job() -> None:
    gate = asyncio.Event()
    async with ParallelTaskExecutor() as executor:
        await executor.add_task(Task("a", gated, args=(gate, 0.5)))
        running = asyncio.create_task(executor.execute_all())
        await wait_for(lambda: executor.job_id is not None)
        tracker = executor.track()
        assert tracker.job_id == executor.job_id
        await wait_for(lambda: tracker.progress.running)
        gate.set()
        await running
        assert (await tracker.wait()).count(ST.SUCCEEDED) == 1


async def test_an_executor_tracker_sees_a_job_cancelled_at_its_start() -> None:
    async with ParallelTaskExecutor() as executor:
        await executor.add_task(Task("a", noop))
        tracker = executor.track()
        executor.cancel()
        await executor.execute_all()
    final = await asyncio.wait_for(tracker.wait(), 5)
    assert final.state is JobState.CANCELLED and final.count(ST.CANCELLED) == 1


async def test_an_assistant_tracker_follows_its_next_batch() -> None:
    attempts = 0

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RuntimeError("once")
        return "ok"

    async with AsyncAssistant(max_parallel_tasks=2) as assistant:
        tracker = assistant.track()
        retry = RetryPolicy(max_attempts=2, initial_backoff=0)
        results = await assistant.execute_tasks_in_parallel(
            [
                {"task_id": "flaky", "func": flaky, "retry": retry},
                {"task_id": "after", "func": noop, "dependencies": ["flaky"]},
            ]
        )
    assert results["after"].succeeded
    final = await asyncio.wait_for(tracker.wait(), 5)
    assert final.state is JobState.SUCCEEDED and final.count(ST.SUCCEEDED) == 2


async def test_a_tracker_of_a_finished_job_ends_at_once_and_close_ends_readers() -> None:
    async with Scheduler() as scheduler:
        job_id = scheduler.submit(JobSpec(tasks=(TaskSpec("a", CallableAction(noop)),)))
        await scheduler.wait(job_id)
        done = scheduler.track(job_id)
        assert [p.state for p in [p async for p in done]] == [JobState.SUCCEEDED]

        gate = asyncio.Event()
        live = scheduler.submit(JobSpec(tasks=(TaskSpec("a", CallableAction(gated, (gate, 0))),)))
        async with scheduler.track(live) as tracker:
            reader = asyncio.create_task(tracker.wait())
            await wait_for(lambda: tracker.progress.running)
        final = await asyncio.wait_for(reader, 5)  # closed: the reader ends, job still running
        assert final.state is JobState.RUNNING
        gate.set()
