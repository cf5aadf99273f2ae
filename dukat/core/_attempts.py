"""Attempts: a task's run in a slot, from its RUNNING state to what its outcome makes of it.

`begin` starts one (the state, the timeout, the context `current_task()` gives); `end` takes
its outcome: returned (SUCCEEDED), cancelled, timed out or failed (the retry policy decides:
RETRYING after a backoff, or FAILED), or interrupted through no fault of the task
(`TaskInterruptedError`: RETRYING, then READY at once, up to `max_interruptions`). The
breaker's permit is settled with it: a success, a failure, or given back untouched.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

from dukat.core._gates import Gates
from dukat.core._runs import CANCELLED, TIMED_OUT, Slot, TaskRun
from dukat.core._task_states import FAILED, RETRYING, RUNNING, SUCCEEDED
from dukat.core._transitions import Transitions
from dukat.core.clock import Clock
from dukat.core.context import AttemptReporter, TaskContext, set_current_task
from dukat.core.events import INTERRUPTED
from dukat.core.resources import ResourcePool
from dukat.core.states import TaskState
from dukat.errors import TaskFailedRemotely, TaskInterruptedError, TaskTimeoutError

__all__ = ["Attempts", "Finish"]

Finish = Callable[[TaskRun, TaskState, str], None]
"""`finish(run, state, message)`: end the task and propagate (the endings room's)."""

_CAUSES = frozenset(TaskInterruptedError.CAUSES)


class Attempts:
    """Begins and ends attempts; counts those running and those interrupted."""

    __slots__ = (
        "_clock",
        "_finish",
        "_leave_flight",
        "_make_ready",
        "_reporter",
        "_resources",
        "_rng",
        "_transition",
        "_unpark",
        "_wall",
        "interruptions",
        "running",
    )

    def __init__(
        self,
        transitions: Transitions,
        gates: Gates,
        reporter: AttemptReporter,
        resources: ResourcePool,
        clock: Clock,
        rng: random.Random,
    ) -> None:
        self._transition = transitions.task
        self._make_ready = gates.make_ready
        self._leave_flight = gates.leave_flight
        self._unpark = gates.unpark
        self._reporter = reporter
        self._resources = resources
        self._clock = clock
        self._wall = clock.wall
        self._rng = rng
        self.running = 0  # attempts in progress
        # Attempts interrupted so far, by `TaskInterruptedError.cause` (for metrics).
        self.interruptions: dict[str, int] = dict.fromkeys(TaskInterruptedError.CAUSES, 0)
        self._finish: Finish

    def wire(self, *, finish: Finish) -> None:
        """How a task ends (the endings room's, wired by the scheduler)."""
        self._finish = finish

    def begin(self, run: TaskRun, slot: Slot) -> tuple[TaskContext, Any, Any]:
        """Start the task's next attempt in `slot`: (its context, its timeout's timer or
        None, the token that sets `current_task()` for it)."""
        run.attempts = attempt = run.attempts + 1
        run.slot = slot
        self.running += 1
        now = self._wall()
        if run.started_at is None:
            run.started_at = now
        self._transition(run, RUNNING, "", now)
        context = TaskContext(self._reporter, run, attempt)
        timeout = run.spec.timeout
        timer = self._clock.call_later(timeout, self._time_out, run, attempt) if timeout else None
        return context, timer, set_current_task(context)

    def _time_out(self, run: TaskRun, attempt: int) -> None:
        if run.state is RUNNING and run.attempts == attempt:
            self.stop(run, TIMED_OUT)

    def stop(self, run: TaskRun, reason: str) -> None:
        """Interrupt a running attempt; a cancel overrides an earlier timeout."""
        first = run.stop_reason is None
        if first or reason == CANCELLED:
            run.stop_reason = reason
        slot = run.slot
        if not first or slot is None or slot.task is None:
            return
        if slot.task is asyncio.current_task():
            # The task is stopping itself (it cancelled its own job). Cancelling the running
            # task now would leave the request pending past the attempt if it returns without
            # awaiting, to strike whatever its slot runs next; so ask from the loop instead.
            loop = self._reporter.loop
            loop.call_soon(self._cancel_if_still_running, run, run.attempts)  # type: ignore[union-attr]
        else:
            slot.cancel_sent = True
            slot.task.cancel()

    def _cancel_if_still_running(self, run: TaskRun, attempt: int) -> None:
        slot = run.slot
        if run.state is RUNNING and run.attempts == attempt and slot is not None:
            slot.cancel_sent = True
            slot.task.cancel()  # type: ignore[union-attr]

    def end(self, run: TaskRun, result: Any, error: BaseException | None) -> None:
        """The attempt is over: `result` if it returned, else its `error`."""
        self.running -= 1
        if run.holds_resources:
            run.holds_resources = False
            self._resources.release_nowait(run.pool_key)
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
            self._finish(run, SUCCEEDED, "")
        elif stop_reason == CANCELLED:
            run.stop_reason = None  # spent: a retry starts afresh
            if permit is not None:
                run.breaker.release(permit=permit)  # type: ignore[union-attr]
            self._finish(run, TaskState.CANCELLED, run.message or "cancelled")
        else:
            run.stop_reason = None
            if stop_reason == TIMED_OUT:
                error = TaskTimeoutError(run.id, run.spec.timeout or 0.0)
            if isinstance(error, TaskInterruptedError):
                if permit is not None:  # nothing the breaker guards went wrong
                    run.breaker.release(permit=permit)  # type: ignore[union-attr]
                self.interrupted(run, error)
            else:
                if permit is not None:
                    run.breaker.failure(error, permit=permit)  # type: ignore[union-attr]
                self.failed(run, error)  # type: ignore[arg-type]
        if permit is not None:
            self._unpark(run.breaker.name)  # type: ignore[union-attr]

    def failed(self, run: TaskRun, error: BaseException) -> None:
        """Attempt `run.attempts` failed: RETRYING after its policy's backoff, or FAILED."""
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
            self._transition(run, RETRYING, f"{message}; retrying in {delay:.3g}s")
            run.timer = self._clock.call_later(delay, self.retry_now, run)
        else:
            self._finish(run, FAILED, message)

    def interrupted(self, run: TaskRun, error: TaskInterruptedError) -> None:
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
            self._transition(run, RETRYING, message)
            self._make_ready(run)
            return
        run.error = error
        if cap:
            why = f"interrupted {count} times, the last ({error}); max_interruptions is {cap}"
        else:
            why = f"interrupted ({error}); max_interruptions is 0: it must not run twice"
        self._finish(run, FAILED, f"{type(error).__name__}: {why}")

    def resume_interrupted(self, run: TaskRun) -> None:
        """A restored task whose attempt a restart cut off: an interruption like any other."""
        self.interrupted(run, TaskInterruptedError("the daemon restarted", cause="daemon_restart"))

    def retry_now(self, run: TaskRun) -> None:
        if run.state is RETRYING:
            run.timer = None
            self._make_ready(run)

    def __repr__(self) -> str:
        return f"<Attempts running:{self.running}>"


def _in_words(error: BaseException) -> str:
    """A failed attempt's error in words: its class and message, or a worker's error as the
    worker named it (`ValueError: bad row`, as an in-process callable's reads)."""
    if isinstance(error, TaskFailedRemotely) and error.type:
        return str(error)
    return f"{type(error).__name__}: {error}"
