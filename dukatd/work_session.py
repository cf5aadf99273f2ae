"""One worker's Work stream: a reader of its updates, a writer of batched assignments.

The servicer says hello through `WorkerHub.connect` and then awaits `serve`, which runs the
writer in the call's own task and the reader beside it. Whatever ends the stream (the
worker closing its side, a protocol error, missed heartbeats, the client gone) ends in the
servicer's `finally` with `WorkerHub.disconnect`. The writer keeps the daemon's side of the
heartbeat: a worker that has heard nothing for a heartbeat interval gets an empty message,
also while the writer waits for the journal (a full disk can hold it for long).

A stream the daemon fails (`_fail`: a protocol error, missed heartbeats, a bug) takes one
path: its attempts are given up at once, and the writer is cancelled wherever it waits —
also in a write stuck behind flow control to a worker that stopped reading — and raises the
failure instead, so that the servicer ends the call with its status. A cancelled write is
not taken back: HTTP/2 sends the status after the bytes already queued on the stream, so the
worker gets it as soon as it reads them (grpc.aio has no server-side cancel that would drop
them); a worker that never reads again never sees it, and its call lingers until it goes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc

from dukat import convert
from dukat.v1 import scheduler_pb2, work_pb2
from dukatd.handlers import Undecodable
from dukatd.status import Refusal
from dukatd.work_attempt import ASSIGNED, Attempt, AttemptKey, move

if TYPE_CHECKING:
    from dukatd.work_hub import WorkerHub

__all__ = ["WorkerSession"]

HEARTBEAT = scheduler_pb2.WorkResponse()  # nothing to say, but the daemon is there


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
        self, hub: WorkerHub, worker_id: str, queues: tuple[str, ...], max_in_flight: int
    ) -> None:
        self.hub = hub
        self.worker_id = worker_id
        self.queues = queues
        self.max_in_flight = max_in_flight
        self.outstanding: dict[AttemptKey, Attempt] = {}
        self.to_send: deque[Attempt] = deque()
        self.cancels: list[work_pb2.TaskCancel] = []
        self.draining = False  # the worker takes nothing new (WorkerHub.drain)
        self.last_heard = self.last_sent = hub.clock()  # the welcome goes right after
        self._signal: asyncio.Future[None] | None = None
        self._failure: BaseException | None = None
        self._ended = False
        self._task: asyncio.Task[Any] | None = None
        self._timer: asyncio.TimerHandle | None = None

    @property
    def credit(self) -> int:
        return self.max_in_flight - len(self.outstanding)

    def assign(self, attempt: Attempt) -> None:
        move(attempt, ASSIGNED)
        attempt.session = self
        self.outstanding[attempt.key] = attempt
        self.to_send.append(attempt)
        self.poke()

    def take_back(self, attempt: Attempt, reason: str) -> None:
        """The daemon gave `attempt` up; tell the worker if it has it already."""
        if attempt.sent:
            job_id, task_id, number = attempt.key
            self.cancels.append(
                work_pb2.TaskCancel(job_id=job_id, task_id=task_id, attempt=number, reason=reason)
            )
            self.poke()
        # Not sent yet: the writer drops it and frees its slot, the worker never hears of it.

    def poke(self) -> None:
        """Wake the writer: something to send, or the stream may be over."""
        signal = self._signal
        if signal is not None and not signal.done():
            signal.set_result(None)

    # -- the stream ---------------------------------------------------------------------------

    async def serve(self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> None:
        """Write until the stream ends; raises what ended it (a Refusal for the status)."""
        loop = asyncio.get_running_loop()
        task = self._task = asyncio.current_task()
        assert task is not None
        reader = loop.create_task(self._read(requests), name=f"dukat-work-{self.worker_id}")
        reader.add_done_callback(self._reader_done)
        self._timer = loop.call_later(self.hub.heartbeat_interval, self._check_heartbeat)
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
        try:
            while True:
                left = self.last_sent + hub.heartbeat_interval - hub.clock()
                if left <= 0:
                    await self._write(HEARTBEAT, context)
                    continue
                await asyncio.wait((waited,), timeout=left)
                if waited.done():
                    waited.result()  # what before_send raised, raised here
                    return
        finally:
            waited.cancel()  # no-op once done; we were cancelled: stop waiting for it too

    async def _write(
        self, message: scheduler_pb2.WorkResponse, context: grpc.aio.ServicerContext
    ) -> None:
        await context.write(message)
        self.last_sent = self.hub.clock()

    def _next_message(self, ready: int) -> scheduler_pb2.WorkResponse | None:
        """Cancels, and assignments from the first `ready` of `to_send`, as one message."""
        hub = self.hub
        batch = []
        size = 0
        freed = False
        to_send = self.to_send
        now = hub.clock()
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
        return scheduler_pb2.WorkResponse(assignments=batch, cancels=cancels)

    async def _read(self, requests: AsyncIterator[Any]) -> None:
        hub = self.hub
        clock = hub.clock
        async for request in requests:
            if isinstance(request, Undecodable):
                raise Refusal(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"a message is not a valid {request.message_name}: {request.reason}",
                )
            kind = request.WhichOneof("kind")
            if kind != "update":
                if kind == "hello":
                    raise Refusal(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        "a second hello: a worker says hello once, first; then updates",
                    )
                raise Refusal(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "a WorkRequest with neither hello nor update; send an empty update as "
                    "a heartbeat",
                )
            self.last_heard = clock()
            hub.apply(self, request.update)

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
        silent = hub.clock() - self.last_heard
        if silent <= hub.heartbeat_timeout:
            delay = min(hub.heartbeat_interval, hub.heartbeat_timeout - silent) + 0.001
            self._timer = asyncio.get_running_loop().call_later(delay, self._check_heartbeat)
            return
        error = Refusal(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            f"worker {self.worker_id!r} sent nothing for {silent:.1f}s, more than the "
            f"heartbeat_timeout of {hub.heartbeat_timeout:g}s: its tasks were given up",
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
