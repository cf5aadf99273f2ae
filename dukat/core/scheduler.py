"""The scheduler: one long-lived object that runs many jobs' DAGs at once.

How a task moves (every change passes through `dukat.core._transitions`, which checks the
table in `states.py` and appends the event):

    PENDING --(upstreams done)--> READY --(picked, breaker allows, resources taken)--> RUNNING
    RUNNING --> SUCCEEDED | FAILED | CANCELLED, or RETRYING --(backoff)--> READY
    (an interrupted attempt, `TaskInterruptedError`, goes RETRYING -> READY at once)

Work per task is O(1) amortised plus its out-degree: a counter of unfinished upstreams per
task, a queue of ready tasks per job ordered by (priority, arrival), and a heap of jobs that
have ready tasks ordered by (best priority, virtual time) — the virtual time is what gives
jobs of equal priority a fair share, so a 100k-task job cannot starve a 3-task one.

`Scheduler` is the face: the public API, over rooms that each own one phase (`_intake`,
`_gates`, `_slots`, `_attempts`, `_endings`, `_restore`, `_retention` and `_drain`;
docs/architecture.md maps them). They are wired here, each given the functions of the others
it calls, so that a task's way through costs no more calls than it did in one class.
"""

from __future__ import annotations

import asyncio
import random
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any

from dukat.core._attempts import Attempts
from dukat.core._drain import close, drain
from dukat.core._endings import Endings
from dukat.core._gates import Gates
from dukat.core._holdings import Holdings
from dukat.core._intake import Intake
from dukat.core._reporter import Reporter
from dukat.core._requests import CancelRequest, JobEnding, PreparedJob
from dukat.core._restore import Restore
from dukat.core._retention import FinishedJobs, Retention
from dukat.core._runs import UNLIMITED, JobRun
from dukat.core._slots import Slots
from dukat.core._transitions import RecordListener, Transitions
from dukat.core.breaker import BreakerRegistry
from dukat.core.clock import Clock, SystemClock
from dukat.core.events import Event, event_of, watch_log
from dukat.core.progress import ProgressTracker
from dukat.core.resources import ResourcePool
from dukat.core.results import JobSnapshot, TaskResult, TaskStatus
from dukat.core.runners import CallableAction, InProcessRunner, Runner
from dukat.core.spec import JobSpec, TaskSpec
from dukat.core.states import JobState
from dukat.errors import NotFoundError, ValidationError

__all__ = ["CancelRequest", "JobEnding", "PreparedJob", "RecordListener", "Scheduler"]

EventListener = Callable[[Event], None]


