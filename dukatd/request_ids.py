"""Submit's idempotency: the job each request id made, for as long as the scheduler holds it."""

from __future__ import annotations

from dukat.core.scheduler import Scheduler

__all__ = ["RequestIds"]


class RequestIds:
    """request_id -> job_id of a Submit, kept only while the scheduler still holds the job.

    Memory stays proportional to the jobs the scheduler retains (its own bound): whenever the
    table has doubled since the last sweep, entries of jobs the scheduler has dropped go.
    Each sweep is paid for by the entries added since, so adding stays O(1) amortised.
    """

    __slots__ = ("_jobs", "_scheduler", "_sweep_at")

    MIN_SWEEP = 64

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler
        self._jobs: dict[str, str] = {}
        self._sweep_at = self.MIN_SWEEP

    def get(self, request_id: str) -> str | None:
        job_id = self._jobs.get(request_id) if request_id else None
        if job_id is not None and job_id not in self._scheduler:
            del self._jobs[request_id]
            return None
        return job_id

    def add(self, request_id: str, job_id: str) -> None:
        if not request_id:
            return
        self._jobs[request_id] = job_id
        if len(self._jobs) >= self._sweep_at:
            held = self._scheduler
            self._jobs = {r: j for r, j in self._jobs.items() if j in held}
            self._sweep_at = max(self.MIN_SWEEP, 2 * len(self._jobs))

    def __len__(self) -> int:
        return len(self._jobs)
