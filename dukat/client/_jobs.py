"""`JobHandle`: one job on the daemon, its events (resumed across reconnects), its end."""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator

import grpc

from dukat import convert
from dukat.client._connection import Connection
from dukat.client._reconnect import Backoff, Reconnect
from dukat.core.events import Event, JobStateChanged, Snapshot
from dukat.core.progress import ProgressTracker
from dukat.core.results import JobSnapshot, TaskResult, TaskStatus
from dukat.core.spec import JobSpec
from dukat.errors import DaemonNotFoundError, ResourceExhaustedError
from dukat.v1 import job_pb2, scheduler_pb2

__all__ = ["JobHandle", "submit_job"]

_POLL = Reconnect(initial_backoff=0.05, max_backoff=1.0, give_up_after=None)
"""How `wait` polls GetJob while the daemon refuses it a Watch (jittered, as retries are)."""


class JobHandle:
    """A job submitted to the daemon (or looked up by id): watch it, wait for it, cancel it.

    Cheap to make (`client.job(job_id)` makes no call); two handles to one job are equal.
    """

    __slots__ = ("_connection", "_probe", "job_id")

    def __init__(self, connection: Connection, job_id: str, *, probe: str = "") -> None:
        """`probe`: the id of one of the job's tasks, when known (from submit), so that
        `wait` can ask for the job's state without all of its tasks."""
        if not job_id:
            raise ValueError("a JobHandle needs the id of a job, not an empty string")
        self._connection = connection
        self.job_id = job_id
        self._probe = probe

    async def get(self) -> JobSnapshot:
        """The job now, with every task (GetJob), results included."""
        job = await self._get_job()
        snapshot = convert.job_from_proto(job)
        missing = [task.id for task in job.tasks if task.result_omitted]
        if not missing:
            return snapshot
        fetched = await self._fetch_results(missing)
        tasks = tuple(
            status._replace(result=fetched[status.id].result, failure=fetched[status.id].failure)
            if status.id in fetched
            else status
            for status in snapshot.tasks
        )
        return dataclasses.replace(snapshot, tasks=tasks)

    async def rerun(
        self, job: JobSpec | None = None, *, request_id: str | None = None
    ) -> JobHandle:
        """Run this job, once finished, again from where it failed: `Client.rerun`."""
        return await submit_job(self._connection, job, rerun_of=self.job_id, request_id=request_id)

    async def results(self) -> dict[str, TaskResult]:
        """Every task's outcome so far, by id, as the embedded `Scheduler.results()` gives.

        A succeeded dispatch task's `result` is its `DispatchResult`, an exec task's its
        `ExecResult`. A failed task's `error` is a `TaskFailedRemotely` standing for the
        daemon's error (its `.type` and words; `TaskStatus.failure` from `get()` has the
        exit code and the output tails of an exec task's process).
        """
        return {status.id: _outcome(status) for status in (await self.get()).tasks}

    async def _get_job(self, task_ids: list[str] | None = None) -> job_pb2.Job:
        request = scheduler_pb2.GetJobRequest(job_id=self.job_id, task_ids=task_ids or [])
        response = await self._connection.call(self._connection.scheduler.GetJob, request)
        return response.job

    async def _fetch_results(self, task_ids: list[str]) -> dict[str, TaskStatus]:
        """The results (and failures' output tails) a GetJob left out (over the daemon's
        budget), asked for by task id: the statuses that have them.

        Each answer brings as many as fit; one that brings none (a single result bigger
        than the budget) ends the loop rather than asking forever.
        """
        fetched: dict[str, TaskStatus] = {}
        while task_ids:
            job = await self._get_job(task_ids)
            for task in convert.job_from_proto(job).tasks:
                fetched[task.id] = task
            task_ids = [task.id for task in job.tasks if task.result_omitted]
            if len(task_ids) == len(job.tasks):
                break
        return fetched

    async def cancel(self, *task_ids: str, reason: str = "") -> int:
        """Cancel the whole job, or `task_ids` and everything downstream of them.

        Idempotent; returns how many tasks this call cancelled (0 when all had ended).
        """
        request = scheduler_pb2.CancelRequest(
            job_id=self.job_id, task_ids=list(task_ids), reason=reason
        )
        response = await self._connection.call(self._connection.scheduler.Cancel, request)
        return response.cancelled_count

    async def events(self, after_sequence: int = 0) -> AsyncIterator[Event]:
        """The job's events after `after_sequence`, live, ending after its terminal event.

        Engine events (`dukat.core.events`). When the daemon goes away (UNAVAILABLE: a
        restart, a new socket) the watch is opened again, by the client's `Reconnect`
        policy, after the last sequence yielded: no event twice, none missed. Events the
        daemon no longer holds come as one `Snapshot` of the whole job, as with the engine.
        """
        if after_sequence < 0:
            raise ValueError(f"after_sequence must be 0 or more, not {after_sequence!r}")
        # aclosing: a consumer that stops early ends the stream on the daemon now, not at GC.
        async with contextlib.aclosing(self._events(after_sequence)) as events:
            async for event in events:
                yield event

    async def _events(
        self, after_sequence: int, *, job_events_only: bool = False
    ) -> AsyncIterator[Event]:
        """`events`; `job_events_only`: the daemon leaves out task events (`wait` needs none).

        A daemon older than that field sends every event: the same end, only more of it.
        """
        last = after_sequence
        connection = self._connection
        backoff = connection.backoff()
        while True:
            call = connection.scheduler.Watch(
                scheduler_pb2.WatchRequest(
                    job_id=self.job_id, after_sequence=last, job_events_only=job_events_only
                ),
                metadata=connection.metadata,
            )
            try:
                async for response in call:
                    connection.reached = True
                    backoff.reset()
                    for message in response.events:
                        if message.sequence <= last:
                            continue  # a replay overlapping what was yielded: never twice
                        last = message.sequence
                        event = convert.event_from_proto(message)
                        if event is not None and not isinstance(event, Event):
                            continue  # breaker transitions come only to watchers of all jobs
                        if event is not None:  # None: a kind newer than this client
                            yield event
                return
            except grpc.aio.AioRpcError as error:
                await connection.retry_or_raise(error, backoff)
            finally:
                call.cancel()  # the consumer stopped early: end the stream on the daemon too

    async def wait(self) -> JobSnapshot:
        """Wait for the job to end (its terminal event on Watch); the job then (GetJob).

        When the daemon refuses a Watch (RESOURCE_EXHAUSTED: its limits on open streams),
        polls GetJob instead, every 50 ms at first and at most every second.

        When the daemon has dropped the job by then (its retention: `--retain-finished-jobs`,
        `--finished-job-ttl`), the job as its events left it: state, message, `finished_at`
        and `last_sequence` from its terminal event, labels and `created_at` from a look
        before, and no `tasks`, which went with it (results included).
        """
        probe = self._probe
        if probe:
            seen = await self._glance(probe)
        else:
            snapshot = await self.get()
            if snapshot.state.is_terminal:
                return snapshot
            probe = snapshot.tasks[0].id  # a job has at least one
            seen = _without_tasks(snapshot)
        if not seen.state.is_terminal:
            seen = await self._until_end(seen, probe)
        try:
            return await self.get()
        except DaemonNotFoundError:
            return seen  # dropped since it ended

    async def _glance(self, probe: str) -> JobSnapshot:
        """The job now, without its tasks: GetJob asked for one task (`probe`), not all."""
        return _without_tasks(convert.job_from_proto(await self._get_job([probe])))

    async def _until_end(self, seen: JobSnapshot, probe: str) -> JobSnapshot:
        """The job as it ended: followed on Watch, else polled (see `wait`)."""
        try:
            # From the snapshot's sequence on: a 100,000-task job is not replayed from the start.
            async for event in self._events(seen.last_sequence, job_events_only=True):
                seen = _after(seen, event)
            return seen
        except ResourceExhaustedError:
            pass  # no Watch for us now: poll
        polls = Backoff(_POLL)
        while not seen.state.is_terminal:
            await polls.wait()
            seen = await self._glance(probe)
        return seen

    def track(
        self, tracker: ProgressTracker | None = None, *, replay: bool = False
    ) -> ProgressTracker:
        """A tracker of the job's progress (`dukat.core.progress`), kept current from its
        events by a task of its own until the job ends; `close()` it (or leave
        `async with handle.track() as tracker:`) to stop sooner. `tracker`: feed this one.
        `replay`: its listeners see the job's events from the first (a display's history)."""
        tracker = tracker or ProgressTracker()
        tracker.follow_stream(self._snapshot, self.events, replay=replay)
        return tracker

    async def _snapshot(self) -> JobSnapshot:
        """The job now, results left as the daemon sent them: progress needs none."""
        return convert.job_from_proto(await self._get_job())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JobHandle) and other.job_id == self.job_id

    def __hash__(self) -> int:
        return hash(self.job_id)

    def __repr__(self) -> str:
        return f"<JobHandle {self.job_id} at {self._connection.address}>"


