"""Restore: a job a previous scheduler ran comes back (a daemon's journal, after a restart).

The tasks that had ended keep their outcomes (`_outcomes.apply_outcomes`), silently: their
events are in the restored log. What was cut off goes on: an attempt RUNNING when the daemon
stopped was interrupted (`TaskInterruptedError`, "the daemon restarted"), a RETRYING task
runs again at once, and the PENDING ones whose upstreams are all done become READY, or
SKIPPED after an upstream that did not succeed. The cancels the job had had are applied again
before any of that, and a job that had finished is only held, for retention.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from dukat.core._attempts import Attempts
from dukat.core._endings import Endings
from dukat.core._gates import Gates
from dukat.core._intake import Intake
from dukat.core._outcomes import apply_outcomes, failed_upstream, settle_pending
from dukat.core._requests import CancelRequest, JobEnding
from dukat.core._retention import Retention
from dukat.core._runs import JobRun, TaskRun
from dukat.core._task_states import FAILED, PENDING, RETRYING, RUNNING
from dukat.core._transitions import put_back_job
from dukat.core.results import TaskStatus
from dukat.core.spec import JobSpec, validate_job
from dukat.core.states import JobState, TaskState

__all__ = ["Restore"]


class Restore:
    """Brings jobs back (`Scheduler.restore`)."""

    __slots__ = ("_attempts", "_endings", "_gates", "_intake", "_retention")

    def __init__(
        self,
        intake: Intake,
        gates: Gates,
        attempts: Attempts,
        endings: Endings,
        retention: Retention,
    ) -> None:
        self._intake = intake
        self._gates = gates
        self._attempts = attempts
        self._endings = endings
        self._retention = retention

    def restore(
        self,
        spec: JobSpec,
        job_id: str,
        created_at: float,
        tasks: Iterable[TaskStatus],
        events: Sequence[tuple[Any, ...]],
        last_sequence: int,
        ended: JobEnding | None,
        cancels: Iterable[CancelRequest],
    ) -> None:
        """See `Scheduler.restore`."""
        intake = self._intake
        intake.check_new_id(job_id)
        positions = validate_job(spec, max_tasks=intake.max_tasks_per_job)
        job = intake.build(spec, job_id, created_at, positions, restoring=True)
        job.log.restore(list(events), last_sequence)
        job.sequence = last_sequence
        if last_sequence:
            put_back_job(job, JobState.RUNNING)  # it had started: its log says so already
        resumed = apply_outcomes(job, tasks)
        if ended is not None:
            put_back_job(job, ended.state)  # its end is in the log too
            job.message, job.finished_at = ended.message, ended.finished_at
            job.log.close()
            self._retention.hold_ended(job)
            return
        intake.admit(job)
        if job.state is JobState.PENDING:  # accepted, and gone before it started
            intake.begin(job)
        for request in cancels:
            self._cancel(job, request)
        self._resume(job, resumed)
        if job.counts[FAILED]:
            self._endings.fail_fast(job, "fail_fast: a task had failed")
        self._endings.maybe_finish_job(job)

    def _cancel(self, job: JobRun, request: CancelRequest) -> None:
        """Apply a cancel request again to a restored job, before anything of it runs."""
        known = tuple(task_id for task_id in request.task_ids if task_id in job.tasks)
        if request.task_ids and not known:
            return  # it names none of the job's tasks: nothing to cancel
        endings = self._endings
        runs, message = endings.cancel_targets(job, request._replace(task_ids=known))
        for run in runs:
            if not run.state.is_terminal:  # an interrupted one holds nothing
                endings.terminate(run, TaskState.CANCELLED, message)

    def _resume(self, job: JobRun, resumed: list[TaskRun]) -> None:
        """Go on from where the job was cut off: interrupted attempts, retries, and the
        PENDING tasks whose upstreams are all done."""
        settled = settle_pending(job)
        attempts, endings = self._attempts, self._endings
        for run in resumed:  # unless cancelled just now
            if run.state is RUNNING:
                attempts.resume_interrupted(run)
            elif run.state is RETRYING:  # its attempt had ended: on to the next
                attempts.retry_now(run)
        for run in settled:
            if run.state is not PENDING:
                continue  # ended by what an interrupted task's failure propagated
            upstream = failed_upstream(run)
            if upstream is None or run.all_done:
                self._gates.make_ready(run)
            else:
                endings.skip(run, upstream)
                endings.propagate_failure(run)

    def __repr__(self) -> str:
        return "<Restore>"
