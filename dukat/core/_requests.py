"""What a host hands the scheduler besides specs, and what it gets back to hand in later: a
cancel request, how a restored job had ended, a job prepared but not started yet.

Public through `dukat.core.scheduler`, where hosts (the daemon's journal and recovery, the
executor) import them from.
"""

from __future__ import annotations

from typing import NamedTuple

from dukat.core._runs import JobRun
from dukat.core.results import TaskStatus
from dukat.core.spec import JobSpec
from dukat.core.states import JobState

__all__ = ["CancelRequest", "JobEnding", "PreparedJob"]


class PreparedJob(NamedTuple):
    """A validated job, built but not started: `Scheduler.start` runs it."""

    job_id: str
    spec: JobSpec
    job: JobRun
    carried: tuple[TaskStatus, ...] = ()
    """A rerun's tasks carried over (SUCCEEDED, with `carried_from`): what a host keeps with
    the job, for `Scheduler.restore` to put back should the job come back before it ran."""


class JobEnding(NamedTuple):
    """How a restored job had finished."""

    state: JobState
    finished_at: float
    message: str = ""


class CancelRequest(NamedTuple):
    """A cancel request, as `Scheduler.cancel` takes it: one a restored job had had, or one
    an executor applies when its job starts."""

    task_ids: tuple[str, ...] = ()
    """The tasks named (with everything downstream of them); empty: the whole job."""
    reason: str = ""
