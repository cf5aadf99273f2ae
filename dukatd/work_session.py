"""One worker's Work stream: a reader of its updates, a writer of batched assignments.

The servicer says hello through `WorkerHub.connect` and then awaits `serve`, which runs the
writer in the call's own task and the reader beside it. Whatever ends the stream (the
worker closing its side, a protocol error, missed heartbeats, the client gone) ends in the
servicer's `finally` with `WorkerHub.disconnect`; missed heartbeats and protocol errors
also give the attempts up at once, without waiting for a write that may be stuck behind
flow control to a worker that stopped reading.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc

from dukat.v1 import scheduler_pb2, work_pb2
from dukatd.handlers import Undecodable
from dukatd.status import Refusal

if TYPE_CHECKING:
    from dukatd.work_hub import WorkerHub, _Attempt

__all__ = ["WorkerSession"]

ASSIGNED = 1  # dukatd.work_hub's states, repeated to keep the import one-way


class WorkerSession:
    """A connected worker: its terms, what it holds, and what is to be sent to it."""

    __slots__ = (
        "_ended",
        "_failure",
        "_signal",
        "_task",
        "_timer",
        "_writing",
        "cancels",
        "hub",
        "last_heard",
        "max_in_flight",
        "messages_sent",
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
        self.outstanding: dict[tuple[str, str, int], _Attempt] = {}
        self.to_send: deque[_Attempt] = deque()
        self.cancels: list[work_pb2.TaskCancel] = []
        self.last_heard = hub.clock()
        self.messages_sent = 0
        self._signal: asyncio.Future[None] | None = None
        self._failure: BaseException | None = None
        self._ended = False
        self._writing = False
        self._task: asyncio.Task[Any] | None = None
        self._timer: asyncio.TimerHandle | None = None

    @property
    def credit(self) -> int:
        return self.max_in_flight - len(self.outstanding)

    def assign(self, attempt: _Attempt) -> None:
        attempt.state = ASSIGNED
        attempt.session = self
        self.outstanding[attempt.key] = attempt
        self.to_send.append(attempt)
        self._poke()

    def take_back(self, attempt: _Attempt, reason: str) -> None:
        """The daemon gave `attempt` up; tell the worker if it has it already."""
        if attempt.sent:
            job_id, task_id, number = attempt.key
            self.cancels.append(
                work_pb2.TaskCancel(job_id=job_id, task_id=task_id, attempt=number, reason=reason)
            )
            self._poke()
        # Not sent yet: the writer drops it and frees its slot, the worker never hears of it.

    def _poke(self) -> None:
        signal = self._signal
        if signal is not None and not signal.done():
            signal.set_result(None)

    # -- the stream ---------------------------------------------------------------------------

    async def serve(
        self,
        requests: AsyncIterator[Any],
        write: Callable[[scheduler_pb2.WorkResponse], Awaitable[None]],
    ) -> None:
        """Write until the stream ends; raises what ended it (a Refusal for the status)."""
        loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        reader = loop.create_task(self._read(requests), name=f"dukat-work-{self.worker_id}")
        reader.add_done_callback(self._reader_done)
        self._timer = loop.call_later(self.hub.heartbeat_interval, self._check_heartbeat)
        try:
            while True:
                if self._failure is not None:
                    raise self._failure
                if self.to_send or self.cancels:
                    ready = len(self.to_send)  # assigned before the wait, so made durable
                    before_send = self.hub.before_send
                    if ready and before_send is not None:
                        await before_send()
                    message = self._next_message(ready)
                    if message is not None:
                        self._writing = True
                        await write(message)
                        self._writing = False
                        self.messages_sent += 1
                    continue
                if self._ended:
                    return
                self._signal = loop.create_future()
                await self._signal
                self._signal = None
        finally:
            self._timer.cancel()
            reader.cancel()

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
            if attempt.state != ASSIGNED:  # given up before it went out
                self.outstanding.pop(attempt.key, None)
                freed = True
                continue
            attempt.sent = True
            message, length = attempt.to_proto(now)
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
            self._poke()
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
        self._fail(error, "missed its heartbeats")

    def _fail(self, error: BaseException, reason: str) -> None:
        self._failure = error
        # Now, not when the writer gets to it: it may be stuck writing to this very worker.
        self.hub.disconnect(self, reason)
        self._poke()
        if self._writing and self._task is not None:
            self._task.cancel()

    def __repr__(self) -> str:
        return (
            f"<WorkerSession {self.worker_id!r} {len(self.outstanding)}/{self.max_in_flight} "
            f"queues:{','.join(self.queues)}>"
        )
