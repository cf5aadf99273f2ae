"""`Worker`: serve dispatch tasks over SchedulerService.Work (the contract: work.proto).

One stream at a time: a hello, the daemon's welcome, then assignments and cancels come in
while results, progress and heartbeats go out, batched both ways. Everything that ended or
progressed since the last update goes in the next one; an empty update is sent when nothing
happened for the welcome's heartbeat interval.

A worker outlives its daemon (a restart, an upgrade): when the stream breaks (UNAVAILABLE:
the daemon drains or the connection is lost; or no daemon answers at all; or any other status
the daemon ends it with; or, from a daemon that heartbeats too, nothing heard for the welcome's
heartbeat timeout: a daemon stopped or cut off behind a connection that looks open) the daemon
has taken our tasks back and will run them again (interrupted, not failed), so the handlers
still running are cancelled (their results would be for attempts no longer current, on a
stream that is gone) and the worker says hello again at the same address after a backoff
(`WORKER_RECONNECT`: 0.1 s doubling to 5 s, jittered, from the start again once a daemon
welcomes it), until its owner stops it. A status no new stream can change (`FATAL_CODES`: a
wrong token, a refused or malformed hello, a daemon serving no workers) ends the worker with
its `dukat.errors` error.

`drain()` is the other way to stop, for a deploy or a scale-down: the worker tells the daemon
it is draining (WorkerUpdate.draining), so that it is assigned nothing more, finishes what it
holds (an assignment already on its way included) and sends the results; the daemon ends the
stream once it holds nothing, and the worker returns, losing nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Sequence

import grpc

from dukat import convert
from dukat.actions import DispatchTask
from dukat.client._connection import Connection
from dukat.client._errors import from_rpc_error
from dukat.client._reconnect import Backoff, Reconnect
from dukat.errors import DaemonUnavailableError
from dukat.v1 import scheduler_pb2, work_pb2

__all__ = ["FATAL_CODES", "WORKER_RECONNECT", "Handler", "Worker"]

Handler = Callable[[DispatchTask], Awaitable[bytes]]
Key = tuple[str, str, int]

_log = logging.getLogger(__name__)

DEFAULT_HEARTBEAT = 5.0
"""Seconds between heartbeats when the welcome names no interval."""

WORKER_RECONNECT = Reconnect(initial_backoff=0.1, max_backoff=5.0, give_up_after=None)
"""A worker's default: first try 0.1 s after a loss, waits doubling to 5 s, never giving up."""

FATAL_CODES = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)
"""Statuses that end a worker: a new stream would get them again. Every other one (a daemon
draining or gone, missed heartbeats, a call cut at shutdown) is retried."""


