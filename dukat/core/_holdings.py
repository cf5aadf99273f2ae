"""What the scheduler holds, counted, and its bound on the tasks it holds (`max_tasks`).

A scheduler's memory grows with the tasks it holds: their records, results and events
(`bench/memory.py` measures a daemon's, about 1.5 KB a task). Jobs not finished cannot be
let go, and neither can a job prepared (built, and about to start once its host has made it
durable); finished ones can, as retention does anyway. So a new job is refused only when
those leave it no room, and the scheduler drops finished jobs, oldest first, to make room
for one that fits (`dukat.core._retention` is told how many tasks they may keep).
"""

from __future__ import annotations

from typing import Any

from dukat.errors import CapacityError, ValidationError

__all__ = ["Holdings"]


class Holdings:
    """Counts of the jobs and tasks not finished, and of those prepared, under `limit`."""

    __slots__ = ("_prepared", "limit", "live_jobs", "live_tasks", "prepared_tasks")

    def __init__(self, limit: int | None) -> None:
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise ValidationError(f"max_tasks must be None or at least 1, not {limit!r}")
        self.limit = limit
        self.live_jobs = 0
        self.live_tasks = 0
        self.prepared_tasks = 0
        self._prepared: dict[Any, int] = {}  # a prepared job -> its tasks

    def check_room(self, tasks: int) -> None:
        """`CapacityError` if a new job of `tasks` tasks does not fit beside the jobs that
        cannot be let go."""
        limit = self.limit
        if limit is not None:
            held = self.live_tasks + self.prepared_tasks
            if held + tasks > limit:
                raise CapacityError("max_tasks", limit, held=held, requested=tasks)

    def finished_may_keep(self, room: int = 0) -> int | None:
        """Tasks the finished jobs may hold, leaving `room` for a new job (None: no bound)."""
        if self.limit is None:
            return None
        return self.limit - self.live_tasks - self.prepared_tasks - room

    def prepare(self, job: Any, tasks: int) -> None:
        self._prepared[job] = tasks
        self.prepared_tasks += tasks

    def unprepare(self, job: Any) -> None:
        """A prepared job starts or is abandoned (a no-op the second time)."""
        self.prepared_tasks -= self._prepared.pop(job, 0)

    def admit(self, tasks: int) -> None:
        self.live_jobs += 1
        self.live_tasks += tasks

    def finish(self, tasks: int) -> None:
        self.live_jobs -= 1
        self.live_tasks -= tasks

    def __repr__(self) -> str:
        limit = "none" if self.limit is None else self.limit
        return (
            f"<Holdings jobs:{self.live_jobs} tasks:{self.live_tasks} "
            f"prepared:{self.prepared_tasks} max_tasks:{limit}>"
        )
