"""A worker made of the raw generated stubs, for the Work tests (and a daemon to serve it)."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from dukat import convert
from dukat.actions import DispatchAction
from dukat.core.scheduler import Scheduler
from dukat.core.spec import JobSpec, TaskSpec
from dukat.v1 import scheduler_pb2, scheduler_pb2_grpc, work_pb2
from dukatd.scheduler_service import SchedulerService
from dukatd.server import DEFAULT_MAX_MESSAGE_BYTES, create_server
from dukatd.work_hub import WorkerHub

Handler = Callable[[work_pb2.TaskAssignment], "work_pb2.WorkResult | None"]


def success(
    assignment: work_pb2.TaskAssignment, payload: bytes | None = None
) -> work_pb2.WorkResult:
    return work_pb2.WorkResult(
        job_id=assignment.job_id,
        task_id=assignment.task_id,
        attempt=assignment.attempt,
        success=work_pb2.WorkSuccess(
            payload=assignment.payload if payload is None else payload,
            content_type=assignment.content_type,
        ),
    )


def failure(
    assignment: work_pb2.TaskAssignment, message: str, *, retryable: bool
) -> work_pb2.WorkResult:
    return work_pb2.WorkResult(
        job_id=assignment.job_id,
        task_id=assignment.task_id,
        attempt=assignment.attempt,
        error=work_pb2.WorkError(message=message, type="ValueError", retryable=retryable),
    )


class RawWorker:
    """Says hello, heartbeats, answers each batch of assignments with one update.

    `handler(assignment)` gives the result to send, or None to hold the assignment (the
    test answers it later with `send`). Counts messages and the most held at once.
    """

    def __init__(
        self,
        address: str,
        queues: tuple[str, ...] = ("q",),
        max_in_flight: int = 100,
        *,
        handler: Handler = success,
        heartbeat: float | None = 0.05,
        worker_id: str = "",
    ) -> None:
        self.address = address
        self.hello = work_pb2.WorkerHello(
            worker_id=worker_id, queues=queues, max_in_flight=max_in_flight
        )
        self.handler = handler
        self.heartbeat = heartbeat
        self.outbox: asyncio.Queue[scheduler_pb2.WorkRequest | None] = asyncio.Queue()
        self.welcome: work_pb2.WorkerWelcome | None = None
        self.messages = 0  # WorkResponses after the welcome
        self.heartbeats = 0  # of which empty: the daemon's heartbeats
        self.assignments: list[work_pb2.TaskAssignment] = []
        self.cancels: list[work_pb2.TaskCancel] = []
        self.held: dict[tuple[str, str, int], work_pb2.TaskAssignment] = {}
        self.outstanding = 0
        self.peak = 0
        self.status: grpc.StatusCode | None = None
        self.details = ""
        self._tasks: list[asyncio.Task[Any]] = []

    async def start(self) -> RawWorker:
        self.channel = grpc.aio.insecure_channel(self.address)
        self.call = scheduler_pb2_grpc.SchedulerServiceStub(self.channel).Work(self._requests())
        self.outbox.put_nowait(scheduler_pb2.WorkRequest(hello=self.hello))
        first = await self.call.read()
        self.welcome = first.welcome
        self._tasks.append(asyncio.create_task(self._read()))
        if self.heartbeat is not None:
            self._tasks.append(asyncio.create_task(self._beat()))
        return self

    async def _requests(self) -> AsyncIterator[scheduler_pb2.WorkRequest]:
        while (request := await self.outbox.get()) is not None:
            yield request

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            self.outbox.put_nowait(scheduler_pb2.WorkRequest(update=work_pb2.WorkerUpdate()))

    async def _read(self) -> None:
        try:
            while (response := await self.call.read()) is not grpc.aio.EOF:
                self.messages += 1
                self.heartbeats += response == scheduler_pb2.WorkResponse()
                self.cancels.extend(response.cancels)
                results = []
                for assignment in response.assignments:
                    self.assignments.append(assignment)
                    self.outstanding += 1
                    self.peak = max(self.peak, self.outstanding)
                    result = self.handler(assignment)
                    if result is None:
                        key = (assignment.job_id, assignment.task_id, assignment.attempt)
                        self.held[key] = assignment
                    else:
                        results.append(result)
                if results:
                    self.send(results)
            self.status = await self.call.code()
        except grpc.aio.AioRpcError as error:
            self.status, self.details = error.code(), error.details() or ""

    def send(
        self,
        results: list[work_pb2.WorkResult] = (),  # type: ignore[assignment]
        progress: list[work_pb2.WorkProgress] = (),  # type: ignore[assignment]
    ) -> None:
        for result in results:
            self.held.pop((result.job_id, result.task_id, result.attempt), None)
        self.outstanding -= len(results)
        update = work_pb2.WorkerUpdate(results=results, progress=progress)
        self.outbox.put_nowait(scheduler_pb2.WorkRequest(update=update))

    def drain(self, results: list[work_pb2.WorkResult] = ()) -> None:  # type: ignore[assignment]
        """Say the worker is draining (with `results`, if any)."""
        self.send(results)
        self.outbox.get_nowait()  # the update `send` queued, sent again below with the flag
        update = work_pb2.WorkerUpdate(results=results, draining=True)
        self.outbox.put_nowait(scheduler_pb2.WorkRequest(update=update))

    def close_side(self) -> None:
        """Close the worker's side of the stream (done writing): the daemon may end it OK."""
        self.stop_heartbeats()
        self.outbox.put_nowait(None)

    async def ended(self) -> grpc.StatusCode:
        """The status the daemon ended the stream with (waits for it)."""
        await self._tasks[0]
        assert self.status is not None
        return self.status

    def stop_heartbeats(self) -> None:
        for task in self._tasks[1:]:
            task.cancel()

    async def close(self) -> None:
        """Vanish as a killed worker does: the connection goes, nothing more is said."""
        for task in self._tasks:
            task.cancel()
        await self.channel.close()


