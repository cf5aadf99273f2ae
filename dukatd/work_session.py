"""One worker's Work stream: what the worker holds, a reader of its updates, a writer of
batched assignments.

The servicer says hello through `WorkerHub.connect` and then awaits `serve`, which runs the
writer in the call's own task and the reader beside it. The reader applies each update here
(`apply`: the session resolves the attempts it holds, and tells the hub once an update freed
credit). Whatever ends the stream (the worker closing its side, a protocol error, missed
heartbeats, the client gone) ends in the servicer's `finally` with `WorkerHub.disconnect`.
The writer keeps the daemon's side of the heartbeat: a worker that has heard nothing for a
heartbeat interval gets an empty message, also while the writer waits for the journal (a full
disk can hold it for long). Heartbeats are timed on the hub's clock (`dukat.core.clock`).

A stream the daemon fails (`_fail`: a protocol error, missed heartbeats, a bug) takes one
path: its attempts are given up at once, and the writer is cancelled wherever it waits —
also in a write stuck behind flow control to a worker that stopped reading — and raises the
failure instead, so that the servicer ends the call with its status. A cancelled write is
not taken back: HTTP/2 sends the status after the bytes already queued on the stream, so the
worker gets it as soon as it reads them (grpc.aio has no server-side cancel that would drop
them); a worker that never reads again never sees it, and its call lingers until it goes.
The errors say what went wrong in `dukat.errors` terms; `dukatd.status` gives their status.

The protocol a worker must follow (the Python client's `client.worker(...)` implements it):

1. Open `Work`; send one `WorkRequest{hello}`: at least one queue, `max_in_flight` >= 1 (the
   daemon clamps it to its own cap, `WorkerHub.max_in_flight_cap`, and never says so: it
   just never sends more). An empty `worker_id` gets a made-up one.
2. Read `WorkResponse{welcome}`: `heartbeat_interval`, `heartbeat_timeout`,
   `max_result_bytes`. Send a `WorkerUpdate` at least every `heartbeat_interval` (an empty
   one when idle); silent past `heartbeat_timeout`, the stream ends with DEADLINE_EXCEEDED
   and every attempt it held is given up (interrupted: it runs again). The daemon does the same
   (`daemon_heartbeats`): an empty `WorkResponse` when it has sent nothing for an interval,
   so a worker that hears nothing for `heartbeat_timeout` may end the stream and say hello
   again.
3. Every later `WorkResponse` may carry many `assignments` and `cancels`; read the
   assignments first. Never more than `max_in_flight` assignments are outstanding: one is
   outstanding from when it is sent until its `WorkResult` arrives (also after a cancel).
   A message's assignments total about `WorkerHub.max_batch_bytes` of payload, but one
   big assignment travels alone: raise the channel's receive limit (grpc's default is
   4 MiB) to the daemon's message limit if payloads or upstream results can be large.
4. Send results and progress batched: everything ready, in one `WorkerUpdate`. Echo
   `(job_id, task_id, attempt)` exactly. A result for an attempt the daemon gave up
   (cancelled, timed out) is ignored but frees its slot; a result or progress report for
   an attempt never assigned on this stream whose job the daemon still holds is ignored
   (fencing); for a job it does not know, the stream ends with FAILED_PRECONDITION.
5. A `TaskCancel`: stop the attempt, then send a `WorkResult` for it (an error will do).
6. Results belong to the stream their assignment came on: after a reconnect, drop what is
   unsent from the old stream (the daemon gave those attempts up when it ended) and say
   hello again.
7. Misuse ends the stream, the daemon keeps serving others: no hello first or a second
   hello (FAILED_PRECONDITION); a bad hello, a result without an outcome or with empty
   ids, a progress fraction outside 0..1 (NaN too), undecodable bytes (INVALID_ARGUMENT).
   The attempts the stream held are given up at once; its status follows the messages
   already sent, also when the worker had stopped reading. A success payload over
   `max_result_bytes` fails that attempt (not retryable) and keeps the stream.
   A worker that half-closes its side ends the stream (status OK); what it held is given up.
8. `WorkerUpdate.draining`: the worker takes nothing new. It is assigned nothing more, what
   was assigned to it but not sent yet goes back to its queue first in line, and the daemon
   ends the stream OK once the worker holds nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Protocol

import grpc

from dukat import convert
from dukat.core.clock import Clock
from dukat.errors import (
    HeartbeatTimeoutError,
    ProtocolError,
    TaskFailedRemotely,
    TaskInterruptedError,
    ValidationError,
)
from dukat.v1 import scheduler_pb2, work_pb2
from dukatd.handlers import Undecodable
from dukatd.work_attempt import ASSIGNED, DONE, Attempt, AttemptKey, move

__all__ = ["Hub", "WorkerSession"]

_log = logging.getLogger(__name__)

STOPPED = "the daemon stopped the attempt"  # a TaskCancel's reason


class Hub(Protocol):
    """What a session uses of the hub that connected it (`dukatd.work_hub.WorkerHub`, which
    imports this module): the terms and the clock, and what the session tells it."""

    clock: Clock
    heartbeat_interval: float
    heartbeat_timeout: float
    max_result_bytes: int
    max_batch: int
    max_batch_bytes: int
    before_send: Callable[[], Awaitable[object]] | None
    sessions: set[WorkerSession]

    def credit_freed(self, session: WorkerSession) -> None: ...

    def holds_job(self, job_id: str) -> bool: ...

    def stop_serving(self, session: WorkerSession) -> None: ...

    def requeue(self, attempts: Iterable[Attempt]) -> None: ...

    def disconnect(
        self, session: WorkerSession, reason: str, cause: str = "worker_lost"
    ) -> None: ...


class WorkerSession:
    """A connected worker: its terms, what it holds, and what is to be sent to it."""

    __slots__ = (
        "_ended",
        "_failure",
        "_signal",
        "_task",
        "_timer",
        "cancels",
        "draining",
        "hub",
        "last_heard",
        "last_sent",
        "max_in_flight",
        "outstanding",
        "queues",
        "to_send",
        "worker_id",
    )

    def __init__(
        self, hub: Hub, worker_id: str, queues: tuple[str, ...], max_in_flight: int
    ) -> None:
        self.hub = hub
        self.worker_id = worker_id
        self.queues = queues
        self.max_in_flight = max_in_flight
        self.outstanding: dict[AttemptKey, Attempt] = {}
        self.to_send: deque[Attempt] = deque()
        self.cancels: list[work_pb2.TaskCancel] = []
        self.draining = False  # the worker takes nothing new (`drain`)
        self.last_heard = self.last_sent = hub.clock.now()  # the welcome goes right after
        self._signal: asyncio.Future[None] | None = None
        self._failure: BaseException | None = None
        self._ended = False
        self._task: asyncio.Task[Any] | None = None
        self._timer: Any = None  # the heartbeat check's TimerHandle

    @property
    def credit(self) -> int:
        return self.max_in_flight - len(self.outstanding)

    # -- what the hub hands over ----------------------------------------------------------

    def assign(self, attempt: Attempt) -> None:
        move(attempt, ASSIGNED)
        attempt.session = self
        self.outstanding[attempt.key] = attempt
        self.to_send.append(attempt)
        self.poke()

    def take_back(self, attempt: Attempt) -> None:
        """The daemon gave `attempt` up; tell the worker if it has it already."""
        if attempt.sent:
            self.cancels.append(convert.task_cancel_to_proto(attempt.key, STOPPED))
            self.poke()
        # Not sent yet: the writer drops it and frees its slot, the worker never hears of it.

    def poke(self) -> None:
        """Wake the writer: something to send, or the stream may be over."""
        signal = self._signal
        if signal is not None and not signal.done():
            signal.set_result(None)

    def interrupt(self, reason: str, cause: str) -> int:
        """The stream is over: every attempt held is interrupted ("worker 'w1' `reason`",
        `cause` as `TaskInterruptedError` names them). How many the engine still awaited."""
        lost = 0
        for attempt in self.outstanding.values():
            if attempt.state is ASSIGNED:
                move(attempt, DONE)
                if not attempt.future.done():
                    lost += 1
                    attempt.future.set_exception(
                        TaskInterruptedError(f"worker {self.worker_id!r} {reason}", cause=cause)
                    )
        self.outstanding.clear()
        self.to_send.clear()
        return lost

    # -- what the worker sends ------------------------------------------------------------

    def apply(self, update: work_pb2.WorkerUpdate) -> None:
        """Results and progress from the worker."""
        outstanding = self.outstanding
        freed = False
        # Progress first: an update may carry the progress and the result of one attempt.
        for progress in update.progress:
            key = convert.report_key(progress)
            attempt = outstanding.get(key)
            if attempt is None:
                self._unmatched(key)
                continue
            fraction, message = convert.work_progress_from_proto(progress)
            if attempt.state is ASSIGNED:
                attempt.context.report_progress(fraction, message)
        max_result_bytes = self.hub.max_result_bytes
        for result in update.results:
            outcome = convert.work_outcome_from_proto(result, max_result_bytes)
            key = convert.report_key(result)
            attempt = outstanding.pop(key, None)
            if attempt is None:
                self._unmatched(key)
                continue
            freed = True
            if attempt.state is not ASSIGNED:
                continue  # given up: its slot is free now, its outcome means nothing
            move(attempt, DONE)
            future = attempt.future
            if future.done():
                continue
            if isinstance(outcome, TaskFailedRemotely):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
        if update.draining:
            self.drain()
        if freed:
            if self.draining:
                self.poke()  # its stream ends once it holds nothing more
            else:
                self.hub.credit_freed(self)

    def _unmatched(self, key: AttemptKey) -> None:
        """A report for nothing this session holds: stale (ignored) or nonsense (refused)."""
        convert.check_report_key(key)
        job_id, task_id, attempt = key
        if not self.hub.holds_job(job_id):
            raise ProtocolError(
                f"a report for job {job_id!r}, which this daemon does not hold: report only "
                "attempts assigned on this stream"
            )
        _log.debug("ignored a report for %s/%s attempt %d: not current", job_id, task_id, attempt)

    def drain(self) -> None:
        """The worker takes nothing new (WorkerUpdate.draining): it is assigned nothing more,
        and what was assigned to it but not sent yet goes back to its queue, first in line.
        What it holds it finishes; its stream ends once it holds nothing. Idempotent."""
        hub = self.hub
        if self.draining or self not in hub.sessions:
            return
        self.draining = True
        hub.stop_serving(self)
        unsent = [attempt for attempt in self.to_send if attempt.state is ASSIGNED]
        for attempt in self.to_send:
            self.outstanding.pop(attempt.key, None)
        self.to_send.clear()
        hub.requeue(unsent)
        self.poke()  # holding nothing, its stream ends now
        _log.info(
            "worker %r is draining: %d attempts to finish, %d handed back to their queues",
            self.worker_id,
            len(self.outstanding),
            len(unsent),
        )

    # -- the stream ---------------------------------------------------------------------------

    async def serve(self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> None:
        """Write until the stream ends; raises what ended it (for the status)."""
        loop = asyncio.get_running_loop()
        task = self._task = asyncio.current_task()
        assert task is not None
        reader = loop.create_task(self._read(requests), name=f"dukat-work-{self.worker_id}")
        reader.add_done_callback(self._reader_done)
        self._timer = self.hub.clock.call_later(self.hub.heartbeat_interval, self._check_heartbeat)
        try:
            while True:
                if self.to_send or self.cancels:
                    ready = len(self.to_send)  # assigned before the wait, so made durable
                    before_send = self.hub.before_send
                    if ready and before_send is not None:
                        await self._beating(asyncio.ensure_future(before_send()), context)
                    message = self._next_message(ready)
                    if message is not None:
                        await self._write(message, context)
                    continue
                if self._ended or (self.draining and not self.outstanding):
                    return  # the worker left, or drained: it holds nothing more
                self._signal = loop.create_future()
                await self._beating(self._signal, context)
                self._signal = None
        except asyncio.CancelledError:
            # `_fail` stopped us, wherever we waited: end the call with the failure's status.
            # Anyone else's cancellation too (the client gone, the drain) wins over ours.
            if self._failure is None or task.uncancel() > 0:
                raise
            raise self._failure from None
        finally:
            self._timer.cancel()
            reader.cancel()

    async def _beating(
        self, waited: asyncio.Future[Any], context: grpc.aio.ServicerContext
    ) -> None:
        """Wait for `waited`, writing a heartbeat whenever the worker has heard nothing from
        us for a heartbeat interval meanwhile."""
        hub = self.hub
        clock = hub.clock
        try:
            while True:
                left = self.last_sent + hub.heartbeat_interval - clock.now()
                if left <= 0:
                    await self._write(convert.work_response_to_proto(), context)
                    continue
                beat = asyncio.get_running_loop().create_future()
                timer = clock.call_later(left, _resolve, beat)
                try:
                    await asyncio.wait((waited, beat), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    timer.cancel()
                if waited.done():
                    waited.result()  # what before_send raised, raised here
                    return
        finally:
            waited.cancel()  # no-op once done; we were cancelled: stop waiting for it too

    async def _write(
        self, message: scheduler_pb2.WorkResponse, context: grpc.aio.ServicerContext
    ) -> None:
        await context.write(message)
        self.last_sent = self.hub.clock.now()

    def _next_message(self, ready: int) -> scheduler_pb2.WorkResponse | None:
        """Cancels, and assignments from the first `ready` of `to_send`, as one message."""
        hub = self.hub
        batch = []
        size = 0
        freed = False
        to_send = self.to_send
        now = hub.clock.now()
        while ready and to_send and len(batch) < hub.max_batch and size < hub.max_batch_bytes:
            ready -= 1
            attempt = to_send.popleft()
            if attempt.state is not ASSIGNED:  # given up before it went out
                self.outstanding.pop(attempt.key, None)
                freed = True
                continue
            attempt.sent = True
            job_id, task_id, number = attempt.key
            deadline = attempt.deadline
            message, length = convert.task_assignment_to_proto(
                job_id,
                task_id,
                number,
                attempt.action,
                attempt.context.upstream_outcomes,
                None if deadline is None else deadline - now,
            )
            batch.append(message)
            size += length
        cancels = self.cancels
        if cancels:
            self.cancels = []
        if freed:
            hub.credit_freed(self)
        if not batch and not cancels:
            return None
        return convert.work_response_to_proto(batch, cancels)

    async def _read(self, requests: AsyncIterator[Any]) -> None:
        clock = self.hub.clock
        async for request in requests:
            if isinstance(request, Undecodable):
                raise ValidationError(
                    f"a message is not a valid {request.message_name}: {request.reason}"
                )
            update = convert.worker_update_from_proto(request)
            self.last_heard = clock.now()
            self.apply(update)

    def _reader_done(self, reader: asyncio.Task[None]) -> None:
        if reader.cancelled():
            return
        error = reader.exception()
        if error is None:
            self._ended = True  # the worker closed its side: nothing more will come
            self.poke()
        else:
            self._fail(error, f"broke the protocol ({error})")

    def _check_heartbeat(self) -> None:
        hub = self.hub
        silent = hub.clock.now() - self.last_heard
        timeout = hub.heartbeat_timeout
        if silent <= timeout:
            delay = min(hub.heartbeat_interval, timeout - silent) + 0.001
            self._timer = hub.clock.call_later(delay, self._check_heartbeat)
            return
        error = HeartbeatTimeoutError(
            f"worker {self.worker_id!r} sent nothing for {silent:.1f}s, more than the "
            f"heartbeat_timeout of {timeout:g}s: its tasks were given up",
            silent=silent,
            timeout=timeout,
        )
        self._fail(error, f"went silent for {silent:.1f}s")

    def _fail(self, error: BaseException, reason: str) -> None:
        """End the stream for `error`: give its attempts up now, and stop the writer, which
        may be stuck writing to this very worker, so that it raises `error` (module doc)."""
        if self._failure is not None:
            return
        self._failure = error
        self.hub.disconnect(self, reason)
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def __repr__(self) -> str:
        return (
            f"<WorkerSession {self.worker_id!r} {len(self.outstanding)}/{self.max_in_flight} "
            f"queues:{','.join(self.queues)}>"
        )


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
