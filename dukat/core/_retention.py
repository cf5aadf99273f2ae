"""Which jobs the scheduler holds, and letting go of them: what a live job held when it
ends, and the finished ones kept for GetJob, Watch and ListJobs until retention drops them.

The finished jobs kept are the newest `limit`, none older than `ttl`, and no more tasks than
the scheduler's `max_tasks` leaves them.

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
from collections.abc import Callable, Iterator

from dukat.core._holdings import Holdings
from dukat.core._runs import JobRun
from dukat.core._slots import Slots
from dukat.core.breaker import BreakerRegistry
from dukat.core.clock import Clock
from dukat.core.events import EventLog
from dukat.errors import ValidationError

__all__ = ["FinishedJobs", "Retention"]


class FinishedJobs:
    """Finished job ids, oldest first, with the monotonic time each finished and its tasks."""

    __slots__ = ("_entries", "limit", "tasks", "ttl")

    def __init__(self, limit: int, ttl: float | None = None) -> None:
        if not isinstance(limit, int) or limit < 0:
            raise ValidationError(f"retain_finished_jobs must be 0 or more, not {limit!r}")
        if ttl is not None and not (isinstance(ttl, int | float) and 0 <= ttl < math.inf):
            raise ValidationError(
                f"finished_job_ttl must be None or a finite number of seconds >= 0, not {ttl!r}"
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


class Retention:
    """The jobs held, by id: live ones, and finished ones until `finished` lets them go."""

    __slots__ = (
        "_breakers",
        "_clock",
        "_holdings",
        "_slots",
        "drop_listeners",
        "finished",
        "jobs",
        "unpublished",
    )

    def __init__(
        self,
        finished: FinishedJobs,
        holdings: Holdings,
        breakers: BreakerRegistry,
        slots: Slots,
        clock: Clock,
    ) -> None:
        self.jobs: dict[str, JobRun] = {}
        self.finished = finished
        self._holdings = holdings
        self._breakers = breakers
        self._slots = slots
        self._clock = clock
        # Held logs of dropped jobs not yet published to their end: their watchers still
        # wait for `publish` to show them the rest (the terminal event, at least).
        self.unpublished: dict[str, EventLog] = {}
        self.drop_listeners: list[Callable[[str], None]] = []

    def job_ended(self, job: JobRun) -> None:
        """A live job reached its terminal state: let go of what it held while live (its
        breakers, the collector's hold, its room among the live tasks), keep it finished."""
        self._breakers.release(job.breakers)  # others may have them once nobody uses them
        if job.gc_hold is not None:
            job.gc_hold.release()
            job.gc_hold = None
        self._holdings.finish(len(job.tasks))
        self.finished.add(job.id, self._clock.now(), len(job.tasks))
        self.evict()
        if not self._holdings.live_jobs:
            self._slots.retire_idle()

    def hold_ended(self, job: JobRun) -> None:
        """Hold a restored job that had finished, as if it had just finished then."""
        self._breakers.release(job.breakers)
        self.jobs[job.id] = job
        # The retention clock is monotonic: place the finish as far back as the wall says.
        age = max(0.0, self._clock.wall() - job.finished_at)  # type: ignore[operator]
        self.finished.add(job.id, self._clock.now() - age, len(job.tasks))

    def evict(self, room: int = 0) -> None:
        """Drop the finished jobs past retention, and as many more as it takes to leave
        `room` tasks under `max_tasks`."""
        keep = self._holdings.finished_may_keep(room)
        for job_id in self.finished.evict(self._clock.now(), max_tasks=keep):
            job = self.jobs.get(job_id)
            if job is not None:
                self.drop(job)

    def forget(self, job: JobRun) -> None:
        """Drop a finished job now."""
        self.finished.discard(job.id)
        self.drop(job)

    def drop(self, job: JobRun) -> None:
        """Let go of a finished job, and of the one reference cycle in its records.

        Each task's record points back at its job, whose table points at the tasks: left to
        the cyclic collector, a dropped job of 100,000 tasks waited for a full collection,
        which then spent 250 ms on it. Without the back references, reference counting
        frees the records as soon as the last holder of the job (a reader still sending
        its results, say) lets go; their tasks, results and events all stay readable."""
        del self.jobs[job.id]
        if not job.log.ended:  # held, its end not published yet: `publish` still owes it
            self.unpublished[job.id] = job.log
        for run in job.tasks.values():
            run.job = None
        for listener in self.drop_listeners:
            listener(job.id)

    def publish(self, job_id: str, sequence: int) -> None:
        """Let watchers of a held job see its events up to `sequence`, a dropped one's too."""
        job = self.jobs.get(job_id)
        if job is not None:
            job.log.publish(sequence)
            return
        log = self.unpublished.get(job_id)
        if log is not None:
            log.publish(sequence)
            if log.ended:
                del self.unpublished[job_id]

    def __repr__(self) -> str:
        return f"<Retention jobs:{len(self.jobs)} {self.finished!r}>"