@dataclass
class WorkDaemon:
    scheduler: Scheduler
    hub: WorkerHub
    stub: scheduler_pb2_grpc.SchedulerServiceStub
    channel: grpc.aio.Channel
    address: str
    workers: list[RawWorker] = field(default_factory=list)

    async def worker(self, *args: Any, **kwargs: Any) -> RawWorker:
        worker = await RawWorker(self.address, *args, **kwargs).start()
        self.workers.append(worker)
        return worker

    async def submit(self, *tasks: TaskSpec) -> str:
        spec = convert.job_spec_to_proto(JobSpec(tasks))
        response = await self.stub.Submit(scheduler_pb2.SubmitRequest(job=spec))
        return response.job_id


def dispatch(task_id: str, payload: bytes = b"", **options: Any) -> TaskSpec:
    return TaskSpec(task_id, DispatchAction("q", payload, "text/plain"), **options)


@contextlib.asynccontextmanager
async def work_daemon(
    *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, **hub_options: Any
) -> AsyncIterator[WorkDaemon]:
    scheduler = Scheduler(max_concurrency=256)
    options = {"heartbeat_interval": 0.1, "heartbeat_timeout": 5.0} | hub_options
    hub = WorkerHub(scheduler, **options)
    service = SchedulerService(scheduler, work_hub=hub)
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="dukatd-") as directory:
        address = f"unix:{directory}/d.sock"
        server = await create_server(
            scheduler, [address], service=service, max_message_bytes=max_message_bytes
        )
        await server.start()
        channel = grpc.aio.insecure_channel(address)
        daemon = WorkDaemon(
            scheduler, hub, scheduler_pb2_grpc.SchedulerServiceStub(channel), channel, address
        )
        try:
            yield daemon
        finally:
            for worker in daemon.workers:
                await worker.close()
            await channel.close()
            await scheduler.close(grace=0)
            await server.stop(grace=None)
