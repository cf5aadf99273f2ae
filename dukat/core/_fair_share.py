"""Fair share between jobs: which job's ready task runs next.

Jobs with ready tasks sit in a heap ordered by (best priority, virtual time, arrival). Each
time a job gets a slot its virtual time moves on one turn, so jobs of equal priority take
turns — a 3-task job is never stuck behind a 100,000-task one — and a job that comes back
after being idle starts at the current virtual time, not with credit saved up. Within a job,
its `ReadyQueue` orders tasks by (priority, arrival).

Entries are never removed from the middle of the heap: a job's entry goes stale when a
newer one replaces it (its `heap_token` moved on) or when the job reaches its own limit; a
stale entry is dropped when it surfaces.
"""

from __future__ import annotations

import heapq

from dukat.core._runs import JobRun, TaskRun
from dukat.core._task_states import READY

__all__ = ["FairShare"]


class FairShare:
    __slots__ = ("_heap", "_vtime", "queued")

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, int, int, JobRun]] = []
        self._vtime = 0
        self.queued = 0  # entries in the jobs' ready queues, stale ones included

    def push(self, run: TaskRun) -> None:
        """Queue a READY task in its job and make sure the job is offered."""
        job = run.job
        priority = run.spec.priority
        job.ready.push(run, priority)
        self.queued += 1
        if not job.in_heap or -priority < job.heap_priority:
            self.offer(job)

    def offer(self, job: JobRun) -> None:
        """Put the job in the heap of jobs with ready tasks, if it may run one more."""
        if not job.ready.size or job.active >= job.limit:
            return
        head = -job.ready.top_priority
        if job.in_heap and head >= job.heap_priority:
            return  # its entry in the heap is already as good
        heap = self._heap
        if len(heap) == 1:  # a lone job's entry may have a stale key (see pop)
            alone = heap[0][4]
            if alone is not job and heap[0][3] == alone.heap_token and alone.ready.size:
                alone.heap_priority = alone_head = -alone.ready.top_priority
                heap[0] = (alone_head, alone.vpass, alone.order, alone.heap_token, alone)
        job.vpass = max(job.vpass, self._vtime)
        job.heap_token += 1
        job.heap_priority = head
        job.in_heap = True
        heapq.heappush(heap, (head, job.vpass, job.order, job.heap_token, job))

    def pop(self) -> TaskRun | None:
        """The next ready task, by job fair share then (priority, arrival); marks it in flight."""
        heap = self._heap
        while heap:
            token, job = heap[0][3:]
            if token != job.heap_token or job.active >= job.limit:
                heapq.heappop(heap)
                if token == job.heap_token:
                    job.in_heap = False  # offered again when one of its tasks leaves flight
                continue
            ready = job.ready
            run = None
            while ready.size:
                candidate = ready.pop()
                self.queued -= 1
                if candidate.state is READY:  # else cancelled while it waited
                    run = candidate
                    break
            if run is None:
                heapq.heappop(heap)
                job.in_heap = False
                continue
            vpass = job.vpass  # the entry's copy may be stale: see below
            self._vtime = vpass
            job.vpass = vpass + 1
            job.active += 1
            run.in_flight = True
            if ready.size and job.active < job.limit:
                if len(heap) > 1:  # others are waiting: this job's next turn is later
                    job.heap_token += 1
                    job.heap_priority = head = -ready.top_priority
                    heapq.heapreplace(heap, (head, vpass + 1, job.order, job.heap_token, job))
                # Alone in the heap its entry can stay as it is, whatever its key says;
                # offer() brings the key up to date before another job joins.
            else:
                heapq.heappop(heap)
                job.in_heap = False
            return run
        return None

    def __repr__(self) -> str:
        return f"<FairShare jobs:{len(self._heap)} queued:{self.queued} vtime:{self._vtime}>"
