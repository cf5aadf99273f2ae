"""Endings and propagation: a task's terminal state and what follows from it.

A task that SUCCEEDED makes ready the dependents it was the last upstream of; one that did
not marks its dependents SKIPPED, transitively (unless they run ALL_DONE), and a FAILED one
of a `fail_fast` job cancels the rest. Cancelling stops running attempts (their slot ends
them CANCELLED) and ends the others at once. A job ends when its last task does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from dukat.core._attempts import Attempts
from dukat.core._gates import Gates
from dukat.core._requests import CancelRequest
from dukat.core._runs import CANCELLED, JobRun, TaskRun
from dukat.core._task_states import FAILED, PENDING, RUNNING, SUCCEEDED
from dukat.core._transitions import Transitions
from dukat.core.clock import Clock
from dukat.core.results import TaskFailure
from dukat.core.states import JobState, TaskState

__all__ = ["Endings"]


class Endings:
    """Ends tasks and jobs, and carries each ending on to the tasks downstream."""

    __slots__ = (
        "_job_ended",
        "_let_go",
        "_make_ready",
        "_stop",
        "_transition",
        "_transition_job",
        "_wall",
    )

    def __init__(
        self,
        transitions: Transitions,
        gates: Gates,
        attempts: Attempts,
        clock: Clock,
        job_ended: Callable[[JobRun], None],
    ) -> None:
        """`job_ended(job)`: after a job's terminal state, what it held while live goes
        (the retention room's)."""
        self._transition = transitions.task
        self._transition_job = transitions.job
        self._make_ready = gates.make_ready
        self._let_go = gates.let_go
        self._stop = attempts.stop
        self._wall = clock.wall
        self._job_ended = job_ended

    def terminate(self, run: TaskRun, state: TaskState, message: str = "") -> None:
        """Move a task to a terminal state. It holds nothing by now (see `Gates.let_go`).

        A FAILED one keeps its error as data too (`TaskFailure`), in `result`, which only a
        success uses otherwise: what a journal keeps of it, and what a restart puts back."""
        if state is FAILED and run.error is not None:
            run.result = TaskFailure.of(run.error)
        run.message = message
        run.finished_at = now = self._wall()
        self._transition(run, state, message, now)
        job = run.job
        job.remaining -= 1
        job.counts[state] += 1

    def finish(self, run: TaskRun, state: TaskState, message: str = "") -> None:
        """End a task and propagate: ready or skip its dependents; maybe end the job."""
        self.terminate(run, state, message)
        job = run.job
        if state is SUCCEEDED:  # the common case, kept short
            now = run.finished_at  # when its dependents became ready, too
            for dependent in run.dependents:
                if dependent.state is PENDING:
                    dependent.waiting_on -= 1
                    if dependent.waiting_on == 0:
                        self._make_ready(dependent, "", now)
        else:
            self.propagate_failure(run)
            if state is FAILED:
                self.fail_fast(job, f"fail_fast: task {run.id!r} failed")
        if not job.remaining:
            self.maybe_finish_job(job)

    def skip(self, run: TaskRun, upstream: TaskRun) -> None:
        """A PENDING task whose `upstream` did not succeed: SKIPPED, saying which."""
        self.terminate(run, TaskState.SKIPPED, f"upstream {upstream.id!r} {upstream.state.value}")

    def propagate_failure(self, run: TaskRun) -> None:
        """Dependents of a task that did not succeed: SKIPPED, transitively, unless ALL_DONE."""
        stack = [run]
        while stack:
            done = stack.pop()
            succeeded = done.state is SUCCEEDED
            for dependent in done.dependents:
                if dependent.state is not PENDING:
                    continue
                dependent.waiting_on -= 1
                if succeeded or dependent.all_done:
                    if dependent.waiting_on == 0:
                        self._make_ready(dependent)
                else:
                    self.skip(dependent, done)
                    stack.append(dependent)

    def fail_fast(self, job: JobRun, reason: str) -> None:
        """A task of `job` failed: cancel the rest if the job says `fail_fast` (once)."""
        if job.spec.fail_fast and not job.cancel_requested:
            job.cancel_requested = True
            self.cancel_runs(job, list(job.tasks.values()), reason)

    def cancel_request(self, job: JobRun, request: CancelRequest) -> int:
        """Cancel what `request` names (its task ids must be the job's); how many it cancelled."""
        runs, message = self.cancel_targets(job, request)
        return self.cancel_runs(job, runs, message)

    def cancel_targets(self, job: JobRun, request: CancelRequest) -> tuple[list[TaskRun], str]:
        """The tasks a cancel request names, and the message they end with. The first
        reason to cancel anything is also the job's (`maybe_finish_job` says it)."""
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

    def cancel_runs(self, job: JobRun, runs: list[TaskRun], reason: str) -> int:
        cancelled = 0
        for run in runs:
            if run.state.is_terminal or run.stop_reason == CANCELLED:
                continue  # already over, or already being stopped
            cancelled += 1
            if run.state is RUNNING:
                run.message = reason
                self._stop(run, CANCELLED)
            else:
                self._let_go(run)
                self.terminate(run, TaskState.CANCELLED, reason)
        self.maybe_finish_job(job)
        return cancelled

    def maybe_finish_job(self, job: JobRun) -> None:
        if job.remaining or job.state.is_terminal:
            return
        counts = job.counts
        if counts[FAILED]:
            state = JobState.FAILED
            message = f"{counts[FAILED]} of {len(job.tasks)} tasks failed"
            if job.cancel_reason:  # a cancel with a reason: the job's end says it too
                message = f"{message}; {_cancelled(job)}"
        elif counts[TaskState.CANCELLED] or job.cancel_requested:
            state = JobState.CANCELLED
            message = _cancelled(job)
        else:
            state = JobState.SUCCEEDED
            message = f"{len(job.tasks)} tasks succeeded"
        job.finished_at = now = self._wall()
        self._transition_job(job, state, message, now)
        job.log.close()
        if job.done is not None and not job.done.done():
            job.done.set_result(None)
        self._job_ended(job)

    def __repr__(self) -> str:
        return "<Endings>"


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
