"""Admission and gates: from READY to a slot, through the runner's admission, resources and
the breaker, in that order, with fair share between jobs deciding whose task goes first.

Its runner's admission first, then resources, the breaker last: a task waiting for a remote
worker holds no resources, and a permit is only taken for a call about to start, so a
waiting task never holds one of the few half-open trial places. A task that waits for any of
them stays READY outside the slots (in flight for its job's limit) and comes back through
`granted`. A task whose breaker refuses it fails that attempt, or, `wait_for_breaker`, is
parked until the breaker changes state (or is due to half-open) and queued again.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

from dukat.core._fair_share import FairShare
from dukat.core._runs import TaskRun
from dukat.core._slots import Slots
from dukat.core._task_states import READY
from dukat.core._transitions import Transitions
from dukat.core.breaker import BreakerRegistry, BreakerTransition
from dukat.core.clock import Clock
from dukat.core.context import AttemptReporter, TaskContext
from dukat.core.resources import ResourcePool

__all__ = ["AttemptFailed", "Gates"]

AttemptFailed = Callable[[TaskRun, BaseException], None]
"""`failed(run, error)`: the attempt `run.attempts` failed (the attempts room decides what next)."""


class Gates:
    """Ready tasks, queued fairly, and what each passes before a slot runs it."""

    __slots__ = (
        "_attempt_failed",
        "_breaker_timers",
        "_breakers",
        "_clock",
        "_reporter",
        "_resources",
        "_slots",
        "_transition",
        "fair",
        "granted",
        "parked",
    )

    def __init__(
        self,
        transitions: Transitions,
        slots: Slots,
        resources: ResourcePool,
        breakers: BreakerRegistry,
        clock: Clock,
        reporter: AttemptReporter,
    ) -> None:
        self._transition = transitions.task
        self._slots = slots
        self._resources = resources
        self._breakers = breakers
        self._clock = clock
        self._reporter = reporter  # for the context an admission hook is given
        self.fair = FairShare()
        self.granted: deque[TaskRun] = deque()  # hold their resources, wait for a slot
        self.parked: dict[str, list[TaskRun]] = {}  # breaker name -> tasks waiting for it
        self._breaker_timers: dict[str, Any] = {}
        self._attempt_failed: AttemptFailed

    def wire(self, *, attempt_failed: AttemptFailed) -> None:
        """What to do with an attempt that failed at the gates (its admission raised, its
        breaker refused it): the attempts room's, wired by the scheduler."""
        self._attempt_failed = attempt_failed

    def queued(self) -> int:
        """Tasks waiting for a slot: in the ready queues (stale entries too), and granted."""
        return self.fair.queued + len(self.granted)

    def make_ready(self, run: TaskRun, message: str = "", moment: float | None = None) -> None:
        self._transition(run, READY, message, moment)
        self.fair.push(run)
        slots = self._slots
        if not slots.wake_scheduled:
            slots.schedule_wake()

    def next_runnable(self) -> TaskRun | None:
        """The next task that can start now, holding its resources and its breaker permit."""
        granted = self.granted
        while True:
            if granted:
                run = granted.popleft()
                if run.state is not READY:
                    continue
                # Back from admission, it may have resources still to take.
                if not run.holds_resources and run.spec.resources and not self._reserve(run):
                    continue
            else:
                run = self.fair.pop()
                if run is None:
                    return None
                if run.gated and not self._pass_gates(run):
                    continue
            if run.breaker is not None:
                permit = run.breaker.acquire()
                if permit is None:
                    if run.holds_resources:
                        run.holds_resources = False
                        self._resources.release_nowait(run.pool_key)
                    self.leave_flight(run)
                    self._refused_by_breaker(run)
                    continue
                run.permit = permit
            return run

    def _pass_gates(self, run: TaskRun) -> bool:
        """Admission, then resources; False: the task waits for one of them (or failed)."""
        admit = run.admit
        if admit is not None:
            try:
                admission = admit(TaskContext(self._reporter, run, run.attempts + 1))
            except Exception as error:  # the runner's bug: this attempt fails, not the slot
                self.leave_flight(run)
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
            return  # let go while it waited (`let_go` cancelled it): nothing to undo
        run.admission = None
        # However it ended, it admits: a runner that drops its waiters (shutting down) must
        # not strand their tasks, and the attempt's `run` reports what is really wrong.
        self.granted.append(run)
        self._slots.schedule_wake()

    def _reserve(self, run: TaskRun) -> bool:
        """Take the task's resources (True), or leave it waiting for them (False)."""
        future = self._resources.reserve(
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
            return  # let go while the grant was on its way: `let_go` gave it back
        run.reservation = None
        if run.state is not READY:  # cancelled while the grant was on its way
            self._resources.release_nowait(run.pool_key)
            return
        run.holds_resources = True
        self.granted.append(run)
        self._slots.schedule_wake()

    def leave_flight(self, run: TaskRun) -> None:
        if run.in_flight:
            run.in_flight = False
            job = run.job
            job.active -= 1
            if job.ready.size and not job.in_heap:
                self.fair.offer(job)

    def let_go(self, run: TaskRun) -> None:
        """Give back whatever a task that is not running holds or waits for."""
        if run.timer is not None:
            run.timer.cancel()
            run.timer = None
        if run.admission is not None:
            admission, run.admission = run.admission, None
            admission.cancel()  # the runner stops counting it among its waiters
        if run.reservation is not None:
            if not run.reservation.cancel():  # granted, its callback not run yet
                self._resources.release_nowait(run.pool_key)
            run.reservation = None
        if run.holds_resources:
            run.holds_resources = False
            self._resources.release_nowait(run.pool_key)
        if run.permit is not None:
            run.breaker.release(permit=run.permit)  # type: ignore[union-attr]
            run.permit = None
        if run.in_flight:
            self.leave_flight(run)
            # Its job may have been at its limit with tasks ready, and no slot busy to come
            # back for them (nothing need run while a task waits for admission).
            self._slots.schedule_wake()

    # -- breaker parking ----------------------------------------------------------------------

    def _refused_by_breaker(self, run: TaskRun) -> None:
        breaker = run.breaker
        assert breaker is not None
        if not run.spec.wait_for_breaker:
            run.attempts += 1
            self._attempt_failed(run, breaker.refused())
            return
        self.parked.setdefault(breaker.name, []).append(run)
        if breaker.name not in self._breaker_timers:
            delay = breaker.retry_after
            if delay > 0:  # OPEN: look again when it is due to half-open
                self._breaker_timers[breaker.name] = self._clock.call_later(
                    delay, self._breaker_due, breaker.name
                )

    def _breaker_due(self, name: str) -> None:
        self._breaker_timers.pop(name, None)
        breaker = self._breakers.find(name)
        if breaker is not None:
            _ = breaker.state  # an elapsed timeout moves it to HALF_OPEN and tells us
        self.unpark(name)

    def on_breaker_transition(self, transition: BreakerTransition) -> None:
        self.unpark(transition.name)

    def unpark(self, name: str) -> None:
        """Queue again the tasks parked on breaker `name`: it may let them through now."""
        parked = self.parked.pop(name, None)
        if not parked:
            return
        timer = self._breaker_timers.pop(name, None)
        if timer is not None:
            timer.cancel()
        for run in parked:
            if run.state is READY:
                self.fair.push(run)
        self._slots.schedule_wake()

    def __repr__(self) -> str:
        queued, granted, parked = self.fair.queued, len(self.granted), len(self.parked)
        return f"<Gates queued:{queued} granted:{granted} parked:{parked}>"
