"""The scheduler's execution slots: `max_concurrency` coroutines, started on demand, each
picking the next runnable task and running its attempt, then the next.

A slot asks the gates for a task (`pick`), has the attempts room begin it (its RUNNING
state, its timeout, its context), awaits its runner, and hands the outcome back to the
attempts room (`end`). Slots with nothing to pick wait idle until `schedule_wake` says there
is work; they end when no job is live, or when the scheduler drains or closes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from dukat.core._holdings import Holdings
from dukat.core._runs import CANCELLED, Slot, TaskRun
from dukat.core.context import TaskContext, reset_current_task

__all__ = ["Begin", "End", "Slots", "nothing_to_pick"]

_YIELD_EVERY = 64

Begin = Callable[[TaskRun, Slot], tuple[TaskContext, Any, Any]]
"""`begin(run, slot) -> (context, timeout timer or None, context variable token)`."""
End = Callable[[TaskRun, Any, BaseException | None], None]
"""`end(run, result, error)`: the attempt is over."""


def nothing_to_pick() -> None:
    """A draining scheduler's `pick`: whatever is ready waits."""
    return None


class Slots:
    """The pool of slots, the idle ones, and the switch that stops them picking."""

    __slots__ = (
        "_begin",
        "_end",
        "_holdings",
        "_queued",
        "closed",
        "draining",
        "idle",
        "loop",
        "max_concurrency",
        "pick",
        "slots",
        "wake_scheduled",
    )

    def __init__(self, max_concurrency: int, holdings: Holdings) -> None:
        self.max_concurrency = max_concurrency
        self._holdings = holdings  # its live jobs: a slot with none to serve ends
        self.slots: set[Slot] = set()
        self.idle: deque[tuple[asyncio.Future[bool], Slot]] = deque()
        self.wake_scheduled = False
        self.closed = False
        self.draining = False
        self.loop: asyncio.AbstractEventLoop | None = None
        # What a slot calls to pick its next task. `drain` swaps in one that finds nothing:
        # a switch the hot path reads anyway, where a flag would cost every pick.
        self.pick: Callable[[], TaskRun | None] = nothing_to_pick
        self._queued: Callable[[], int] = int
        self._begin: Begin
        self._end: End

    def wire(
        self,
        *,
        pick: Callable[[], TaskRun | None],
        queued: Callable[[], int],
        begin: Begin,
        end: End,
    ) -> None:
        """`pick` the next runnable task, `queued` ones waiting for a slot, and the attempt's
        `begin` and `end` (the rooms above this one, wired by the scheduler)."""
        self.pick, self._queued, self._begin, self._end = pick, queued, begin, end

    def schedule_wake(self) -> None:
        # Deferred to the end of the current loop step: a slot that just finished a task
        # picks up the next one itself, and only the work left over wakes the idle ones.
        if not self.wake_scheduled:
            self.wake_scheduled = True
            self.loop.call_soon(self._wake)  # type: ignore[union-attr]

    def _wake(self) -> None:
        self.wake_scheduled = False
        wanted = self._queued()
        idle = self.idle
        while wanted > 0 and idle:
            future, _ = idle.popleft()
            if not future.done():
                future.set_result(True)
                wanted -= 1
        loop = self.loop
        assert loop is not None
        if self.draining:
            return  # new slots would find nothing to start
        slots = self.slots
        while wanted > 0 and len(slots) < self.max_concurrency and not self.closed:
            slot = Slot()
            slot.task = loop.create_task(self._work(slot), name="dukat-slot")
            slots.add(slot)
            wanted -= 1

    def retire_idle(self) -> None:
        """End the idle slots; busy ones end after their attempt, if nothing is left."""
        while self.idle:
            future, slot = self.idle.popleft()
            # Gone from the count now, not when its coroutine gets to run: a job submitted
            # in the meantime must be able to start new slots.
            self.slots.discard(slot)
            if not future.done():
                future.set_result(False)

    def busy(self) -> set[asyncio.Task[None]]:
        """The slots' coroutines, busy with an attempt or about to end."""
        return {slot.task for slot in self.slots if slot.task is not None}

    async def _work(self, slot: Slot) -> None:
        loop = asyncio.get_running_loop()
        begin, end = self._begin, self._end
        in_a_row = 0  # attempts run since this slot last let the event loop in
        try:
            while True:
                in_a_row += 1
                if in_a_row >= _YIELD_EVERY:
                    # Attempts that never suspend would otherwise keep the loop to this slot
                    # for a whole job: watchers, RPCs and timers must get their turn.
                    in_a_row = 0
                    await asyncio.sleep(0)
                run = self.pick()
                if run is None:
                    if not self._holdings.live_jobs or self.closed or self.draining:
                        return
                    idle: asyncio.Future[bool] = loop.create_future()
                    self.idle.append((idle, slot))
                    if not await idle:
                        return
                    continue
                # One attempt. Inline, not a coroutine of its own: this loop is the hot path.
                context, timer, token = begin(run, slot)
                result: Any = None
                error: BaseException | None = None
                try:
                    result = await run.runner.run(context)
                except asyncio.CancelledError as cancelled:
                    if run.stop_reason is None:
                        # Not ours: the slot itself is being torn down (loop shutdown).
                        run.stop_reason = CANCELLED
                        end(run, None, cancelled)
                        raise
                    error = cancelled
                except Exception as exc:
                    error = exc
                except BaseException as exc:  # KeyboardInterrupt, SystemExit: record, let go
                    end(run, None, exc)
                    raise
                finally:
                    reset_current_task(token)
                    run.slot = None
                    if timer is not None:
                        timer.cancel()
                if slot.cancel_sent:
                    slot.cancel_sent = False
                    slot.task.uncancel()  # type: ignore[union-attr]  # ours, handled here
                end(run, result, error)
                # A failed attempt's traceback holds this frame: were its locals to hold the
                # attempt too, the two would make a cycle only the collector could free.
                run = context = result = error = timer = None
        finally:
            self.slots.discard(slot)

    def __repr__(self) -> str:
        return f"<Slots {len(self.slots)}/{self.max_concurrency} idle:{len(self.idle)}>"