class Scheduler:
    """Runs jobs: DAGs of tasks under a global concurrency limit, resources and breakers."""

    def __init__(
        self,
        *,
        max_concurrency: int = 64,
        resources: ResourcePool | None = None,
        breakers: BreakerRegistry | None = None,
        runners: Mapping[type, Runner] | None = None,
        clock: Clock | None = None,
        max_tasks_per_job: int = 1_000_000,
        event_log_length: int = 10_000,
        retain_finished_jobs: int = 1_000,
        finished_job_ttl: float | None = None,
        rng: random.Random | None = None,
        gc_hold_min_tasks: int | None = 5_000,
        hold_events: bool = False,
        max_tasks: int | None = None,
    ) -> None:
        """`retain_finished_jobs` / `finished_job_ttl`: finished jobs stay for `get_job`,
        `watch` and `jobs` until more than that many finished after them, or that many
        seconds of `clock` passed (None: no time limit); see `dukat.core._retention`.
        `max_tasks`: tasks held at most, of every job (None: no bound). A job that the
        unfinished ones (and those prepared) leave no room for is refused (`CapacityError`);
        finished jobs are dropped, oldest first, to make room for one that fits.
        `gc_hold_min_tasks`: see `dukat.core._gc`; None never touches the collector.
        `hold_events`: watchers see a job's events only once `publish` says they may (a
        journal publishes what it has written); listeners see them at once."""
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ValidationError(f"max_concurrency must be at least 1, not {max_concurrency!r}")
        self.clock: Clock = clock or SystemClock()
        self.resources = resources or ResourcePool()
        # `is None`, not `or`: an empty registry is falsy (it has a __len__) and is still meant.
        self.breakers = breakers if breakers is not None else BreakerRegistry(clock=self.clock)
        clock, resources, breakers = self.clock, self.resources, self.breakers
        holdings = self._holdings = Holdings(max_tasks)  # live jobs and tasks, under max_tasks
        transitions = Transitions(clock.wall)
        reporter = self._reporter = Reporter(transitions.record, clock.wall)
        slots = self._slots = Slots(max_concurrency, holdings)
        gates = self._gates = Gates(transitions, slots, resources, breakers, clock, reporter)
        rng = rng or random.Random()
        attempts = self._attempts = Attempts(transitions, gates, reporter, resources, clock, rng)
        finished = FinishedJobs(retain_finished_jobs, finished_job_ttl)
        retention = self._retention = Retention(finished, holdings, breakers, slots, clock)
        endings = self._endings = Endings(transitions, gates, attempts, clock, retention.job_ended)
        slots.wire(
            pick=gates.next_runnable, queued=gates.queued, begin=attempts.begin, end=attempts.end
        )
        gates.wire(attempt_failed=attempts.failed)
        attempts.wire(finish=endings.finish)
        self._intake = Intake(
            transitions,
            gates,
            endings,
            retention,
            holdings,
            breakers,
            resources,
            {CallableAction: InProcessRunner(), **(runners or {})},
            clock,
            max_tasks_per_job=max_tasks_per_job,
            log_settings=(event_log_length, hold_events),
            gc_hold_min_tasks=UNLIMITED if gc_hold_min_tasks is None else gc_hold_min_tasks,
        )
        self._restore = Restore(self._intake, gates, attempts, endings, retention)
        self.breakers.add_listener(gates.on_breaker_transition)
        # The rooms' own tables, under the names they always had here.
        self._jobs = retention.jobs
        self._runners = self._intake.runners
        self._listeners = transitions.listeners  # event listeners too, adapted
        self._event_listeners: dict[EventListener, RecordListener] = {}

    # -- what it is set up with, and holds --------------------------------------------------

    @property
    def max_concurrency(self) -> int:
        return self._slots.max_concurrency

    @property
    def max_tasks_per_job(self) -> int:
        return self._intake.max_tasks_per_job

    @property
    def retain_finished_jobs(self) -> int:
        """How many finished jobs are held at most (the newest)."""
        return self._retention.finished.limit

    @property
    def finished_job_ttl(self) -> float | None:
        """Seconds a finished job is held at most, or None for no time limit."""
        return self._retention.finished.ttl

    @property
    def max_tasks(self) -> int | None:
        """Tasks held at most, of every job (None: no bound); see `dukat.core._holdings`."""
        return self._holdings.limit

    @property
    def tasks_held(self) -> int:
        """Tasks of every job held: unfinished, prepared and not started yet, and finished."""
        held = self._holdings
        return held.live_tasks + held.prepared_tasks + self._retention.finished.tasks

    @property
    def live_jobs(self) -> int:
        """Jobs held that have not finished."""
        return self._holdings.live_jobs

    @property
    def held_jobs(self) -> int:
        """Jobs held: live ones and finished ones kept for `get_job`, `watch` and `jobs`."""
        return len(self._jobs)

    @property
    def gc_hold_min_tasks(self) -> int | None:
        """The size from which a job holds the collector off its records (`dukat.core._gc`)."""
        threshold = self._intake.gc_hold_min_tasks
        return None if threshold == UNLIMITED else threshold

    @property
    def running(self) -> int:
        """Attempts in progress."""
        return self._attempts.running

    @property
    def interruptions(self) -> dict[str, int]:
        """Attempts interrupted so far, by `TaskInterruptedError.cause` (for metrics)."""
        return self._attempts.interruptions

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the tasks run on (the one the scheduler was first used on)."""
        return self._reporter.loop

    # -- runners and listeners --------------------------------------------------------------

    def add_runner(self, action_type: type, runner: Runner) -> None:
        """Run actions of `action_type` with `runner`."""
        self._runners[action_type] = runner

    def add_listener(self, listener: EventListener) -> None:
        """Call `listener(event)` for every event of every job (journals, logs, watchers)."""
        self._event_listeners[listener] = adapter = partial(_as_event, listener)
        self._listeners.append(adapter)

    def remove_listener(self, listener: EventListener) -> None:
        self._listeners.remove(self._event_listeners.pop(listener))

    def add_record_listener(self, listener: RecordListener) -> None:
        """Call `listener(job_id, record)` for every event of every job, as its raw record.

        For listeners that see every task go by and want little of each (metrics): an
        `Event` object is built only for `add_listener`'s listeners, and building one costs
        more than most such listeners do. Treat the record as read-only.
        """
        self._listeners.append(listener)

    def remove_record_listener(self, listener: RecordListener) -> None:
        self._listeners.remove(listener)

    def add_drop_listener(self, listener: Callable[[str], None]) -> None:
        """Call `listener(job_id)` when a finished job is dropped (retention, `forget`)."""
        self._retention.drop_listeners.append(listener)

    # -- jobs coming in ---------------------------------------------------------------------

    def submit(
        self, spec: JobSpec, *, job_id: str | None = None, rerun_of: str | None = None
    ) -> str:
        """Validate a whole job and start it; returns its id. Nothing is kept if it is invalid.

        `rerun_of`: a finished job this one runs again from where it failed. Its tasks
        that SUCCEEDED there doing the same work, with every upstream carried over too, are
        carried over: SUCCEEDED at once with their results, attempts and times (their
        `TaskStatus.carried_from`, and an event "carried over from job J"), and their
        dependents ready as if they had just succeeded; the rest run (see
        `dukat.core._rerun`). `spec` may be the old job's own (`job_spec`) or a corrected
        one. NotFoundError if the scheduler does not hold that job, ValueError if it has
        not finished. The old job is left as it was.
        """
        return self.start(self._prepare(spec, job_id, rerun_of, starting=True))

    def prepare(
        self, spec: JobSpec, *, job_id: str | None = None, rerun_of: str | None = None
    ) -> PreparedJob:
        """Validate a whole job and build it, without starting it: `start` does.

        For a host that must make the job durable before anything of it runs (a rerun's
        carried-over outcomes too: `PreparedJob.carried`). Its tasks count against
        `max_tasks`, and it claims its breakers, from now on: `abandon` a prepared job that
        will not start. `rerun_of`: as `submit`'s.
        """
        return self._prepare(spec, job_id, rerun_of, starting=False)

    def abandon(self, prepared: PreparedJob) -> None:
        """Let go of a prepared job that will not start: its room under `max_tasks` and its
        breakers. A no-op once it started, and the second time."""
        self._intake.abandon(prepared)

    def _prepare(
        self, spec: JobSpec, job_id: str | None, rerun_of: str | None, *, starting: bool
    ) -> PreparedJob:
        self._check_open()
        self._bind_loop()
        return self._intake.prepare(spec, job_id or uuid.uuid4().hex, rerun_of, starting=starting)

    def start(self, prepared: PreparedJob) -> str:
        """Start a job made by `prepare`; returns its id.

        All or nothing: if it fails half-way (a `MemoryError`), the job is taken back whole
        before the error goes on (its drop listeners hear of it), and nothing of it runs."""
        self._check_open()
        return self._intake.start(prepared)

    def restore(
        self,
        spec: JobSpec,
        *,
        job_id: str,
        created_at: float,
        tasks: Iterable[TaskStatus] = (),
        events: Sequence[tuple[Any, ...]] = (),
        last_sequence: int = 0,
        ended: JobEnding | None = None,
        cancels: Iterable[CancelRequest] = (),
    ) -> str:
        """Bring back a job that a previous scheduler ran (a daemon's journal, after a restart).

        `tasks`: what is known of each task — a terminal one keeps its outcome and never
        runs again; one that was RUNNING at its `attempts` lost that attempt to the restart,
        an interruption like any other (`TaskInterruptedError`, "the daemon restarted"): it
        runs again at once if its `max_interruptions` allow, its earlier `interruptions`
        counted; one that was RETRYING runs again at once; the others start over. One a
        rerun carried over (`carried_from`) stays so, and a job that had not started yet
        tells of it in its events as `start` does.
        `events`: the tail of its event log, as records, ending at `last_sequence`; new
        events continue from there. `ended`: the
        job had finished (it is held for retention, as it was). `cancels`: the cancel
        requests it had had, applied before anything runs: a task that was being cancelled
        ends CANCELLED, not interrupted, and keeps the request's reason. See
        `dukat.core._restore`.
        """
        self._check_open()
        self._bind_loop()
        self._restore.restore(
            spec, job_id, created_at, tasks, events, last_sequence, ended, cancels
        )
        return job_id

    def publish(self, job_id: str, sequence: int) -> None:
        """Let watchers of a held job (`hold_events`) see its events up to `sequence`.

        A job dropped meanwhile (retention, `forget`) is published to as well: its watchers
        hold on to it until they have seen its end."""
        self._retention.publish(job_id, sequence)

    # -- reading and waiting ----------------------------------------------------------------

    async def wait(self, job_id: str) -> JobState:
        """Wait until the job is finished; return its final state."""
        job = self._job(job_id)
        await job.finished()
        return job.state

    async def wait_results(self, job_id: str) -> dict[str, TaskResult]:
        """Wait until the job is finished; return every task's outcome by id.

        Holds on to the job while waiting, so its results are there even if retention has
        dropped the job from the scheduler by the time this caller runs again.
        """
        job = self._job(job_id)
        await job.finished()
        return self._outcomes(job)

    def cancel(self, job_id: str, task_ids: Iterable[str] = (), *, reason: str = "") -> int:
        """Cancel a whole job, or the given tasks with everything downstream of them.

        Idempotent; returns how many tasks this call cancelled. Running attempts are
        interrupted (`CancelledError`); their slots and resources come back when they stop.
        `reason`, in words, is kept in the cancelled tasks' messages (`cancelled: <reason>`)
        and in the job's, unless an earlier cancel of the job gave one.
        """
        job = self._job(job_id)
        task_ids = list(task_ids)
        if task_ids:
            unknown = [task_id for task_id in task_ids if task_id not in job.tasks]
            if unknown:
                raise NotFoundError(f"job {job_id!r} has no task {unknown[0]!r}")
        return self._endings.cancel_request(job, CancelRequest(tuple(task_ids), reason))

    def get_job(self, job_id: str) -> JobSnapshot:
        self._retention.evict()
        return self._job(job_id).snapshot()

    def job_state(self, job_id: str) -> JobState:
        """The job's state, without building a snapshot of every task."""
        return self._job(job_id).state

    def job_spec(self, job_id: str) -> JobSpec:
        """The spec the job was submitted with (to rerun it as it was)."""
        self._retention.evict()
        return self._job(job_id).spec

    def task_result(self, job_id: str, task_id: str) -> Any:
        """A task's result, in O(1), for listeners (a journal): the value of a SUCCEEDED one,
        the `TaskFailure` of a FAILED one, else None."""
        return self._job(job_id).tasks[task_id].result

    def task_interruptions(self, job_id: str, task_id: str) -> int:
        """A task's interruptions so far, in O(1): for listeners (a journal)."""
        return self._job(job_id).tasks[task_id].interruptions

    def task_spec(self, job_id: str, task_id: str) -> TaskSpec:
        """A task's spec, in O(1): for listeners that label by action (metrics)."""
        return self._job(job_id).tasks[task_id].spec

    def jobs(
        self, *, state: JobState | None = None, labels: Mapping[str, str] | None = None
    ) -> list[JobSnapshot]:
        """The jobs held (live and recently finished), oldest first, without their tasks."""
        self._retention.evict()
        found = []
        for job in self._jobs.values():
            if state is not None and job.state is not state:
                continue
            if labels and any(job.labels.get(k) != v for k, v in labels.items()):
                continue
            found.append(job.snapshot(with_tasks=False))
        return found

    def results(self, job_id: str) -> dict[str, TaskResult]:
        """Every task's outcome so far, by id."""
        return self._outcomes(self._job(job_id))

    def track(self, job_id: str) -> ProgressTracker:
        """A tracker of the job's progress, current as it runs (`dukat.core.progress`)."""
        tracker = ProgressTracker()
        tracker.follow(self, job_id)
        return tracker

    def forget(self, job_id: str) -> None:
        """Drop a finished job from memory."""
        job = self._job(job_id)
        if not job.state.is_terminal:
            raise ValueError(f"job {job_id!r} is still {job.state.value}; cancel it first")
        self._retention.forget(job)

    async def watch(
        self, job_id: str, after_sequence: int = 0, *, max_batch: int = 1_000
    ) -> AsyncIterator[list[Event]]:
        """The job's events after `after_sequence`, in batches, live until the job ends.

        A watcher whose cursor fell out of the bounded log gets a `Snapshot` first.
        """
        if after_sequence < 0:
            raise ValidationError(f"after_sequence must be 0 or more, not {after_sequence!r}")
        job = self._job(job_id)
        async for batch in watch_log(
            job.log, job.snapshot, self.clock.wall, after_sequence, max_batch
        ):
            yield batch

    # -- stopping ---------------------------------------------------------------------------

    async def drain(
        self, grace: float, *, before_cancel: Callable[[], object] | None = None
    ) -> int:
        """Start nothing new; let running attempts end within `grace` seconds of the clock,
        then cancel those still running. Returns how many it cancelled.

        `before_cancel()` is called once the waiting is over, before anything is cancelled
        (a journal stops recording there: the cancelled attempts are to run again later).

        Ready tasks stay READY, and so do tasks that become ready meanwhile (their
        upstreams finished, a retry's backoff ran out, their runner admitted them): nothing
        new starts from here on, and jobs may still be submitted, to wait likewise. Returns
        once no attempt runs, or once the grace is over and the running ones were asked to
        stop (without waiting for them: `close` does, within its own grace). Then `close`.
        """
        jobs = self._jobs.values()
        return await drain(self._slots, self._endings, jobs, self.clock, grace, before_cancel)

    async def close(self, grace: float | None = None) -> None:
        """Cancel every job, wait up to `grace` seconds for running tasks, stop the slots."""
        if not self._slots.closed:
            # A registry shared with others outlives this scheduler: it must not keep it.
            self.breakers.remove_listener(self._gates.on_breaker_transition)
        await close(self._slots, self._endings, self._jobs.values(), grace)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._jobs

    async def __aenter__(self) -> Scheduler:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return (
            f"<Scheduler running:{self.running}/{self.max_concurrency} jobs:"
            f"{self._holdings.live_jobs} live, {len(self._jobs)} held "
            f"queued:{self._gates.fair.queued}>"
        )

    def _check_open(self) -> None:
        if self._slots.closed:
            raise RuntimeError("the scheduler is closed")

    def _bind_loop(self) -> None:
        loop = asyncio.get_running_loop()
        reporter = self._reporter
        if reporter.loop is None:
            reporter.loop, reporter.loop_thread = loop, threading.get_ident()
            self._slots.loop = loop
        elif loop is not reporter.loop:
            raise RuntimeError("a Scheduler serves the event loop it was first used on")

    def _outcomes(self, job: JobRun) -> dict[str, TaskResult]:
        return job.outcomes(big=len(job.tasks) >= self._intake.gc_hold_min_tasks)

    def _job(self, job_id: str) -> JobRun:
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"no job {job_id!r}")
        return job


def _as_event(listener: EventListener, job_id: str, record: tuple[Any, ...]) -> None:
    """An event listener behind the record listeners' list: builds the `Event` it wants."""
    listener(event_of(record, job_id))
