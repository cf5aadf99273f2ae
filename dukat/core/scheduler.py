"""The scheduler: one long-lived object that runs many jobs' DAGs at once.

How a task moves (every change passes through `_transition`, which checks the table in
`states.py` and appends the event):

    PENDING --(upstreams done)--> READY --(picked, breaker allows, resources taken)--> RUNNING
    RUNNING --> SUCCEEDED | FAILED | CANCELLED, or RETRYING --(backoff)--> READY
    (an interrupted attempt, `TaskInterruptedError`, goes RETRYING -> READY at once; `_interrupted`)

Work per task is O(1) amortised plus its out-degree: a counter of unfinished upstreams per
task, a queue of ready tasks per job ordered by (priority, arrival), and a heap of jobs that
have ready tasks ordered by (best priority, virtual time) — the virtual time is what gives
jobs of equal priority a fair share, so a 100k-task job cannot starve a 3-task one.

Execution slots are `max_concurrency` worker coroutines, started on demand, that pick the
next runnable task and run its attempt through the runner registered for its action type.
A task waiting for its runner's admission (`runners.Runner`), for resources or for its
breaker waits outside the slots, READY: its RUNNING state and its timeout start in a slot.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import threading
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any

from dukat.core._build import build_job, runners_for
from dukat.core._fair_share import FairShare
from dukat.core._gc import gc_paused, hold_gc, promote_new
from dukat.core._holdings import Holdings
from dukat.core._rerun import carried_over
from dukat.core._restore import (
    CancelRequest,
    JobEnding,
    PreparedJob,
    apply_outcomes,
    failed_upstream,
    settle_pending,
)
from dukat.core._retention import FinishedJobs
from dukat.core._runs import UNLIMITED, JobRun, TaskRun, Worker
from dukat.core.breaker import BreakerRegistry, BreakerTransition
from dukat.core.clock import Clock, SystemClock
from dukat.core.context import TaskContext, _current
from dukat.core.events import (
    CARRIED,
    INTERRUPTED,
    Event,
    EventLog,
    JobStateChanged,
    Snapshot,
    TaskOutput,
    TaskProgress,
    TaskStateChanged,
    TaskWaiting,
    event_of,
)
from dukat.core.progress import ProgressTracker
from dukat.core.resources import ResourcePool
from dukat.core.results import JobSnapshot, TaskFailure, TaskResult, TaskStatus
from dukat.core.runners import CallableAction, InProcessRunner, Runner
from dukat.core.spec import JobSpec, TaskSpec, validate_job
from dukat.core.states import (
    _FAILED,
    _PENDING,
    _READY,
    _RUNNING,
    _SUCCEEDED,
    JOB_TRANSITIONS,
    TASK_TRANSITIONS,
    JobState,
    TaskState,
)
from dukat.errors import (
    FieldViolation,
    NotFoundError,
    TaskFailedRemotely,
    TaskInterruptedError,
    TaskTimeoutError,
    ValidationError,
)

__all__ = ["CancelRequest", "JobEnding", "PreparedJob", "Scheduler"]

EventListener = Callable[[Event], None]
RecordListener = Callable[[str, tuple[Any, ...]], None]
"""`listener(job_id, record)`: an event in its compact form, `(EventClass, sequence, time,
*the class's own fields)` (see `EventLog`), for listeners on the hot path (metrics)."""

_TIMEOUT = "timeout"
_CAUSES = frozenset(TaskInterruptedError.CAUSES)
_YIELD_EVERY = 64
_CANCELLED = "cancelled"


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
        event_log_limit: int = 10_000,
        retain_finished_jobs: int = 1_000,
        retain_finished_for: float | None = None,
        rng: random.Random | None = None,
        gc_hold_min_tasks: int | None = 5_000,
        hold_events: bool = False,
        max_tasks: int | None = None,
    ) -> None:
        """`retain_finished_jobs` / `retain_finished_for`: finished jobs stay for `get_job`,
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
        self.max_concurrency = max_concurrency
        self.clock: Clock = clock or SystemClock()
        self._wall = self.clock.wall
        self.resources = resources or ResourcePool()
        # `is None`, not `or`: an empty registry is falsy (it has a __len__) and is still meant.
        self.breakers = breakers if breakers is not None else BreakerRegistry(clock=self.clock)
        self.breakers.add_listener(self._on_breaker_transition)
        self._runners: dict[type, Runner] = {CallableAction: InProcessRunner(), **(runners or {})}
        self.max_tasks_per_job = max_tasks_per_job
        # (length, held) of each job's event log. One attribute for two: past 30, CPython's
        # instances lose their fast attribute lookups, and the hot path reads many.
        self._log_settings = (event_log_limit, hold_events)
        self._rng = rng or random.Random()
        self._gc_hold_min_tasks = UNLIMITED if gc_hold_min_tasks is None else gc_hold_min_tasks

        self._jobs: dict[str, JobRun] = {}
        self._finished = FinishedJobs(retain_finished_jobs, retain_finished_for)
        # Held logs of dropped jobs not yet published to their end: their watchers still
        # wait for `publish` to show them the rest (the terminal event, at least).
        self._unpublished: dict[str, EventLog] = {}
        self._holdings = Holdings(max_tasks)  # live jobs and tasks, under max_tasks
        self._job_order = itertools.count()
        self._fair = FairShare()
        self._granted: deque[TaskRun] = deque()  # hold their resources, wait for a slot
        self._parked: dict[str, list[TaskRun]] = {}  # breaker name -> tasks waiting for it
        self._breaker_timers: dict[str, Any] = {}
        self._workers: set[Worker] = set()
        self._idle: deque[tuple[asyncio.Future[bool], Worker]] = deque()
        self._wake_scheduled = False
        self.running = 0  # attempts in progress
        # Attempts interrupted so far, by `TaskInterruptedError.cause` (for metrics).
        self.interruptions: dict[str, int] = dict.fromkeys(TaskInterruptedError.CAUSES, 0)
        self._listeners: list[RecordListener] = []  # event listeners too, adapted
        self._event_listeners: dict[EventListener, RecordListener] = {}
        self._drop_listeners: list[Callable[[str], None]] = []
        self._closed = False
        self._draining = False
        # What a worker calls to pick its next task. `drain` swaps in one that finds nothing:
        # a switch the hot path reads anyway, where a flag would cost every pick.
        self._pick: Callable[[], TaskRun | None] = self._next_runnable
        self.loop: asyncio.AbstractEventLoop | None = None  # the loop the tasks run on
        self.loop_thread = 0  # and its thread, to tell a report from a worker thread

    # -- public API -------------------------------------------------------------------------

    @property
    def retain_finished_jobs(self) -> int:
        """How many finished jobs are held at most (the newest)."""
        return self._finished.limit

    @property
    def retain_finished_for(self) -> float | None:
        """Seconds a finished job is held at most, or None for no time limit."""
        return self._finished.ttl

    @property
    def max_tasks(self) -> int | None:
        """Tasks held at most, of every job (None: no bound); see `dukat.core._holdings`."""
        return self._holdings.limit

    @property
    def tasks_held(self) -> int:
        """Tasks of every job held: unfinished, prepared and not started yet, and finished."""
        held = self._holdings
        return held.live_tasks + held.prepared_tasks + self._finished.tasks

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
        threshold = self._gc_hold_min_tasks
        return None if threshold == UNLIMITED else threshold

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
        self._drop_listeners.append(listener)

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
        job = prepared.job
        self._holdings.unprepare(job)
        if self._jobs.get(job.id) is not job:
            self.breakers.release(job.breakers)
            job.breakers = ()

    def _prepare(
        self, spec: JobSpec, job_id: str | None, rerun_of: str | None, *, starting: bool
    ) -> PreparedJob:
        if self._closed:
            raise RuntimeError("the scheduler is closed")
        self._bind_loop()
        # Found before the room is made, which may drop it: its records stay readable.
        before = None if rerun_of is None else self._finished_job(rerun_of)
        positions = validate_job(spec, max_tasks=self.max_tasks_per_job)
        self._holdings.check_room(len(positions))
        self._evict_finished(room=len(positions))  # before the id check: it may free the id
        job_id = job_id or uuid.uuid4().hex
        self._check_new_id(job_id)
        job = self._build(spec, job_id, self.clock.wall(), positions, hold_gc_now=starting)
        carried = () if before is None else tuple(carried_over(before, job))
        apply_outcomes(job, carried)
        self._holdings.prepare(job, len(job.tasks))
        return PreparedJob(job_id, spec, job, carried)

    def _finished_job(self, job_id: str) -> JobRun:
        """The finished job a rerun carries over from."""
        self._evict_finished()  # an expired job is not there to rerun
        job = self._job(job_id)
        if not job.state.is_terminal:
            raise ValueError(
                f"job {job_id!r} is still {job.state.value}; cancel it or wait for it to end"
            )
        return job

    def start(self, prepared: PreparedJob) -> str:
        """Start a job made by `prepare`; returns its id.

        All or nothing: if it fails half-way (a `MemoryError`), the job is taken back whole
        before the error goes on (its drop listeners hear of it), and nothing of it runs."""
        if self._closed:
            raise RuntimeError("the scheduler is closed")
        job = prepared.job
        self._check_new_id(job.id)
        self._holdings.unprepare(job)  # it is counted live from here
        self._admit_job(job)
        try:
            self._begin(job)
            if job.carried:  # their dependents wait on those that run only
                for run in settle_pending(job):
                    self._make_ready(run)
                self._maybe_finish_job(job)  # nothing was left to run
            else:
                for run in job.tasks.values():
                    if run.waiting_on == 0:
                        self._make_ready(run)
        except BaseException:
            self._take_back(job)
            raise
        return job.id

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
        if self._closed:
            raise RuntimeError("the scheduler is closed")
        self._bind_loop()
        self._check_new_id(job_id)
        positions = validate_job(spec, max_tasks=self.max_tasks_per_job)
        # Accepted once, it must come back: past the breakers' limit if need be, and with
        # what this scheduler cannot run failing as it is picked (`_build.Unrunnable`).
        job = self._build(spec, job_id, created_at, positions, restoring=True)
        job.log.restore(list(events), last_sequence)
        job.sequence = last_sequence
        if last_sequence:
            job.state = JobState.RUNNING  # it had started: its log says so already
        resumed = apply_outcomes(job, tasks)
        if ended is not None:
            self._restore_ended(job, ended)
            return job_id
        self._admit_job(job)
        if job.state is JobState.PENDING:  # accepted, and gone before it started
            self._begin(job)
        for request in cancels:
            self._cancel_restored(job, request)
        settled = settle_pending(job)
        for run in resumed:  # unless cancelled just now
            if run.state is TaskState.RUNNING:
                self._resume_interrupted(run)
            elif run.state is TaskState.RETRYING:  # its attempt had ended: on to the next
                self._retry_now(run)
        for run in settled:
            if run.state is not TaskState.PENDING:
                continue  # ended by what an interrupted task's failure propagated
            upstream = failed_upstream(run)
            if upstream is None or run.all_done:
                self._make_ready(run)
            else:
                reason = f"upstream {upstream.id!r} {upstream.state.value}"
                self._terminate(run, TaskState.SKIPPED, message=reason)
                self._propagate_failure(run)
        if job.counts[TaskState.FAILED] and job.spec.fail_fast and not job.cancel_requested:
            job.cancel_requested = True
            self._cancel_runs(job, list(job.tasks.values()), "fail_fast: a task had failed")
        self._maybe_finish_job(job)
        return job_id

    def _begin(self, job: JobRun) -> None:
        """Set a job RUNNING, and tell of the tasks a rerun carried over: each one's event
        has its time (when it ended in the job it comes from) and says where from."""
        carried = job.carried
        if not carried:
            self._transition_job(job, JobState.RUNNING, f"{len(job.tasks)} tasks")
            return
        source = next(iter(carried.values()))  # the job it reruns, the same for each
        self._transition_job(
            job, JobState.RUNNING, f"{len(job.tasks)} tasks, {len(carried)} {CARRIED}{source}"
        )
        tasks = job.tasks
        for task_id in carried:
            run = tasks[task_id]
            job.sequence += 1
            record = (
                TaskStateChanged,
                job.sequence,
                run.finished_at,
                task_id,
                _SUCCEEDED,
                run.attempts,
                run.message,
            )
            self._record(job, record)

    def publish(self, job_id: str, sequence: int) -> None:
        """Let watchers of a held job (`hold_events`) see its events up to `sequence`.

        A job dropped meanwhile (retention, `forget`) is published to as well: its watchers
        hold on to it until they have seen its end."""
        job = self._jobs.get(job_id)
        if job is not None:
            job.log.publish(sequence)
            return
        log = self._unpublished.get(job_id)
        if log is not None:
            log.publish(sequence)
            if log.ended:
                del self._unpublished[job_id]

    async def wait(self, job_id: str) -> JobState:
        """Wait until the job is finished; return its final state."""
        job = self._job(job_id)
        await self._until_done(job)
        return job.state

    async def wait_results(self, job_id: str) -> dict[str, TaskResult]:
        """Wait until the job is finished; return every task's outcome by id.

        Holds on to the job while waiting, so its results are there even if retention has
        dropped the job from the scheduler by the time this caller runs again.
        """
        job = self._job(job_id)
        await self._until_done(job)
        return self._outcomes(job)

    async def _until_done(self, job: JobRun) -> None:
        if not job.state.is_terminal:
            if job.done is None:
                job.done = asyncio.get_running_loop().create_future()
            await asyncio.shield(job.done)

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
        return self._cancel_request(job, CancelRequest(tuple(task_ids), reason))

    def get_job(self, job_id: str) -> JobSnapshot:
        self._evict_finished()
        return self._job(job_id).snapshot()

    def job_state(self, job_id: str) -> JobState:
        """The job's state, without building a snapshot of every task."""
        return self._job(job_id).state

    def job_spec(self, job_id: str) -> JobSpec:
        """The spec the job was submitted with (to rerun it as it was)."""
        self._evict_finished()
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
        self._evict_finished()
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
        self._finished.discard(job_id)
        self._drop(job)

    async def watch(
        self, job_id: str, after_sequence: int = 0, *, max_batch: int = 1_000
    ) -> AsyncIterator[list[Event]]:
        """The job's events after `after_sequence`, in batches, live until the job ends.

        A watcher whose cursor fell out of the bounded log gets a `Snapshot` first.
        """
        if after_sequence < 0:
            raise ValidationError(f"after_sequence must be 0 or more, not {after_sequence!r}")
        job = self._job(job_id)
        log = job.log
        cursor = after_sequence
        while True:
            batch = log.read(cursor, max_batch)
            if batch is None:
                snapshot = job.snapshot()
                cursor = snapshot.last_sequence
                while log.visible_sequence < cursor:  # held: show no state before it is
                    await log.wait(log.visible_sequence)
                yield [Snapshot(cursor, job.id, self.clock.wall(), snapshot)]
            elif batch:
                cursor = batch[-1].sequence
                yield batch
            elif log.ended:
                return
            else:
                await log.wait(cursor)

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
        if not isinstance(grace, int | float) or not grace >= 0 or not math.isfinite(grace):
            raise ValidationError(f"grace must be a finite number of seconds >= 0, not {grace!r}")
        self._draining = True
        self._pick = _nothing_to_pick
        self._retire_idle()  # idle workers end now; busy ones after their attempt
        busy = {worker.task for worker in self._workers if worker.task is not None}
        if busy:
            over = asyncio.get_running_loop().create_future()
            timer = self.clock.call_later(grace, _resolve, over)
            try:
                while busy and not over.done():
                    _, busy = await asyncio.wait(busy | {over}, return_when=asyncio.FIRST_COMPLETED)
                    busy.discard(over)
            finally:
                timer.cancel()
        if before_cancel is not None:
            before_cancel()
        cancelled = 0
        for job in list(self._jobs.values()):
            if job.state.is_terminal:
                continue
            running = [run for run in job.tasks.values() if run.state is TaskState.RUNNING]
            if running:
                cancelled += self._cancel_runs(job, running, "cancelled: the drain's grace ran out")
        return cancelled

    async def close(self, grace: float | None = None) -> None:
        """Cancel every job, wait up to `grace` seconds for running tasks, stop the workers."""
        if not self._closed:
            # A registry shared with others outlives this scheduler: it must not keep it.
            self.breakers.remove_listener(self._on_breaker_transition)
        self._closed = True
        for job in list(self._jobs.values()):
            if not job.state.is_terminal:
                self.cancel(job.id)
        self._retire_idle()
        tasks = [worker.task for worker in self._workers if worker.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._jobs

    async def __aenter__(self) -> Scheduler:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return (
            f"<Scheduler running:{self.running}/{self.max_concurrency} jobs:"
            f"{self._holdings.live_jobs} live, {len(self._jobs)} held queued:{self._fair.queued}>"
        )

    def _bind_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self.loop is None:
            self.loop, self.loop_thread = loop, threading.get_ident()
        elif loop is not self.loop:
            raise RuntimeError("a Scheduler serves the event loop it was first used on")

    # -- state changes ----------------------------------------------------------------------

    def _record(self, job: JobRun, record: tuple[Any, ...]) -> None:
        """Append `(EventClass, sequence, time, *fields)` to the job's log; tell listeners."""
        job.log.append(record)
        for listener in self._listeners:
            listener(job.id, record)

    def _transition(
        self, run: TaskRun, to: TaskState, message: str = "", moment: float | None = None
    ) -> None:
        """The one place a task changes state: check the table, swap, record the event.

        `moment`: the time the task keeps for it (its start or end), to be the event's too:
        a journal keeps the event's, and a restart must show the same time as before it."""
        if to not in TASK_TRANSITIONS[run.state]:
            raise RuntimeError(f"task {run.id!r}: {run.state.name} -> {to.name} is not allowed")
        run.state = to
        job = run.job
        job.sequence = sequence = job.sequence + 1
        if moment is None:
            moment = self._wall()
        record = (TaskStateChanged, sequence, moment, run.id, to, run.attempts, message)
        log = job.log
        # EventLog.append, inline: three of these happen for every task. The record is as
        # wide as the log's (RECORD_WIDTH), so it needs no padding.
        log.items.extend(record)
        if sequence >= log.full_at or log.waiters:
            log.appended()
        for listener in self._listeners:  # _record's work, inline too
            listener(job.id, record)

    def _transition_job(
        self, job: JobRun, to: JobState, message: str = "", moment: float | None = None
    ) -> None:
        if to not in JOB_TRANSITIONS[job.state]:
            raise RuntimeError(f"job {job.id!r}: {job.state.name} -> {to.name} is not allowed")
        job.state = to
        job.message = message
        job.sequence += 1
        moment = self._wall() if moment is None else moment
        self._record(job, (JobStateChanged, job.sequence, moment, to, message))

    def report(self, run: TaskRun, attempt: int, kind: str, payload: Any) -> None:
        """Progress and output from inside an attempt (ignored once the attempt is over)."""
        if run.state is not TaskState.RUNNING or run.attempts != attempt:
            return
        job = run.job
        job.sequence += 1
        if kind == "progress":
            job.progress[run.id] = payload
            kind_of_event: type[Event] = TaskProgress
        else:
            kind_of_event = TaskOutput
        self._record(job, (kind_of_event, job.sequence, self._wall(), run.id, *payload))

    def waiting(self, run: TaskRun, attempt: int, waiting_for: str, queue: str = "") -> None:
        """A READY task waits for something that may never come by itself (its runner says
        so, from `admit`): a `TaskWaiting` event, once per task."""
        if run.state is not TaskState.READY or run.attempts + 1 != attempt or run.said_waiting:
            return
        run.said_waiting = True
        job = run.job
        job.sequence += 1
        self._record(job, (TaskWaiting, job.sequence, self._wall(), run.id, waiting_for, queue))

    # -- ready queues and fair share --------------------------------------------------------

    def _make_ready(self, run: TaskRun, message: str = "", moment: float | None = None) -> None:
        self._transition(run, _READY, message, moment)
        self._fair.push(run)
        if not self._wake_scheduled:
            self._schedule_wake()

    def _next_runnable(self) -> TaskRun | None:
        """The next task that can start now, holding its resources and its breaker permit.

        Its runner's admission first, then resources, the breaker last: a task waiting for a
        remote worker holds no resources, and a permit is only taken for a call about to
        start, so a waiting task never holds one of the few half-open trial places. A task
        that waits for any of them stays READY outside the slots (in flight for its job's
        limit) and comes back through `_granted`.
        """
        while True:
            if self._granted:
                run = self._granted.popleft()
                if run.state is not TaskState.READY:
                    continue
                # Back from admission, it may have resources still to take.
                if not run.holds_resources and run.spec.resources and not self._reserve(run):
                    continue
            else:
                run = self._fair.pop()
                if run is None:
                    return None
                if run.gated and not self._pass_gates(run):
                    continue
            if run.breaker is not None:
                permit = run.breaker.acquire()
                if permit is None:
                    if run.holds_resources:
                        run.holds_resources = False
                        self.resources.release_nowait(run.pool_key)
                    self._leave_flight(run)
                    self._refused_by_breaker(run)
                    continue
                run.permit = permit
            return run

    def _pass_gates(self, run: TaskRun) -> bool:
        """Admission, then resources; False: the task waits for one of them (or failed)."""
        admit = run.admit
        if admit is not None:
            try:
                admission = admit(TaskContext(self, run, run.attempts + 1))
            except Exception as error:  # the runner's bug: this attempt fails, not the worker
                self._leave_flight(run)
                run.attempts += 1
                self._attempt_failed(run, error)
                return False
            if admission is not None and not admission.done():
                run.admission = admission
                admission.add_done_callback(partial(self._on_admitted, run))
                return False
        return not run.spec.resources or self._reserve(run)

    def _on_admitted(self, run: TaskRun, admission: asyncio.Future[Any]) -> None:
        if run.admission is not admission:
            return  # let go while it waited (`_let_go` cancelled it): nothing to undo
        run.admission = None
        # However it ended, it admits: a runner that drops its waiters (shutting down) must
        # not strand their tasks, and the attempt's `run` reports what is really wrong.
        self._granted.append(run)
        self._schedule_wake()

    def _reserve(self, run: TaskRun) -> bool:
        """Take the task's resources (True), or leave it waiting for them (False)."""
        future = self.resources.reserve(
            run.pool_key, run.spec.resources, priority=run.spec.priority
        )
        if not future.done():
            run.reservation = future
            future.add_done_callback(partial(self._on_granted, run))
            return False
        run.holds_resources = True
        return True

    def _on_granted(self, run: TaskRun, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or run.reservation is not future:
            return  # let go while the grant was on its way: `_let_go` gave it back
        run.reservation = None
        if run.state is not TaskState.READY:  # cancelled while the grant was on its way
            self.resources.release_nowait(run.pool_key)
            return
        run.holds_resources = True
        self._granted.append(run)
        self._schedule_wake()

    def _leave_flight(self, run: TaskRun) -> None:
        if run.in_flight:
            run.in_flight = False
            job = run.job
            job.active -= 1
            if job.ready.size and not job.in_heap:
                self._fair.offer(job)

    # -- workers ----------------------------------------------------------------------------

    def _schedule_wake(self) -> None:
        # Deferred to the end of the current loop step: a worker that just finished a task
        # picks up the next one itself, and only the work left over wakes the idle ones.
        if not self._wake_scheduled:
            self._wake_scheduled = True
            self.loop.call_soon(self._wake_workers)  # type: ignore[union-attr]

    def _wake_workers(self) -> None:
        self._wake_scheduled = False
        wanted = self._fair.queued + len(self._granted)
        while wanted > 0 and self._idle:
            future, _ = self._idle.popleft()
            if not future.done():
                future.set_result(True)
                wanted -= 1
        loop = self.loop
        assert loop is not None
        if self._draining:
            return  # new workers would find nothing to start
        while wanted > 0 and len(self._workers) < self.max_concurrency and not self._closed:
            worker = Worker()
            worker.task = loop.create_task(self._work(worker), name="dukat-worker")
            self._workers.add(worker)
            wanted -= 1

    def _retire_idle(self) -> None:
        while self._idle:
            future, worker = self._idle.popleft()
            # Gone from the count now, not when its coroutine gets to run: a job submitted
            # in the meantime must be able to start new workers.
            self._workers.discard(worker)
            if not future.done():
                future.set_result(False)

    async def _work(self, worker: Worker) -> None:
        loop = asyncio.get_running_loop()
        in_a_row = 0  # attempts run since this worker last let the event loop in
        try:
            while True:
                in_a_row += 1
                if in_a_row >= _YIELD_EVERY:
                    # Attempts that never suspend would otherwise keep the loop to this worker
                    # for a whole job: watchers, RPCs and timers must get their turn.
                    in_a_row = 0
                    await asyncio.sleep(0)
                run = self._pick()
                if run is None:
                    if not self._holdings.live_jobs or self._closed or self._draining:
                        return
                    idle: asyncio.Future[bool] = loop.create_future()
                    self._idle.append((idle, worker))
                    if not await idle:
                        return
                    continue
                # One attempt. Inline, not a coroutine of its own: this loop is the hot path.
                context, timer, token = self._begin_attempt(run, worker)
                result: Any = None
                error: BaseException | None = None
                try:
                    result = await run.runner.run(context)
                except asyncio.CancelledError as cancelled:
                    if run.stop_reason is None:
                        # Not ours: the worker itself is being torn down (loop shutdown).
                        run.stop_reason = _CANCELLED
                        self._end_attempt(run, None, cancelled)
                        raise
                    error = cancelled
                except Exception as exc:
                    error = exc
                except BaseException as exc:  # KeyboardInterrupt, SystemExit: record, let go
                    self._end_attempt(run, None, exc)
                    raise
                finally:
                    _current.reset(token)
                    run.worker = None
                    if timer is not None:
                        timer.cancel()
                if worker.cancel_sent:
                    worker.cancel_sent = False
                    worker.task.uncancel()  # type: ignore[union-attr]  # ours, handled here
                self._end_attempt(run, result, error)
                # A failed attempt's traceback holds this frame: were its locals to hold the
                # attempt too, the two would make a cycle only the collector could free.
                run = context = result = error = timer = None
        finally:
            self._workers.discard(worker)

    # -- running an attempt -----------------------------------------------------------------

    def _begin_attempt(self, run: TaskRun, worker: Worker) -> tuple[TaskContext, Any, Any]:
        run.attempts = attempt = run.attempts + 1
        run.worker = worker
        self.running += 1
        now = self._wall()
        if run.started_at is None:
            run.started_at = now
        self._transition(run, _RUNNING, "", now)
        context = TaskContext(self, run, attempt)
        timeout = run.spec.timeout
        timer = self.clock.call_later(timeout, self._time_out, run, attempt) if timeout else None
        return context, timer, _current.set(context)

    def _time_out(self, run: TaskRun, attempt: int) -> None:
        if run.state is TaskState.RUNNING and run.attempts == attempt:
            self._stop(run, _TIMEOUT)

    def _stop(self, run: TaskRun, reason: str) -> None:
        """Interrupt a running attempt; a cancel overrides an earlier timeout."""
        first = run.stop_reason is None
        if first or reason == _CANCELLED:
            run.stop_reason = reason
        worker = run.worker
        if not first or worker is None or worker.task is None:
            return
        if worker.task is asyncio.current_task():
            # The task is stopping itself (it cancelled its own job). Cancelling the running
            # task now would leave the request pending past the attempt if it returns without
            # awaiting, to strike whatever its worker runs next; so ask from the loop instead.
            self.loop.call_soon(self._cancel_if_still_running, run, run.attempts)  # type: ignore[union-attr]
        else:
            worker.cancel_sent = True
            worker.task.cancel()

    def _cancel_if_still_running(self, run: TaskRun, attempt: int) -> None:
        worker = run.worker
        if run.state is TaskState.RUNNING and run.attempts == attempt and worker is not None:
            worker.cancel_sent = True
            worker.task.cancel()  # type: ignore[union-attr]

    def _end_attempt(self, run: TaskRun, result: Any, error: BaseException | None) -> None:
        self.running -= 1
        if run.holds_resources:
            run.holds_resources = False
            self.resources.release_nowait(run.pool_key)
        permit = run.permit  # the breaker's, if the task has one
        if permit is not None:
            run.permit = None
        if run.in_flight:
            self._leave_flight(run)
        stop_reason = run.stop_reason
        if stop_reason is None and error is None:  # it returned, unasked: the common case
            if permit is not None:
                run.breaker.success(permit=permit)  # type: ignore[union-attr]
            run.result = result
            self._finish(run, _SUCCEEDED)
        elif stop_reason == _CANCELLED:
            run.stop_reason = None  # spent: a retry starts afresh
            if permit is not None:
                run.breaker.release(permit=permit)  # type: ignore[union-attr]
            self._finish(run, TaskState.CANCELLED, message=run.message or "cancelled")
        else:
            run.stop_reason = None
            if stop_reason == _TIMEOUT:
                error = TaskTimeoutError(run.id, run.spec.timeout or 0.0)
            if isinstance(error, TaskInterruptedError):
                if permit is not None:  # nothing the breaker guards went wrong
                    run.breaker.release(permit=permit)  # type: ignore[union-attr]
                self._interrupted(run, error)
            else:
                if permit is not None:
                    run.breaker.failure(error, permit=permit)  # type: ignore[union-attr]
                self._attempt_failed(run, error)  # type: ignore[arg-type]
        if permit is not None:
            self._unpark(run.breaker.name)  # type: ignore[union-attr]

    def _attempt_failed(self, run: TaskRun, error: BaseException) -> None:
        run.error = error
        message = _in_words(error)
        policy = run.spec.retry
        failed = run.attempts - run.interruptions  # the policy counts failed attempts only
        if (
            policy is not None
            and not run.job.cancel_requested
            and policy.should_retry(error, failed)
        ):
            delay = policy.backoff(failed, self._rng)
            self._transition(run, TaskState.RETRYING, f"{message}; retrying in {delay:.3g}s")
            run.timer = self.clock.call_later(delay, self._retry_now, run)
        else:
            self._finish(run, TaskState.FAILED, message=message)

    def _cancel_request(self, job: JobRun, request: CancelRequest) -> int:
        """Cancel what `request` names (its task ids must be the job's); how many it cancelled."""
        runs, message = self._cancel_targets(job, request)
        return self._cancel_runs(job, runs, message)

    def _cancel_targets(self, job: JobRun, request: CancelRequest) -> tuple[list[TaskRun], str]:
        """The tasks a cancel request names, and the message they end with. The first
        reason to cancel anything is also the job's (`_maybe_finish_job` says it)."""
        if request.task_ids:
            runs, message = _downstream(job, request.task_ids), "cancelled"
        else:
            job.cancel_requested = True
            runs, message = list(job.tasks.values()), "job cancelled"
        reason = request.reason
        if not reason:
            return runs, message
        if not job.cancel_reason and any(not run.state.is_terminal for run in runs):
            job.cancel_reason = reason
        return runs, f"{message}: {reason}"

    def _cancel_restored(self, job: JobRun, request: CancelRequest) -> None:
        """Apply a cancel request again to a restored job, before anything of it runs."""
        known = tuple(task_id for task_id in request.task_ids if task_id in job.tasks)
        if request.task_ids and not known:
            return  # it names none of the job's tasks: nothing to cancel
        runs, message = self._cancel_targets(job, request._replace(task_ids=known))
        for run in runs:
            if not run.state.is_terminal:  # an interrupted one holds nothing
                self._terminate(run, TaskState.CANCELLED, message=message)

    def _interrupted(self, run: TaskRun, error: TaskInterruptedError) -> None:
        """An attempt lost through no fault of the task (its worker left, the daemon
        restarted): not a failure. The task runs again at once (no backoff: it did not fail),
        its retry policy's attempts untouched, until it has been interrupted more than its
        `max_interruptions`; then it FAILS, saying how often and why the last time."""
        run.interruptions = count = run.interruptions + 1
        cause = error.cause if error.cause in _CAUSES else "other"
        self.interruptions[cause] += 1
        cap = run.spec.max_interruptions
        if count <= cap:
            message = f"{INTERRUPTED}{error}), {count} of {cap}; running again"
            self._transition(run, TaskState.RETRYING, message)
            self._make_ready(run)
            return
        run.error = error
        if cap:
            why = f"interrupted {count} times, the last ({error}); max_interruptions is {cap}"
        else:
            why = f"interrupted ({error}); max_interruptions is 0: it must not run twice"
        self._finish(run, TaskState.FAILED, message=f"{type(error).__name__}: {why}")

    def _resume_interrupted(self, run: TaskRun) -> None:
        """A restored task whose attempt a restart cut off: an interruption like any other."""
        self._interrupted(run, TaskInterruptedError("the daemon restarted", cause="daemon_restart"))

    def _retry_now(self, run: TaskRun) -> None:
        if run.state is TaskState.RETRYING:
            run.timer = None
            self._make_ready(run)

    # -- breakers ---------------------------------------------------------------------------

    def _refused_by_breaker(self, run: TaskRun) -> None:
        breaker = run.breaker
        assert breaker is not None
        if not run.spec.wait_for_breaker:
            run.attempts += 1
            self._attempt_failed(run, breaker.refused())
            return
        self._parked.setdefault(breaker.name, []).append(run)
        if breaker.name not in self._breaker_timers:
            delay = breaker.retry_after
            if delay > 0:  # OPEN: look again when it is due to half-open
                self._breaker_timers[breaker.name] = self.clock.call_later(
                    delay, self._breaker_due, breaker.name
                )

    def _breaker_due(self, name: str) -> None:
        self._breaker_timers.pop(name, None)
        breaker = self.breakers.find(name)
        if breaker is not None:
            _ = breaker.state  # an elapsed timeout moves it to HALF_OPEN and tells us
        self._unpark(name)

    def _on_breaker_transition(self, transition: BreakerTransition) -> None:
        self._unpark(transition.name)

    def _unpark(self, name: str) -> None:
        parked = self._parked.pop(name, None)
        if not parked:
            return
        timer = self._breaker_timers.pop(name, None)
        if timer is not None:
            timer.cancel()
        for run in parked:
            if run.state is TaskState.READY:
                self._fair.push(run)
        self._schedule_wake()

    # -- endings ----------------------------------------------------------------------------

    def _let_go(self, run: TaskRun) -> None:
        """Give back whatever a task that is not running holds or waits for."""
        if run.timer is not None:
            run.timer.cancel()
            run.timer = None
        if run.admission is not None:
            admission, run.admission = run.admission, None
            admission.cancel()  # the runner stops counting it among its waiters
        if run.reservation is not None:
            if not run.reservation.cancel():  # granted, its callback not run yet
                self.resources.release_nowait(run.pool_key)
            run.reservation = None
        if run.holds_resources:
            run.holds_resources = False
            self.resources.release_nowait(run.pool_key)
        if run.permit is not None:
            run.breaker.release(permit=run.permit)  # type: ignore[union-attr]
            run.permit = None
        if run.in_flight:
            self._leave_flight(run)
            # Its job may have been at its limit with tasks ready, and no worker busy to come
            # back for them (nothing need run while a task waits for admission).
            self._schedule_wake()

    def _terminate(self, run: TaskRun, state: TaskState, *, message: str = "") -> None:
        """Move a task to a terminal state. It holds nothing by now (see `_let_go`).

        A FAILED one keeps its error as data too (`TaskFailure`), in `result`, which only a
        success uses otherwise: what a journal keeps of it, and what a restart puts back."""
        if state is _FAILED and run.error is not None:
            run.result = TaskFailure.of(run.error)
        run.message = message
        run.finished_at = now = self._wall()
        self._transition(run, state, message, now)
        job = run.job
        job.remaining -= 1
        job.counts[state] += 1

    def _finish(self, run: TaskRun, state: TaskState, *, message: str = "") -> None:
        """End a task and propagate: ready or skip its dependents; maybe end the job."""
        self._terminate(run, state, message=message)
        job = run.job
        if state is _SUCCEEDED:  # the common case, kept short
            now = run.finished_at  # when its dependents became ready, too
            for dependent in run.dependents:
                if dependent.state is _PENDING:
                    dependent.waiting_on -= 1
                    if dependent.waiting_on == 0:
                        self._make_ready(dependent, "", now)
        else:
            self._propagate_failure(run)
            if state is TaskState.FAILED and job.spec.fail_fast and not job.cancel_requested:
                job.cancel_requested = True
                reason = f"fail_fast: task {run.id!r} failed"
                self._cancel_runs(job, list(job.tasks.values()), reason)
        if not job.remaining:
            self._maybe_finish_job(job)

    def _propagate_failure(self, run: TaskRun) -> None:
        """Dependents of a task that did not succeed: SKIPPED, transitively, unless ALL_DONE."""
        stack = [run]
        while stack:
            done = stack.pop()
            succeeded = done.state is TaskState.SUCCEEDED
            for dependent in done.dependents:
                if dependent.state is not TaskState.PENDING:
                    continue
                dependent.waiting_on -= 1
                if succeeded or dependent.all_done:
                    if dependent.waiting_on == 0:
                        self._make_ready(dependent)
                else:
                    reason = f"upstream {done.id!r} {done.state.value}"
                    self._terminate(dependent, TaskState.SKIPPED, message=reason)
                    stack.append(dependent)

    def _cancel_runs(self, job: JobRun, runs: list[TaskRun], reason: str) -> int:
        cancelled = 0
        for run in runs:
            if run.state.is_terminal or run.stop_reason == _CANCELLED:
                continue  # already over, or already being stopped
            cancelled += 1
            if run.state is TaskState.RUNNING:
                run.message = reason
                self._stop(run, _CANCELLED)
            else:
                self._let_go(run)
                self._terminate(run, TaskState.CANCELLED, message=reason)
        self._maybe_finish_job(job)
        return cancelled

    def _maybe_finish_job(self, job: JobRun) -> None:
        if job.remaining or job.state.is_terminal:
            return
        counts = job.counts
        if counts[TaskState.FAILED]:
            state = JobState.FAILED
            message = f"{counts[TaskState.FAILED]} of {len(job.tasks)} tasks failed"
            if job.cancel_reason:  # a cancel with a reason: the job's end says it too
                message = f"{message}; {_cancelled(job)}"
        elif counts[TaskState.CANCELLED] or job.cancel_requested:
            state = JobState.CANCELLED
            message = _cancelled(job)
        else:
            state = JobState.SUCCEEDED
            message = f"{len(job.tasks)} tasks succeeded"
        job.finished_at = now = self.clock.wall()
        self._transition_job(job, state, message, now)
        job.log.close()
        self.breakers.release(job.breakers)  # others may have them once nobody uses them
        if job.gc_hold is not None:
            job.gc_hold.release()
            job.gc_hold = None
        if job.done is not None and not job.done.done():
            job.done.set_result(None)
        self._holdings.finish(len(job.tasks))
        self._finished.add(job.id, self.clock.now(), len(job.tasks))
        self._evict_finished()
        if not self._holdings.live_jobs:
            self._retire_idle()

    def _take_back(self, job: JobRun) -> None:
        """Undo a start that failed half-way. Nothing of the job ran (workers pick tasks only
        once the loop has its turn): it ends CANCELLED at once and is dropped, so that its
        drop listeners (a journal) let go of it too."""
        job.cancel_requested = True
        self._cancel_runs(job, list(job.tasks.values()), "its start failed")
        self.forget(job.id)

    def _evict_finished(self, room: int = 0) -> None:
        """Drop the finished jobs past retention, and as many more as it takes to leave
        `room` tasks under `max_tasks`."""
        keep = self._holdings.finished_may_keep(room)
        for job_id in self._finished.evict(self.clock.now(), max_tasks=keep):
            job = self._jobs.get(job_id)
            if job is not None:
                self._drop(job)

    def _drop(self, job: JobRun) -> None:
        """Let go of a finished job, and of the one reference cycle in its records.

        Each task's record points back at its job, whose table points at the tasks: left to
        the cyclic collector, a dropped job of 100,000 tasks waited for a full collection,
        which then spent 250 ms on it. Without the back references, reference counting
        frees the records as soon as the last holder of the job (a reader still sending
        its results, say) lets go; their tasks, results and events all stay readable."""
        del self._jobs[job.id]
        if not job.log.ended:  # held, its end not published yet: `publish` still owes it
            self._unpublished[job.id] = job.log
        for run in job.tasks.values():
            run.job = None
        for listener in self._drop_listeners:
            listener(job.id)

    def _check_new_id(self, job_id: str) -> None:
        if job_id in self._jobs:
            raise ValidationError(
                f"a job with id {job_id!r} already exists",
                violations=[FieldViolation("job_id", "already exists")],
            )

    def _build(
        self,
        spec: JobSpec,
        job_id: str,
        created_at: float,
        positions: dict[str, int],
        *,
        hold_gc_now: bool = False,
        restoring: bool = False,
    ) -> JobRun:
        """A job's records from its spec, which `validate_job` checked (giving `positions`);
        nothing registered yet but the claim on its breakers (`abandon` lets go of a job
        that never starts).

        `hold_gc_now`: a big job about to start is frozen before the collector is back on,
        or the collector's first pass walks all its records; one that may never start
        (`prepare`) is frozen when it starts (`_admit_job`): a hold must be let go."""
        runners = runners_for(spec, self._runners, self.resources, restoring=restoring)
        job = JobRun(
            job_id,
            spec,
            next(self._job_order),
            created_at,
            *self._log_settings,
        )
        big = len(spec.tasks) >= self._gc_hold_min_tasks
        with gc_paused(big):
            # Many records: no collecting.
            build_job(job, runners, self.breakers, positions, within_limit=not restoring)
            if big and hold_gc_now:
                job.gc_hold = hold_gc()
        return job

    def _admit_job(self, job: JobRun) -> None:
        """Register a built job as live."""
        self._jobs[job.id] = job
        self._holdings.admit(len(job.tasks))
        if job.gc_hold is None and len(job.tasks) >= self._gc_hold_min_tasks:
            job.gc_hold = hold_gc()

    def _restore_ended(self, job: JobRun, ended: JobEnding) -> None:
        """Hold a restored finished job for retention, as if it had just finished then."""
        job.state, job.message, job.finished_at = ended.state, ended.message, ended.finished_at
        job.log.close()
        self.breakers.release(job.breakers)
        self._jobs[job.id] = job
        # The retention clock is monotonic: place the finish as far back as the wall says.
        age = max(0.0, self.clock.wall() - ended.finished_at)
        self._finished.add(job.id, self.clock.now() - age, len(job.tasks))

    def _outcomes(self, job: JobRun) -> dict[str, TaskResult]:
        outcome = TaskRun.outcome
        big = len(job.tasks) >= self._gc_hold_min_tasks
        with gc_paused(big):  # a result per task, long-lived: see promote_new
            results = {task_id: outcome(run) for task_id, run in job.tasks.items()}
            if big:
                promote_new()
        return results

    def _job(self, job_id: str) -> JobRun:
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"no job {job_id!r}")
        return job


def _nothing_to_pick() -> None:
    """A draining scheduler's `_pick`: whatever is ready waits."""
    return None


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _as_event(listener: EventListener, job_id: str, record: tuple[Any, ...]) -> None:
    """An event listener behind the record listeners' list: builds the `Event` it wants."""
    listener(event_of(record, job_id))


def _in_words(error: BaseException) -> str:
    """A failed attempt's error in words: its class and message, or a worker's error as the
    worker named it (`ValueError: bad row`, as an in-process callable's reads)."""
    if isinstance(error, TaskFailedRemotely) and error.type:
        return str(error)
    return f"{type(error).__name__}: {error}"


def _cancelled(job: JobRun) -> str:
    """How many of a job's tasks were cancelled, and why when a cancel said so."""
    message = f"{job.counts[TaskState.CANCELLED]} of {len(job.tasks)} tasks cancelled"
    return f"{message}: {job.cancel_reason}" if job.cancel_reason else message


def _downstream(job: JobRun, task_ids: Iterable[str]) -> list[TaskRun]:
    """The tasks named and every task downstream of them."""
    targets: dict[str, TaskRun] = {}
    stack = [job.tasks[task_id] for task_id in task_ids]
    while stack:
        run = stack.pop()
        if run.id not in targets:
            targets[run.id] = run
            stack.extend(run.dependents)
    return list(targets.values())
