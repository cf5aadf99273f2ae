"""Which finished jobs the scheduler still holds: the newest `limit`, none older than `ttl`.

Finished jobs stay for GetJob, Watch and ListJobs after they end, but a daemon that runs
for months must not hold them all (ARCHITECTURE, "Bounded everywhere": jobs retained after
completion, TTL). Jobs finish in time order and the clock is monotonic, so one deque ordered
by finish time answers both bounds from its head: each eviction is O(1) and each job is
evicted once, so the checks cost O(1) amortised and no job needs a timer of its own.

Eviction is lazy: the scheduler asks at each submit, each finish and each lookup of jobs.
A job past its TTL may so stay in memory while nothing happens, but never more than `limit`
of them, and no caller ever sees one.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator

from dukat.errors import ValidationError

__all__ = ["FinishedJobs"]


class FinishedJobs:
    """Finished job ids, oldest first, with the monotonic time each finished."""

    __slots__ = ("_entries", "limit", "ttl")

    def __init__(self, limit: int, ttl: float | None = None) -> None:
        if not isinstance(limit, int) or limit < 0:
            raise ValidationError(f"retain_finished_jobs must be 0 or more, not {limit!r}")
        if ttl is not None and not (isinstance(ttl, int | float) and 0 <= ttl < math.inf):
            raise ValidationError(
                f"retain_finished_for must be None or a finite number of seconds >= 0, not {ttl!r}"
            )
        self.limit = limit
        self.ttl = ttl
        self._entries: deque[tuple[str, float]] = deque()

    def add(self, job_id: str, finished_at: float) -> None:
        """Note that `job_id` finished at `finished_at` (the clock's `now()`, never earlier
        than the previous job's: the deque stays ordered by it)."""
        self._entries.append((job_id, finished_at))

    def evict(self, now: float) -> Iterator[str]:
        """Take out and yield the ids over the count limit, then those past the TTL."""
        entries = self._entries
        while len(entries) > self.limit:
            yield entries.popleft()[0]
        if self.ttl is None:
            return
        deadline = now - self.ttl
        while entries and entries[0][1] <= deadline:
            yield entries.popleft()[0]

    def discard(self, job_id: str) -> None:
        """Forget `job_id` (a job dropped by hand); O(n), which only `forget` pays."""
        for entry in self._entries:
            if entry[0] == job_id:
                self._entries.remove(entry)
                return

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        ttl = "none" if self.ttl is None else f"{self.ttl:g}s"
        return f"<FinishedJobs {len(self)}/{self.limit} ttl:{ttl}>"
