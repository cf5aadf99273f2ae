"""Dispatch tasks, run by workers over `SchedulerService.Work`: the hub is the engine's runner
for `DispatchAction` (its `admit` and `run`), and holds the queues and the workers serving them.

    hub = WorkerHub(scheduler)   # registers itself on scheduler for DispatchAction
    service = SchedulerService(scheduler, work_hub=hub)

An attempt of a dispatch task is an `Attempt` (`dukatd.work_attempt`: its states, and the one
`move` that changes them), handed to a worker session (`dukatd.work_session`, one worker's
stream, which holds the protocol as a worker sees it); the engine awaits the result that the
worker sends back. Success gives the task a `dukat.actions.DispatchResult` (payload and
content type: its dependents get both). A `WorkError` becomes `dukat.errors.TaskFailedRemotely`,
whose `retryable` the engine's `RetryPolicy` obeys (false: the task fails now, whatever
attempts are left). A worker that leaves or falls silent interrupts its attempts
(`TaskInterruptedError`, "worker 'w1' left"): no failure, they run again at once, maybe
elsewhere, up to the task's `max_interruptions`. Every message is built and read in
`dukat.convert` (`_work`).

Slots: a dispatch task waits for a worker READY, outside the scheduler's `max_concurrency`
slots (`admit`, the engine's admission hook): it goes to a slot, shows RUNNING and starts its
timeout only once a worker serving its queue has credit for it. While it waits it counts
against its job's `max_concurrency`, so that bounds how many of a job's tasks sit on a queue
nobody serves. Admission is a hint: if that credit goes to another attempt first, this one
waits in its slot, RUNNING, for the next (it is not sent back).

Invariants:

- credit: a worker session never holds more than its `max_in_flight` attempts. An attempt
  counts from assignment until its result arrives, also after a cancel, because the worker
  may still be running it (work.proto, TaskCancel).
- fencing: an attempt is found by `(job_id, task_id, attempt)` in the session it was
  assigned on, and leaves it with its first result; a second result, or one for an attempt
  given up and assigned again, finds nothing and is ignored. A future is resolved once.
- fairness: a queue's attempts go round-robin to the workers with credit, the turn carried
  from one hand-out to the next.
- batching: an attempt goes to a session as soon as it runs if nothing older waits on its
  queue and a worker has credit; else it waits on its queue, and attempts that become ready
  in one turn of the loop are handed out in one pass (`_pump`, deferred with call_soon).
  Each session's writer sends everything it has when it gets to write (up to `max_batch`),
  so the stream carries few, large messages.
- admission (`admit`, the engine's hook): a task goes to a scheduler slot only once a
  worker serving its queue has spare credit (credit beyond the attempts already waiting);
  until then it waits READY in `_admitting`, FIFO per queue, and the pump admits as many
  as there is spare credit when credit appears. A hint, not a reservation: credit that
  goes between admission and assignment leaves the attempt WAITING here, as before.
- draining: a draining worker (WorkerUpdate.draining) serves no queue any more: it is
  assigned nothing more, and what was assigned to it but not sent yet goes back to its
  queue, first in line; its stream ends OK once it holds nothing.
- saying why: a task that starts to wait for admission on a queue no worker serves gets a
  `TaskWaiting` event (once per task), GetJob's `waiting_for` says so of every READY
  dispatch task on such a queue (`with_waiting_for`), and `tasks_waiting()` counts the tasks
  waiting for admission, by whether their queue has a worker (metrics).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from functools import partial

from dukat import convert
from dukat.actions import DispatchAction, DispatchResult
from dukat.core.clock import Clock
from dukat.core.context import TaskContext
from dukat.core.results import JobSnapshot
from dukat.core.scheduler import Scheduler
from dukat.core.states import TaskState
from dukat.v1 import scheduler_pb2, work_pb2
from dukatd.work_attempt import DONE, GIVEN_UP, WAITING, Attempt, move
from dukatd.work_session import WorkerSession

__all__ = ["WorkerHub", "WorkersListener"]

WorkersListener = Callable[[int], object]
"""Told the number of workers connected whenever it changes (`WorkerHub.add_listener`)."""

_log = logging.getLogger(__name__)


class WorkerHub:
    """The runner of one scheduler's dispatch tasks: its connected workers, and the attempts
    waiting for them."""

    def __init__(
        self,
        scheduler: Scheduler,
        *,
        heartbeat_interval: float = 10.0,
        heartbeat_timeout: float = 30.0,
        max_result_bytes: int = 1024 * 1024,
        max_batch: int = 1_000,
        max_batch_bytes: int = 1024 * 1024,
        max_in_flight_cap: int = 10_000,
        clock: Clock | None = None,
        install: bool = True,
        before_send: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """`install`: register the hub on `scheduler` as the runner of `DispatchAction`.
        `clock`: what heartbeats and timeouts are measured on (default: the scheduler's).

        `before_send`: awaited before each message of assignments goes out, which then holds
        only attempts assigned before it was called: a journal's `settled`, so that no worker
        runs an attempt whose RUNNING state a crash could take back (the restarted daemon
        would run it again under the same number, not counted against its retries).

        `heartbeat_*`: the terms each worker is welcomed with (seconds). `max_result_bytes`:
        the largest WorkSuccess payload taken. `max_batch` / `max_batch_bytes`: the most
        assignments, and about the most payload bytes, in one WorkResponse (one assignment
        always goes, however big). `max_in_flight_cap`: a worker asking for more slots
        gets this many, so one hello cannot make the daemon hold unbounded work for it.
        """
        if not 0 < heartbeat_interval < heartbeat_timeout:
            raise ValueError(
                "need 0 < heartbeat_interval < heartbeat_timeout, not "
                f"{heartbeat_interval!r} and {heartbeat_timeout!r}"
            )
        for name, value in (
            ("max_result_bytes", max_result_bytes),
            ("max_batch", max_batch),
            ("max_batch_bytes", max_batch_bytes),
            ("max_in_flight_cap", max_in_flight_cap),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number of at least 1, not {value!r}")
        self.scheduler = scheduler
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.max_result_bytes = max_result_bytes
        self.max_batch = max_batch
        self.max_batch_bytes = max_batch_bytes
        self.max_in_flight_cap = max_in_flight_cap
        self.clock: Clock = clock if clock is not None else scheduler.clock
        self.before_send = before_send
        self.sessions: set[WorkerSession] = set()
        self._waiting: dict[str, deque[Attempt]] = {}  # queue -> attempts, oldest first
        self._stale: dict[str, int] = {}  # queue -> given-up attempts still in _waiting
        self._serving: dict[str, list[WorkerSession]] = {}  # queue -> its workers
        self._turn: dict[str, int] = {}  # queue -> round-robin position
        self._admitting: dict[str, deque[asyncio.Future[None]]] = {}  # queue -> tasks, FIFO
        self._dropped: dict[str, int] = {}  # queue -> cancelled futures still in _admitting
        self._unadmitted: dict[str, int] = {}  # queue -> futures in _admitting not done yet
        self._dirty: set[str] = set()  # queues with something new: waiting work or credit
        self._pump_handle: asyncio.Handle | None = None
        self._names = itertools.count(1)
        self._listeners: list[WorkersListener] = []
        if install:
            scheduler.add_runner(DispatchAction, self)

    # -- the engine's side: the runner ------------------------------------------------------

    def admit(self, context: TaskContext) -> asyncio.Future[None] | None:
        """The engine's admission hook: None if a worker on the task's queue has spare
        credit; else a future the pump resolves when one has (the engine keeps the task
        READY, outside its slots)."""
        queue = context.action.queue
        admitting = self._admitting.get(queue)
        if not admitting and self._spare(queue, 1):
            return None
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.add_done_callback(partial(self._admission_over, queue))
        if admitting is None:
            admitting = self._admitting[queue] = deque()
        admitting.append(future)
        self._unadmitted[queue] = self._unadmitted.get(queue, 0) + 1
        if queue in self._serving:
            self._mark(queue)  # behind earlier waiters, but credit may be there for it too
        else:  # it may wait for ever: say so, once per task
            context.report_waiting(self.waiting_for(queue), queue)
        return future

    def waiting_for(self, queue: str) -> str:
        """What a READY task of `queue` waits for that may never come by itself, in words
        (TaskStatus.waiting_for); empty while a worker serves the queue."""
        if queue in self._serving:
            return ""
        return f"a worker for queue {queue!r} (none connected)"

    def with_waiting_for(self, snapshot: JobSnapshot) -> JobSnapshot:
        """`snapshot` with `waiting_for` filled in for its READY dispatch tasks whose queue no
        worker serves (GetJob); the same snapshot when there are none."""
        serving = self._serving
        spec_of = self.scheduler.task_spec
        statuses = list(snapshot.tasks)
        changed = False
        for index, status in enumerate(statuses):
            if status.state is not TaskState.READY:
                continue
            action = spec_of(snapshot.job_id, status.id).action
            if isinstance(action, DispatchAction) and action.queue not in serving:
                statuses[index] = status._replace(
                    waiting_for=self.waiting_for(action.queue), waiting_for_queue=action.queue
                )
                changed = True
        return replace(snapshot, tasks=tuple(statuses)) if changed else snapshot

    def tasks_waiting(self) -> tuple[int, int]:
        """Tasks waiting READY for a worker to take them: (on queues no worker serves, on
        queues whose workers are all busy). Those that are not picked yet (their job at its
        `max_concurrency`) are not counted."""
        unserved = busy = 0
        serving = self._serving
        for queue, count in self._unadmitted.items():
            if queue in serving:
                busy += count
            else:
                unserved += count
        return unserved, busy

    def _spare(self, queue: str, wanted: int) -> int:
        """Credit on `queue` beyond the attempts already waiting on it, up to `wanted`."""
        waiting = self._waiting.get(queue)
        live = len(waiting) - self._stale.get(queue, 0) if waiting else 0
        enough = live + wanted
        credit = 0
        for session in self._serving.get(queue, ()):
            if session.credit > 0:
                credit += session.credit
                if credit >= enough:  # mostly at the first worker: no need to add them all
                    return wanted
        return max(0, credit - live)

    def _admit_waiting(self, queue: str) -> None:
        admitting = self._admitting[queue]
        spare = self._spare(queue, len(admitting))
        while spare and admitting:
            future = admitting.popleft()
            if not future.done():  # else cancelled: the engine let its task go
                future.set_result(None)
            spare -= 1
        if not admitting:
            del self._admitting[queue]
            self._dropped.pop(queue, None)

    def _admission_over(self, queue: str, future: asyncio.Future[None]) -> None:
        left = self._unadmitted[queue] - 1
        if left:
            self._unadmitted[queue] = left
        else:
            del self._unadmitted[queue]
        if not future.cancelled():
            return
        # The engine let the task go (cancelled): as `_give_up` does for attempts, leave it in
        # the deque, and rebuild the deque when most of it is such leftovers. The count is
        # only that heuristic's: the pump may have dropped this one already.
        admitting = self._admitting.get(queue)
        if admitting is None:
            return
        dropped = self._dropped.get(queue, 0) + 1
        if dropped > 64 and 2 * dropped > len(admitting):
            admitting = deque(f for f in admitting if not f.done())
            dropped = 0
            if not admitting:
                del self._admitting[queue]
                self._dropped.pop(queue, None)
                return
            self._admitting[queue] = admitting
        self._dropped[queue] = dropped

    async def run(self, context: TaskContext) -> DispatchResult:
        """Run one attempt: hand it to a worker on the task's queue, or wait for one, then
        wait for its result."""
        timeout = context.timeout
        deadline = None if timeout is None else self.clock.now() + timeout
        attempt = Attempt(context, asyncio.get_running_loop().create_future(), deadline)
        queue = attempt.action.queue
        waiting = self._waiting.get(queue)
        # Nothing older waits on the queue: straight to a worker with credit, if any.
        session = self._with_credit(queue) if waiting is None else None
        if session is not None:
            session.assign(attempt)
        else:
            if waiting is None:
                waiting = self._waiting[queue] = deque()
            waiting.append(attempt)
            if queue in self._serving:
                self._mark(queue)
        try:
            return await attempt.future
        except asyncio.CancelledError:
            # Job or task cancelled, or past its timeout: take the assignment back.
            self._give_up(attempt)
            raise

    def _give_up(self, attempt: Attempt) -> None:
        if attempt.state is DONE:
            return  # its outcome came in as the engine stopped waiting: nothing to take back
        state = move(attempt, GIVEN_UP)
        if state is WAITING:
            # Left in the deque (removing from the middle is O(n)); skipped when reached,
            # and the deque is rebuilt when most of it is such leftovers (a job cancelled
            # while nobody serves its queue must not leave its tasks behind forever).
            queue = attempt.action.queue
            stale = self._stale.get(queue, 0) + 1
            waiting = self._waiting[queue]
            if stale > 64 and 2 * stale > len(waiting):
                self._waiting[queue] = deque(a for a in waiting if a.state is WAITING)
                stale = 0
            self._stale[queue] = stale
        elif attempt.session is not None:  # ASSIGNED
            attempt.session.take_back(attempt)

    # -- handing out --------------------------------------------------------------------------

    def _mark(self, queue: str) -> None:
        self._dirty.add(queue)
        if self._pump_handle is None:
            self._pump_handle = asyncio.get_running_loop().call_soon(self._pump)

    def _with_credit(self, queue: str) -> WorkerSession | None:
        """The next worker in turn on `queue` with credit, if any; the turn moves past it."""
        serving = self._serving.get(queue)
        if not serving:
            return None
        count = len(serving)
        turn = self._turn.get(queue, 0)
        for step in range(count):
            index = (turn + step) % count
            session = serving[index]
            if session.credit > 0:
                self._turn[queue] = index + 1
                return session
        return None

    def requeue(self, attempts: Iterable[Attempt]) -> None:
        """`attempts`, assigned but never sent, go back to their queues first in line, in
        their order (`WorkerSession.drain`)."""
        for attempt in reversed(list(attempts)):
            move(attempt, WAITING)
            attempt.session = None
            queue = attempt.action.queue
            waiting = self._waiting.get(queue)
            if waiting is None:
                waiting = self._waiting[queue] = deque()
            waiting.appendleft(attempt)
            self._mark(queue)

    def credit_freed(self, session: WorkerSession) -> None:
        """`session` has room again: look for work on its queues."""
        for queue in session.queues:
            self._mark(queue)

    def _pump(self) -> None:
        self._pump_handle = None
        dirty, self._dirty = self._dirty, set()
        for queue in dirty:
            waiting = self._waiting.get(queue)
            if not waiting:
                if queue in self._admitting:
                    self._admit_waiting(queue)
                continue
            serving = self._serving.get(queue, [])
            start = self._turn.get(queue, 0) % len(serving) if serving else 0
            # The workers with credit, the one whose turn it is first.
            workers = [s for s in serving[start:] + serving[:start] if s.credit > 0]
            turn = 0
            while waiting and workers:
                attempt = waiting.popleft()
                if attempt.state is not WAITING:
                    self._stale[queue] -= 1
                    continue
                index = turn % len(workers)
                session = workers[index]
                session.assign(attempt)
                if session.credit > 0:
                    turn = index + 1
                else:
                    workers.pop(index)  # the next worker moves into this place
                    turn = index
            if workers:  # the turn, as an index of `serving`, for the next hand-out
                self._turn[queue] = serving.index(workers[turn % len(workers)])
            if not waiting:
                del self._waiting[queue]
                self._stale.pop(queue, None)
                if queue in self._admitting:  # credit left over once every attempt went
                    self._admit_waiting(queue)

    # -- worker sessions ----------------------------------------------------------------------

    def add_listener(self, listener: WorkersListener) -> None:
        """Call `listener(n)` with the number of workers connected, after each connect and
        disconnect (metrics: `dukat_workers_connected`). The count, not +1/-1, so that a
        listener added late, or one that missed a call, is right again at the next."""
        self._listeners.append(listener)
        listener(len(self.sessions))

    def remove_listener(self, listener: WorkersListener) -> None:
        self._listeners.remove(listener)

    def _workers_changed(self) -> None:
        connected = len(self.sessions)
        for listener in self._listeners:
            listener(connected)

    def connect(self, hello: work_pb2.WorkerHello) -> WorkerSession:
        """A session for a worker's hello (ValidationError for a bad one)."""
        worker_id, queues, max_in_flight = convert.worker_hello_from_proto(hello)
        worker_id = worker_id or f"worker-{next(self._names)}"
        session = WorkerSession(self, worker_id, queues, min(max_in_flight, self.max_in_flight_cap))
        self.sessions.add(session)
        for queue in queues:
            self._serving.setdefault(queue, []).append(session)
            self._mark(queue)
        _log.info("worker %r connected: queues %s, %d in flight", worker_id, queues, max_in_flight)
        self._workers_changed()
        return session

    def welcome(self, session: WorkerSession) -> scheduler_pb2.WorkResponse:
        return convert.worker_welcome_to_proto(
            session.worker_id,
            self.heartbeat_interval,
            self.heartbeat_timeout,
            self.max_result_bytes,
            daemon_heartbeats=True,  # WorkerSession.serve keeps the daemon's side
        )

    def stop_serving(self, session: WorkerSession) -> None:
        """`session` is assigned nothing more (it drains, or it is over)."""
        for queue in session.queues:
            serving = self._serving.get(queue)
            if serving is not None and session in serving:
                serving.remove(session)
                if not serving:
                    del self._serving[queue]

    def holds_job(self, job_id: str) -> bool:
        return job_id in self.scheduler

    def disconnect(self, session: WorkerSession, reason: str, cause: str = "worker_lost") -> None:
        """The session is over: the attempts it holds are interrupted ("worker 'w1'
        `reason`": left, went silent for 31.2s, ...; `cause`, as `TaskInterruptedError`
        names them), to run again elsewhere. Idempotent."""
        if session not in self.sessions:
            return
        self.sessions.discard(session)
        self.stop_serving(session)
        lost = session.interrupt(reason, cause)
        _log.info("worker %r %s; %d attempts given up", session.worker_id, reason, lost)
        self._workers_changed()

    def __repr__(self) -> str:
        waiting = sum(len(w) for w in self._waiting.values()) - sum(self._stale.values())
        admitting = sum(not f.done() for a in self._admitting.values() for f in a)
        return f"<WorkerHub workers:{len(self.sessions)} waiting:{waiting} admitting:{admitting}>"
