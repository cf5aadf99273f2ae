"""A job's ready tasks, in (priority, arrival) order.

A FIFO per priority plus a heap of the priorities present: the common case of one priority is
a deque append and popleft, O(1), with no tuple comparisons at all.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class ReadyQueue(Generic[T]):
    __slots__ = ("_fifos", "_priorities", "size")

    def __init__(self) -> None:
        self._fifos: dict[int, deque[T]] = {}
        self._priorities: list[int] = []  # heap of -priority, one per non-empty FIFO
        self.size = 0

    def push(self, item: T, priority: int) -> None:
        fifo = self._fifos.get(priority)
        if fifo is None:
            fifo = self._fifos[priority] = deque()
            heapq.heappush(self._priorities, -priority)
        fifo.append(item)
        self.size += 1

    def pop(self) -> T:
        """The oldest item of the highest priority; IndexError when empty."""
        priority = -self._priorities[0]
        fifo = self._fifos[priority]
        item = fifo.popleft()
        if not fifo:
            heapq.heappop(self._priorities)
            del self._fifos[priority]
        self.size -= 1
        return item

    @property
    def top_priority(self) -> int:
        return -self._priorities[0]

    def __bool__(self) -> bool:
        return self.size > 0

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return f"<ReadyQueue {self.size} at priorities {sorted(self._fifos, reverse=True)}>"
