"""Which finished jobs the scheduler still holds: the newest `limit`, none older than `ttl`,
and no more tasks than the scheduler's `max_tasks` leaves them.

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
    """Finished job ids, oldest first, with the monotonic time each finished and its tasks."""

    __slots__ = ("_entries", "limit", "tasks", "ttl")

    def __init__(self, limit: int, ttl: float | None = None) -> None:
        if not isinstance(limit, int) or limit < 0:
            raise ValidationError(f"retain_finished_jobs must be 0 or more, not {limit!r}")
        if ttl is not None and not (isinstance(ttl, int | float) and 0 <= ttl < math.inf):
            raise ValidationError(
                f"retain_finished_for must be None or a finite number of seconds >= 0, not {ttl!r}"
            )
        self.limit = limit
        self.ttl = ttl
        self._entries: deque[tuple[str, float, int]] = deque()
        self.tasks = 0
        """Tasks of the jobs held."""

    def add(self, job_id: str, finished_at: float, tasks: int) -> None:
        """Note that `job_id`, of `tasks` tasks, finished at `finished_at` (the clock's
        `now()`, never earlier than the previous job's: the deque stays ordered by it)."""
        self._entries.append((job_id, finished_at, tasks))
        self.tasks += tasks

    def evict(self, now: float, *, max_tasks: int | None = None) -> Iterator[str]:
        """Take out and yield the ids over the count limit, then those past the TTL, then
        the oldest while they hold more than `max_tasks` tasks (None: no such bound)."""
        entries = self._entries
        while len(entries) > self.limit:
            yield self._pop()
        if self.ttl is not None:
            deadline = now - self.ttl
            while entries and entries[0][1] <= deadline:
                yield self._pop()
        if max_tasks is not None:
            while entries and self.tasks > max_tasks:
                yield self._pop()

    def _pop(self) -> str:
        job_id, _, tasks = self._entries.popleft()
        self.tasks -= tasks
        return job_id

    def discard(self, job_id: str) -> None:
        """Forget `job_id` (a job dropped by hand); O(n), which only `forget` pays."""
        for entry in self._entries:
            if entry[0] == job_id:
                self._entries.remove(entry)
                self.tasks -= entry[2]
                return

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        ttl = "none" if self.ttl is None else f"{self.ttl:g}s"
        return f"<FinishedJobs {len(self)}/{self.limit} tasks:{self.tasks} ttl:{ttl}>"