class Worker:
    """Runs `handler` for dispatch tasks of `queues`, `concurrency` at once.

    `await worker.run()` serves until cancelled; `async with worker:` serves in the
    background for the block. A handler that raises fails the attempt; it is retried by the
    task's policy when `retryable(exception)` says so (default: always).

    `reconnect`: the waits between tries to reach a daemon after the stream broke
    (default `WORKER_RECONNECT`: 0.1 s doubling to 5 s with jitter, reset by a daemon's
    welcome, never giving up; a `give_up_after` makes `run` raise DaemonUnavailableError
    once that long has passed without a daemon). It is the worker's own: the client's
    `reconnect` is for its calls.
    """

    def __init__(
        self,
        connection: Connection,
        queues: Sequence[str],
        handler: Handler,
        concurrency: int = 1,
        *,
        worker_id: str = "",
        retryable: Callable[[BaseException], bool] | None = None,
        reconnect: Reconnect = WORKER_RECONNECT,
    ) -> None:
        if isinstance(queues, str):
            queues = [queues]
        if not queues or not all(isinstance(q, str) and q for q in queues):
            raise ValueError(f"a worker serves at least one named queue, not {queues!r}")
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency!r}")
        if not callable(handler):
            raise TypeError(f"handler must be an async function of a DispatchTask: {handler!r}")
        if not isinstance(reconnect, Reconnect):
            raise TypeError(f"reconnect must be a dukat.client.Reconnect, not {reconnect!r}")
        self._connection = connection
        self.queues = tuple(queues)
        self.handler = handler
        self.concurrency = concurrency
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self._retryable = retryable or (lambda error: True)
        self.reconnect = reconnect
        self._running: dict[Key, asyncio.Task[None]] = {}
        self._results: list[work_pb2.WorkResult] = []
        self._progress: dict[Key, work_pb2.WorkProgress] = {}
        self._wake = asyncio.Event()
        self._max_result_bytes = 0
        self._task: asyncio.Task[None] | None = None
        self._draining = False
        self.connected = asyncio.Event()
        """Set while a stream is open and welcomed (tests and health checks wait on it)."""
        self.completed = 0
        """Attempts whose result was handed to the stream."""

    # -- life ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until cancelled, through daemon restarts (see the module docstring)."""
        backoff = Backoff(self.reconnect)
        while not self._draining:
            try:
                lost = await self._serve_stream(backoff)
                if self._draining:
                    return  # drained: the daemon has every result, the stream ended OK
            except grpc.aio.AioRpcError as error:
                if error.code() in FATAL_CODES:
                    raise from_rpc_error(error) from error
                lost = f"{error.code().name}: {error.details()}"
            finally:
                await self._abandon_running()
            # Once per outage at WARNING: a daemon away for minutes is one line, not hundreds.
            level = logging.DEBUG if backoff.retrying else logging.WARNING
            _log.log(level, "worker %s: no stream (%s); reconnecting", self.worker_id, lost)
            if not await backoff.wait():
                raise _gave_up(self._connection.address)

    async def __aenter__(self) -> Worker:
        self._task = asyncio.create_task(self.run(), name=f"dukat worker {self.worker_id}")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def drain(self, grace: float | None = None) -> None:
        """Stop taking tasks, finish those held, hand in their results, then stop serving.

        The daemon assigns the worker nothing more once it hears it is draining (what it had
        assigned but not sent yet goes to other workers). Attempts still running after
        `grace` seconds (None: no limit) are cancelled as `stop` cancels them: the daemon runs
        those again. Without a stream open, the worker simply stops."""
        self._draining = True
        self._wake.set()  # the next update says so at once
        task = self._task
        if task is None:
            return  # `run()` awaited by its owner returns once drained
        if not self.connected.is_set():
            await self.stop()
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), grace)
        except TimeoutError:
            _log.warning("worker %s: drain's grace of %gs ran out", self.worker_id, grace)
            await self.stop()
            return
        self._task = None

    async def stop(self) -> None:
        """Stop serving; attempts still running are cancelled (the daemon runs them again)."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                raise  # we were cancelled ourselves, not just the worker

    # -- one stream ---------------------------------------------------------------------------

    async def _serve_stream(self, backoff: Backoff) -> str:
        """One stream, from hello to its end; raises its error status, else says how it ended."""
        call = self._connection.scheduler.Work(metadata=self._connection.metadata)
        try:
            hello = convert.worker_hello_to_proto(self.worker_id, self.queues, self.concurrency)
            await call.write(hello)
            first = await call.read()
            if first is grpc.aio.EOF:
                await _raise_status(call)
                return "the daemon ended the stream before its welcome"
            terms = convert.work_terms_from_proto(first)
            interval = terms.heartbeat_interval or DEFAULT_HEARTBEAT
            # Such a daemon says something every interval: silence past the timeout is a dead
            # stream, whatever the connection under it looks like.
            silence = terms.heartbeat_timeout if terms.daemon_heartbeats else 0.0
            self._max_result_bytes = terms.max_result_bytes
            if backoff.retrying:
                _log.info("worker %s: serving again", self.worker_id)
            backoff.reset()
            self._take(first)
            sender = asyncio.create_task(self._send_updates(call, interval))
            loop = asyncio.get_running_loop()
            self.connected.set()
            try:
                async with asyncio.timeout(None) as heard:
                    while True:
                        if silence:
                            heard.reschedule(loop.time() + silence)
                        response = await call.read()
                        if response is grpc.aio.EOF:
                            break
                        self._take(response)
            except TimeoutError:
                return f"the daemon sent nothing for {silence:g}s, its heartbeat timeout"
            finally:
                self.connected.clear()  # the stream is over, however it ended
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
            await _raise_status(call)
            return "the daemon ended the stream"
        finally:
            call.cancel()

    def _take(self, response: scheduler_pb2.WorkResponse) -> None:
        tasks, cancels = convert.work_response_from_proto(response, self._on_progress)
        for task in tasks:
            if task.key in self._running:
                continue  # the same attempt twice: never run it twice
            self._running[task.key] = asyncio.create_task(self._run_one(task))
        for key, reason in cancels:
            running = self._running.get(key)
            if running is not None:
                running.cancel(reason or "cancelled by the daemon")

    async def _run_one(self, task: DispatchTask) -> None:
        key = task.key
        try:
            payload = await self.handler(task)
            if not isinstance(payload, (bytes, bytearray, memoryview)):
                raise TypeError(
                    f"a worker's handler returns bytes, not {type(payload).__name__} "
                    f"(task {task.task_id!r})"
                )
            payload = bytes(payload)
            if self._max_result_bytes and len(payload) > self._max_result_bytes:
                result = convert.work_error_to_proto(
                    key,
                    f"result of {len(payload)} bytes is over the daemon's limit "
                    f"of {self._max_result_bytes}",
                    "ResultTooLarge",
                )
            else:
                result = convert.work_success_to_proto(key, payload)
        except asyncio.CancelledError:
            # The daemon took the attempt back (cancel, timeout) and still waits for a result
            # to free the slot; when the stream is gone, nobody will read it and that is fine.
            result = convert.work_error_to_proto(key, "cancelled", "CancelledError")
        except Exception as error:
            result = convert.work_error_to_proto(
                key,
                str(error) or type(error).__name__,
                type(error).__name__,
                retryable=bool(self._retryable(error)),
            )
        finally:
            # Its last progress report stays queued: it goes in the same update as the
            # result, and the daemon applies progress first (dukatd.work_session).
            self._running.pop(key, None)
        self._results.append(result)
        self._wake.set()

    def _on_progress(self, task: DispatchTask, fraction: float | None, message: str) -> None:
        key = task.key
        if key not in self._running:
            return  # the attempt ended: a late report says nothing
        # The latest per attempt is all that matters.
        self._progress[key] = convert.work_progress_to_proto(key, fraction, message)
        self._wake.set()

    async def _send_updates(self, call: grpc.aio.StreamStreamCall, interval: float) -> None:
        while True:
            # Nothing happened for a whole interval: the empty update is the heartbeat.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            self._wake.clear()
            results, self._results = self._results, []
            progress, self._progress = list(self._progress.values()), {}
            update = convert.worker_update_to_proto(results, progress, draining=self._draining)
            await call.write(update)
            self.completed += len(results)

    async def _abandon_running(self) -> None:
        running = list(self._running.values())
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        # Results and progress of the lost stream are for attempts the daemon gave up.
        self._results.clear()
        self._progress.clear()
        self._running.clear()

    def __repr__(self) -> str:
        state = "connected" if self.connected.is_set() else "not connected"
        return (
            f"<Worker {self.worker_id} queues:{','.join(self.queues)} "
            f"running:{len(self._running)}/{self.concurrency} {state}>"
        )


async def _raise_status(call: grpc.aio.StreamStreamCall) -> None:
    """The stream ended: an error status raises; OK (a daemon ending it) is UNAVAILABLE-like."""
    code = await call.code()
    if code is not grpc.StatusCode.OK:
        details = await call.details()
        raise grpc.aio.AioRpcError(
            code, await call.initial_metadata(), await call.trailing_metadata(), details
        )


def _gave_up(address: str) -> DaemonUnavailableError:
    return DaemonUnavailableError(
        f"no daemon at {address} took the worker back within the reconnect policy",
        code="UNAVAILABLE",
    )
