"""Watching every job at once: one daemon-wide ring of recent events, a cursor per watcher.

A Watch with a job id reads the engine's bounded per-job log (`Scheduler.watch`). A Watch
with an empty job id reads this ring instead:

- The ring holds the newest `capacity` events of every job, and breaker transitions, in
  the order they happened. Its memory is `capacity` events whatever the number of watchers
  and however slow they are: a watcher is only an integer position into it, and reads copy
  at most one batch.
- A scheduler listener fills it, attached only while some watcher is open: with a listener
  the scheduler builds an `Event` object for every record of every job, which its hot path
  otherwise skips (it stores compact tuples). A daemon with a journal fills it from the
  journal instead, with events once they are committed (`source`), as the per-job logs
  show them: no watcher sees a state that a crash could take back.
- Appending never waits and never fails, so a stalled watcher cannot slow the scheduler.
  A watcher whose position the ring has overwritten has lost events: its next read raises
  `FellBehind`, and the servicer ends its stream with RESOURCE_EXHAUSTED. Not a snapshot:
  for "every job" that would be a snapshot of every job, unbounded; a client knows which
  jobs it cares about and resumes each with Watch(job_id, last sequence seen), where the
  engine's per-job log gives it a snapshot if it needs one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from dukat.core.breaker import BreakerTransition
from dukat.core.events import Event
from dukat.errors import FellBehind

if TYPE_CHECKING:
    from dukat.core.scheduler import Scheduler

__all__ = ["EventRing", "FellBehind", "RingCursor"]

RingItem = Event | BreakerTransition


class EventSource(Protocol):
    def add_listener(self, listener: Callable[[Event], None]) -> None: ...

    def remove_listener(self, listener: Callable[[Event], None]) -> None: ...


class EventRing:
    """The newest `capacity` events of every job, shared by the watchers of all jobs."""

    def __init__(
        self, scheduler: Scheduler, capacity: int = 10_000, *, source: EventSource | None = None
    ) -> None:
        """`source`: where the jobs' events come from (`add_listener`/`remove_listener`):
        the scheduler (the default), or the journal, which tells them once committed."""
        if capacity < 1:
            raise ValueError(f"an event ring holds at least one event, not {capacity!r}")
        self.scheduler = scheduler
        self.source: EventSource = source if source is not None else scheduler
        self.capacity = capacity
        self._slots: list[RingItem | None] = [None] * capacity
        self.end = 0  # position the next event gets; positions count from 0 and never wrap
        self.cursors: set[RingCursor] = set()
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def start(self) -> int:
        """The oldest position still held."""
        return max(0, self.end - self.capacity)

    def __len__(self) -> int:
        return self.end - self.start

    def append(self, event: RingItem) -> None:
        """O(1), never blocks: the scheduler calls this for every event while watchers exist."""
        self._slots[self.end % self.capacity] = event
        self.end += 1
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for future in waiters:
                if not future.done():
                    future.set_result(None)

    def open(self) -> RingCursor:
        """A cursor at the end: it sees events from now on."""
        if not self.cursors:
            self.source.add_listener(self.append)
            self.scheduler.breakers.add_listener(self.append)
        cursor = RingCursor(self, self.end)
        self.cursors.add(cursor)
        return cursor

    def _close(self, cursor: RingCursor) -> None:
        self.cursors.discard(cursor)
        if not self.cursors:
            self.source.remove_listener(self.append)
            self.scheduler.breakers.remove_listener(self.append)
            self._slots = [None] * self.capacity  # let the events go with the last watcher

    def read(self, position: int, limit: int) -> list[RingItem]:
        """Up to `limit` events from `position` on; FellBehind if it was overwritten."""
        if position < self.start:
            raise FellBehind(self.start - position, self.capacity)
        stop = min(self.end, position + limit)
        slots, capacity = self._slots, self.capacity
        return [slots[p % capacity] for p in range(position, stop)]  # type: ignore[misc]

    async def wait(self, position: int) -> None:
        """Return once there is an event at `position` or later."""
        while self.end <= position:
            future = asyncio.get_running_loop().create_future()
            self._waiters.append(future)
            try:
                await future
            finally:
                if future in self._waiters:
                    self._waiters.remove(future)

    def __repr__(self) -> str:
        return f"<EventRing {self.start}..{self.end} held:{len(self)} cursors:{len(self.cursors)}>"


class RingCursor:
    """One watcher's place in the ring; use as a context manager to let it go."""

    __slots__ = ("position", "ring")

    def __init__(self, ring: EventRing, position: int) -> None:
        self.ring = ring
        self.position = position

    @property
    def lag(self) -> int:
        """Events appended that this watcher has not read yet."""
        return self.ring.end - self.position

    async def next_batch(self, limit: int) -> list[RingItem]:
        """The next events, waiting for at least one; FellBehind if some were lost."""
        await self.ring.wait(self.position)
        batch = self.ring.read(self.position, limit)
        self.position += len(batch)
        return batch

    def __enter__(self) -> RingCursor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.ring._close(self)

    def __repr__(self) -> str:
        return f"<RingCursor at {self.position} lag:{self.lag}>"
