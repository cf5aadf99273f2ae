"""Known outcomes put back on a job's records: a restart's (`_restore`), and a rerun's
carried-over tasks (`_intake`, `_rerun`).

Only the records change here, silently (`_transitions.put_back`): what happens next, and the
events that tell of it, are the restore's and the intake's.
"""

from __future__ import annotations

from collections.abc import Iterable

from dukat.core._runs import JobRun, TaskRun
from dukat.core._transitions import put_back
from dukat.core.results import TaskStatus
from dukat.core.states import TaskState

__all__ = ["apply_outcomes", "failed_upstream", "settle_pending"]

_RESUMABLE = frozenset({TaskState.RUNNING, TaskState.RETRYING})


def apply_outcomes(job: JobRun, statuses: Iterable[TaskStatus]) -> list[TaskRun]:
    """Put each known task back as it was; returns those that were between attempts.

    A terminal task gets its state, result (or failure) and message, silently (its events are
    in the restored log). One that was RUNNING comes back RUNNING at its attempt, for the
    scheduler to end that attempt as interrupted; one that was RETRYING (its last attempt had
    ended, failed or interrupted, and it was to run again) comes back RETRYING, for the
    scheduler to run it again. Each keeps its attempts and interruptions, and one a rerun
    carried over (`carried_from`) is remembered as such. Ids the job does not have are
    ignored.
    """
    tasks = job.tasks
    resumed = []
    for status in statuses:
        run = tasks.get(status.id)
        if run is None:
            continue
        run.attempts = status.attempts
        run.interruptions = status.interruptions
        run.started_at = status.started_at
        state = status.state
        if state.is_terminal:
            put_back(run, state)
            run.message = status.error
            run.finished_at = status.finished_at
            if state is TaskState.SUCCEEDED:
                run.result = status.result
                if status.carried_from:
                    job.carried[run.id] = status.carried_from
            elif state is TaskState.FAILED:
                run.result = status.failure
            job.remaining -= 1
            job.counts[state] += 1
        elif state in _RESUMABLE and status.attempts > 0:
            put_back(run, state)
            resumed.append(run)
    return resumed


def settle_pending(job: JobRun) -> list[TaskRun]:
    """Count each PENDING task's unfinished upstreams again; those with none, in job order.

    Each of those is to become READY, or SKIPPED when an upstream did not succeed.
    """
    tasks = job.tasks
    settled = []
    for run in tasks.values():
        if run.state is not TaskState.PENDING:
            continue
        run.waiting_on = sum(1 for dep in run.spec.dependencies if not tasks[dep].state.is_terminal)
        if run.waiting_on == 0:
            settled.append(run)
    return settled


def failed_upstream(run: TaskRun) -> TaskRun | None:
    """The first upstream of `run` that ended without succeeding, if any."""
    tasks = run.job.tasks
    for dep in run.spec.dependencies:
        upstream = tasks[dep]
        if upstream.state is not TaskState.SUCCEEDED:
            return upstream
    return None