async def submit_job(
    connection: Connection,
    job: JobSpec | None,
    *,
    rerun_of: str = "",
    request_id: str | None = None,
) -> JobHandle:
    """Submit `job` (None: `rerun_of`'s spec again), with a fresh request id unless given."""
    request = scheduler_pb2.SubmitRequest(
        job=None if job is None else convert.job_spec_to_proto(job),
        request_id=request_id or uuid.uuid4().hex,
        rerun_of=rerun_of,
    )
    response = await connection.call(connection.scheduler.Submit, request)
    probe = job.tasks[0].id if job is not None and job.tasks else ""
    return JobHandle(connection, response.job_id, probe=probe)


def _without_tasks(snapshot: JobSnapshot) -> JobSnapshot:
    return dataclasses.replace(snapshot, tasks=())


def _after(seen: JobSnapshot, event: Event) -> JobSnapshot:
    """The job as `seen`, then `event` (a job event: a state change or a snapshot)."""
    if isinstance(event, Snapshot):
        return _without_tasks(event.job)
    if isinstance(event, JobStateChanged):
        return dataclasses.replace(
            seen,
            state=event.state,
            message=event.message,
            finished_at=event.time if event.state.is_terminal else seen.finished_at,
            last_sequence=event.sequence,
        )
    return seen


def _outcome(status: TaskStatus) -> TaskResult:
    return TaskResult(
        status.id,
        status.state,
        status.result,
        None if status.failure is None else status.failure.as_error(),
        status.attempts,
        status.started_at,
        status.finished_at,
        status.error,
        status.interruptions,
    )
