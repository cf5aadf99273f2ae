"""`connect()` and `Client`: the daemon's scheduler from Python, in the engine's words."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence

import grpc

from dukat import convert
from dukat.client._breaker import RemoteBreaker
from dukat.client._connection import DEFAULT_MAX_MESSAGE_BYTES, Connection, resolve_address
from dukat.client._jobs import JobHandle, submit_job
from dukat.client._reconnect import Reconnect
from dukat.client._worker import WORKER_RECONNECT, Handler, Worker
from dukat.core.results import JobSnapshot
from dukat.core.spec import JobSpec
from dukat.core.states import JobState
from dukat.daemon_status import BreakerStatus, DaemonStatus
from dukat.v1 import breaker_pb2, daemon_pb2, scheduler_pb2

__all__ = ["Client", "connect"]


class Client:
    """A connection to one dukatd. Made by `connect()`, which also closes it."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._breakers: dict[str, RemoteBreaker] = {}

    @property
    def address(self) -> str:
        return self._connection.address

    async def submit(self, job: JobSpec, *, request_id: str | None = None) -> JobHandle:
        """Submit a whole job; the daemon accepts all of it or raises InvalidArgumentError.

        `request_id` (default: a fresh one per call) makes the Submit safe to repeat: this
        client retries it when the daemon is briefly unreachable, and the daemon answers a
        repeat with the job it made the first time.
        """
        if not isinstance(job, JobSpec):
            raise TypeError(f"submit takes a dukat.JobSpec, not {type(job).__name__}")
        return await submit_job(self._connection, job, request_id=request_id)

    async def rerun(
        self, job_id: str, job: JobSpec | None = None, *, request_id: str | None = None
    ) -> JobHandle:
        """Run the finished job `job_id` again from where it failed: a new job, whose handle
        this returns, that carries over what succeeded in it and runs the rest.

        `job`: a corrected spec (None: the old job's own). A task is carried over, SUCCEEDED
        at once with its result (`TaskStatus.carried_from` names `job_id`), when it
        SUCCEEDED in the old job with the same action, dependencies, trigger rule and
        labels, and each of its upstreams is carried over too; the others run, so those
        downstream of a task that runs again run again. DaemonNotFoundError when the daemon
        no longer holds the old job (its retention), FailedPreconditionError while it still
        runs. `request_id`: as `submit`'s.
        """
        if job is not None and not isinstance(job, JobSpec):
            raise TypeError(f"rerun takes a dukat.JobSpec or None, not {type(job).__name__}")
        return await submit_job(self._connection, job, rerun_of=job_id, request_id=request_id)

    def job(self, job_id: str) -> JobHandle:
        """A handle to a job by id (no call is made; a wrong id shows on first use)."""
        return JobHandle(self._connection, job_id)

    async def get_job(self, job_id: str) -> JobSnapshot:
        """The job now, with every task; DaemonNotFoundError for an id the daemon lacks."""
        return await self.job(job_id).get()

    async def jobs(
        self,
        state: JobState | Iterable[JobState] | None = None,
        labels: Mapping[str, str] | None = None,
        *,
        page_size: int = 0,
    ) -> AsyncIterator[JobSnapshot]:
        """Jobs newest first, without their tasks, a page (ListJobs) fetched at a time.

        `state`: one state or several; `labels`: jobs having every one of them.
        `page_size`: jobs per call (0: the daemon's default).
        """
        states = [state] if isinstance(state, JobState) else list(state or ())
        request = scheduler_pb2.ListJobsRequest(
            states=[convert.JOB_STATES.to_proto(s) for s in states],
            labels=dict(labels or {}),
            page_size=page_size,
        )
        while True:
            response = await self._connection.call(self._connection.scheduler.ListJobs, request)
            for job in response.jobs:
                yield convert.job_from_proto(job)
            if not response.next_page_token:
                return
            request.page_token = response.next_page_token

    async def breakers(self) -> list[BreakerStatus]:
        """Every breaker the daemon knows, sorted by name (ListBreakers)."""
        connection = self._connection
        response = await connection.call(
            connection.breakers.ListBreakers, breaker_pb2.ListBreakersRequest()
        )
        return [convert.breaker_status_from_proto(b) for b in response.breakers]

    async def status(self) -> DaemonStatus:
        """The daemon's version, uptime, addresses and capacity in use (GetStatus)."""
        connection = self._connection
        response = await connection.call(connection.daemon.GetStatus, daemon_pb2.GetStatusRequest())
        return convert.daemon_status_from_proto(response.status)

    def breaker(self, name: str) -> RemoteBreaker:
        """The daemon's circuit breaker `name`, shared by every process on the host.

        The engine's `CircuitBreaker` API with async methods (each is a call to the daemon):
        `async with client.breaker("db"):` and `@client.breaker("db")` work as the engine's.
        One object per name and client, so that `allow_request()` and then `success()` on
        `client.breaker("db")` twice report on the same permit.
        """
        breaker = self._breakers.get(name)
        if breaker is None:
            breaker = self._breakers[name] = RemoteBreaker(self._connection, name)
        return breaker

    def worker(
        self,
        queues: str | Sequence[str],
        handler: Handler,
        concurrency: int = 1,
        *,
        worker_id: str = "",
        retryable: Callable[[BaseException], bool] | None = None,
        reconnect: Reconnect = WORKER_RECONNECT,
    ) -> Worker:
        """A worker serving the dispatch tasks of `queues` with `handler`, `concurrency` at once.

        `async def handler(task: DispatchTask) -> bytes`. Serve with `async with
        client.worker(...):` (in the background for the block) or `await worker.run()`.
        The worker outlives its daemon: when the stream breaks it cancels the handlers still
        running (interrupted: the daemon runs those attempts again) and says hello again at
        the same address, waiting `reconnect` between tries (default: 0.1 s doubling to 5 s,
        jittered, until the worker is stopped). A wrong token, a refused hello or a daemon
        serving no workers ends it with the `dukat.errors` error instead.
        """
        return Worker(
            self._connection,
            [queues] if isinstance(queues, str) else list(queues),
            handler,
            concurrency,
            worker_id=worker_id,
            retryable=retryable,
            reconnect=reconnect,
        )

    async def close(self) -> None:
        """Close the channel; calls still running end with an error."""
        await self._connection.close()

    def __repr__(self) -> str:
        return f"<dukat.Client {self.address}>"


@contextlib.asynccontextmanager
async def connect(
    address: str | None = None,
    *,
    token: str | None = None,
    credentials: grpc.ChannelCredentials | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    reconnect: Reconnect | None = None,
) -> AsyncIterator[Client]:
    """Open a client to the daemon at `address`; `async with dukat.connect(...) as client:`.

    `address`: `unix:/path/to/dukatd.sock` or `host:port`; None: `DUKAT_ADDRESS`, else the
    daemon's default socket (`dukat.defaults.default_address()`, where dukatd listens unless
    told otherwise). A socket's path without `unix:` is a ValueError saying so.
    `token`: sent as `authorization: Bearer <token>` on every call. `credentials`: TLS for a
    TCP address. `reconnect`: how long calls safe to repeat ride out an unreachable daemon
    (default `Reconnect()`: 5 s until the daemon has answered once, then 30 s). No call is
    made on entry: a daemon that is not there shows on the first call, as
    DaemonUnavailableError naming the address once the reconnect policy gives up.
    """
    connection = Connection(
        resolve_address(address),
        token=token,
        credentials=credentials,
        max_message_bytes=max_message_bytes,
        reconnect=reconnect or Reconnect(),
    )
    try:
        yield Client(connection)
    finally:
        await connection.close()
