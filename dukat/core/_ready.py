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

    # An emptied FIFO is kept for its priority's next item (queues often drain to empty and
    # refill one task at a time); only the heap of priorities forgets it.

    def push(self, item: T, priority: int) -> None:
        fifo = self._fifos.get(priority)
        if fifo is None:
            fifo = self._fifos[priority] = deque()
        if not fifo:
            heapq.heappush(self._priorities, -priority)
        fifo.append(item)
        self.size += 1

    def pop(self) -> T:
        """The oldest item of the highest priority; IndexError when empty."""
        fifo = self._fifos[-self._priorities[0]]
        item = fifo.popleft()
        if not fifo:
            heapq.heappop(self._priorities)
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
        present = sorted((p for p, fifo in self._fifos.items() if fifo), reverse=True)
        return f"<ReadyQueue {self.size} at priorities {present}>"
