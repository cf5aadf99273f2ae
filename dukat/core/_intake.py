"""How a job comes in: validated, built into records, and started, a rerun's carried-over
tasks with it.

`prepare` validates and builds without starting (a host makes the job durable in between);
`start` registers it live and makes its first tasks ready. A rerun (`rerun_of`) finds the
tasks that carry over their outcome from the finished job it reruns (`dukat.core._rerun`)
and puts them on the new records, as a restart puts back what it knew (`_outcomes`).
"""

from __future__ import annotations

import itertools

from dukat.core._build import build_job, runners_for
from dukat.core._endings import Endings
from dukat.core._gates import Gates
from dukat.core._gc import gc_paused, hold_gc
from dukat.core._holdings import Holdings
from dukat.core._outcomes import apply_outcomes, settle_pending
from dukat.core._requests import PreparedJob
from dukat.core._rerun import carried_over
from dukat.core._retention import Retention
from dukat.core._runs import JobRun
from dukat.core._task_states import SUCCEEDED
from dukat.core._transitions import Transitions
from dukat.core.breaker import BreakerRegistry
from dukat.core.clock import Clock
from dukat.core.events import CARRIED, TaskStateChanged
from dukat.core.resources import ResourcePool
from dukat.core.runners import Runner
from dukat.core.spec import JobSpec, validate_job
from dukat.core.states import JobState
from dukat.errors import FieldViolation, NotFoundError, ValidationError

__all__ = ["Intake"]


class Intake:
    """Builds jobs from specs and starts them."""

    __slots__ = (
        "_breakers",
        "_clock",
        "_endings",
        "_gates",
        "_holdings",
        "_job_order",
        "_log_settings",
        "_resources",
        "_retention",
        "_transitions",
        "gc_hold_min_tasks",
        "max_tasks_per_job",
        "runners",
    )

    def __init__(
        self,
        transitions: Transitions,
        gates: Gates,
        endings: Endings,
        retention: Retention,
        holdings: Holdings,
        breakers: BreakerRegistry,
        resources: ResourcePool,
        runners: dict[type, Runner],
        clock: Clock,
        *,
        max_tasks_per_job: int,
        log_settings: tuple[int, bool],
        gc_hold_min_tasks: int,
    ) -> None:
        self._transitions = transitions
        self._gates = gates
        self._endings = endings
        self._retention = retention
        self._holdings = holdings
        self._breakers = breakers
        self._resources = resources
        self.runners = runners
        self._clock = clock
        self.max_tasks_per_job = max_tasks_per_job
        self._log_settings = log_settings  # (length, held) of each job's event log
        self.gc_hold_min_tasks = gc_hold_min_tasks
        self._job_order = itertools.count()

    def prepare(
        self, spec: JobSpec, job_id: str, rerun_of: str | None, *, starting: bool
    ) -> PreparedJob:
        """Validate and build a job (`job_id` is new); `starting`: it starts at once."""
        # Found before the room is made, which may drop it: its records stay readable.
        before = None if rerun_of is None else self._finished_job(rerun_of)
        positions = validate_job(spec, max_tasks=self.max_tasks_per_job)
        self._holdings.check_room(len(positions))
        self._retention.evict(room=len(positions))  # before the id check: it may free the id
        self.check_new_id(job_id)
        job = self.build(spec, job_id, self._clock.wall(), positions, hold_gc_now=starting)
        carried = () if before is None else tuple(carried_over(before, job))
        apply_outcomes(job, carried)
        self._holdings.prepare(job, len(job.tasks))
        return PreparedJob(job_id, spec, job, carried)

    def _finished_job(self, job_id: str) -> JobRun:
        """The finished job a rerun carries over from."""
        self._retention.evict()  # an expired job is not there to rerun
        job = self._retention.jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"no job {job_id!r}")
        if not job.state.is_terminal:
            raise ValueError(
                f"job {job_id!r} is still {job.state.value}; cancel it or wait for it to end"
            )
        return job

    def abandon(self, prepared: PreparedJob) -> None:
        """Let go of a prepared job that will not start (a no-op once it started)."""
        job = prepared.job
        self._holdings.unprepare(job)
        if self._retention.jobs.get(job.id) is not job:
            self._breakers.release(job.breakers)
            job.breakers = ()

    def start(self, prepared: PreparedJob) -> str:
        """Start a prepared job, all or nothing (see `Scheduler.start`)."""
        job = prepared.job
        self.check_new_id(job.id)
        self._holdings.unprepare(job)  # it is counted live from here
        self.admit(job)
        make_ready = self._gates.make_ready
        try:
            self.begin(job)
            if job.carried:  # their dependents wait on those that run only
                for run in settle_pending(job):
                    make_ready(run)
                self._endings.maybe_finish_job(job)  # nothing was left to run
            else:
                for run in job.tasks.values():
                    if run.waiting_on == 0:
                        make_ready(run)
        except BaseException:
            self._take_back(job)
            raise
        return job.id

    def begin(self, job: JobRun) -> None:
        """Set a job RUNNING, and tell of the tasks a rerun carried over: each one's event
        has its time (when it ended in the job it comes from) and says where from."""
        carried = job.carried
        transitions = self._transitions
        if not carried:
            transitions.job(job, JobState.RUNNING, f"{len(job.tasks)} tasks")
            return
        source = next(iter(carried.values()))  # the job it reruns, the same for each
        transitions.job(
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
                SUCCEEDED,
                run.attempts,
                run.message,
            )
            transitions.record(job, record)

    def _take_back(self, job: JobRun) -> None:
        """Undo a start that failed half-way. Nothing of the job ran (slots pick tasks only
        once the loop has its turn): it ends CANCELLED at once and is dropped, so that its
        drop listeners (a journal) let go of it too."""
        job.cancel_requested = True
        self._endings.cancel_runs(job, list(job.tasks.values()), "its start failed")
        self._retention.forget(job)

    def check_new_id(self, job_id: str) -> None:
        if job_id in self._retention.jobs:
            raise ValidationError(
                f"a job with id {job_id!r} already exists",
                violations=[FieldViolation("job_id", "already exists")],
            )

    def build(
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
        (`prepare`) is frozen when it starts (`admit`): a hold must be let go.
        `restoring`: accepted once, it must come back, past the breakers' limit if need be,
        and with what this scheduler cannot run failing as it is picked (`Unrunnable`)."""
        runners = runners_for(spec, self.runners, self._resources, restoring=restoring)
        job = JobRun(job_id, spec, next(self._job_order), created_at, *self._log_settings)
        big = len(spec.tasks) >= self.gc_hold_min_tasks
        with gc_paused(big):
            # Many records: no collecting.
            build_job(job, runners, self._breakers, positions, within_limit=not restoring)
            if big and hold_gc_now:
                job.gc_hold = hold_gc()
        return job

    def admit(self, job: JobRun) -> None:
        """Register a built job as live."""
        self._retention.jobs[job.id] = job
        self._holdings.admit(len(job.tasks))
        if job.gc_hold is None and len(job.tasks) >= self.gc_hold_min_tasks:
            job.gc_hold = hold_gc()

    def __repr__(self) -> str:
        return f"<Intake runners:{len(self.runners)}>"
