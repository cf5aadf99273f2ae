"""Time, injected: the engine asks a `Clock` instead of reading time or sleeping itself.

`SystemClock` is the real thing, on the running event loop. `ManualClock` only moves when a
test says so, which lets tests about backoff, timeouts and breaker timeouts run instantly and
deterministically.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Clock", "ManualClock", "SystemClock", "TimerHandle"]


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """Monotonic time, wall time, and timers."""

    def now(self) -> float:
        """Monotonic seconds; only differences mean anything."""
        ...

    def wall(self) -> float:
        """Seconds since the epoch, for timestamps shown to people."""
        ...

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        """Run `callback(*args)` on the event loop after `delay` seconds."""
        ...

    async def sleep(self, delay: float) -> None: ...


class SystemClock:
    """The real clock: `time.monotonic`, `time.time` and the running loop's timers."""

    # The C functions themselves, not wrappers: the scheduler reads the clock for every event.
    now = staticmethod(time.monotonic)
    wall = staticmethod(time.time)

    def call_later(
        self, delay: float, callback: Callable[..., Any], *args: Any
    ) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_later(delay, callback, *args)

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(delay)

    def __repr__(self) -> str:
        return "<SystemClock>"


class _ManualTimer:
    __slots__ = ("_args", "_callback", "cancelled")

    def __init__(self, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self._callback = callback
        self._args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def fire(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self._callback(*self._args)


class ManualClock:
    """A clock that stands still until `advance()` moves it; for tests.

    Timers due at or before the new time fire in deadline order, each seeing `now()` equal to
    its own deadline, and the loop gets a chance to run what they woke before the next fires.
    """

    def __init__(self, start: float = 0.0, *, wall_start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_start - start
        self._timers: list[tuple[float, int, _ManualTimer]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._now + self._wall_offset

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> _ManualTimer:
        timer = _ManualTimer(callback, args)
        heapq.heappush(self._timers, (self._now + max(0.0, delay), next(self._order), timer))
        return timer

    async def sleep(self, delay: float) -> None:
        future = asyncio.get_running_loop().create_future()
        timer = self.call_later(delay, _resolve, future)
        try:
            await future
        finally:
            timer.cancel()

    @property
    def pending_timers(self) -> int:
        return sum(1 for _, _, timer in self._timers if not timer.cancelled)

    async def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, firing every timer that comes due on the way."""
        if seconds < 0:
            raise ValueError(f"cannot move a clock backwards (advance({seconds!r}))")
        if not math.isfinite(seconds):  # NaN would pass the check above and poison now()
            raise ValueError(f"advance() needs a finite number of seconds, not {seconds!r}")
        target = self._now + seconds
        await settle()
        while self._timers and self._timers[0][0] <= target:
            deadline, _, timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self._now = max(self._now, deadline)
            timer.fire()
            await settle()
        self._now = target
        await settle()

    def __repr__(self) -> str:
        return f"<ManualClock now={self._now:g} timers:{self.pending_timers}>"


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def settle(rounds: int = 20) -> None:
    """Let the event loop run whatever is ready, a few rounds deep."""
    for _ in range(rounds):
        await asyncio.sleep(0)
