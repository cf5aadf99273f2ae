"""dukat.v1.SchedulerService over the engine's Scheduler: validate, convert, call, convert back.

Conversions are `dukat.convert`'s and the error statuses `dukatd.status`'s; what is left
here is what only the service knows: idempotent Submit (its request ids:
`dukatd.request_ids`) and a rerun's source job, the exec switch, watch streams and their
limits, and ListJobs (its pages: `dukatd.job_pages`). Every call checks its ids first
(`dukatd.request_checks`) and, with a journal, answers once what it did or shows is on disk
(`dukatd.durable`). `Work`
(worker streams) is the `WorkerHub`'s (`dukatd.work_hub`; the protocol is in
`dukatd.work_session`), served when one is given.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

import grpc

from dukat import convert
from dukat.client import CLIENT_ID_KEY
from dukat.core.events import TaskOutput, TaskProgress, TaskStateChanged, TaskWaiting
from dukat.core.scheduler import PreparedJob, Scheduler
from dukat.core.spec import JobSpec
from dukat.errors import CapacityError, FieldViolation, NotFoundError, Refused, ValidationError
from dukat.v1 import job_pb2, scheduler_pb2, scheduler_pb2_grpc
from dukatd.durable import durable, refuse_if_frozen
from dukatd.event_ring import EventRing
from dukatd.handlers import Undecodable
from dukatd.job_pages import fill_page, listed_job, page_bytes_for, page_start, page_token
from dukatd.journal import Journal
from dukatd.request_checks import bounded, require_job_id, task_id_fields
from dukatd.request_ids import RequestIds
from dukatd.status import rpc_errors
from dukatd.streams import LiveStreams
from dukatd.work_hub import WorkerHub

__all__ = [
    "DEFAULT_PAGE_BYTES",
    "DEFAULT_RESULT_BUDGET",
    "RequestIds",
    "SchedulerService",
    "client_of",
    "page_bytes_for",
    "result_budget_for",
]


def result_budget_for(max_message_bytes: int) -> int:
    """GetJob's share of a message for task results: a quarter, so that a job whose results
    together are far bigger still fits, with room for the tasks' other fields."""
    return max_message_bytes // 4


# Of the default message limit (64 MiB, on both sides).
DEFAULT_RESULT_BUDGET = result_budget_for(64 * 1024 * 1024)
DEFAULT_PAGE_BYTES = page_bytes_for(64 * 1024 * 1024)
DRAINED = "was disconnected: the daemon is stopping"
"""Why the attempts of a worker whose stream the drain ended were interrupted."""


class SchedulerService(scheduler_pb2_grpc.SchedulerServiceServicer):
    """The scheduler's RPCs. One per daemon, sharing the daemon's one `Scheduler`."""

    def __init__(
        self,
        scheduler: Scheduler,
        *,
        allow_exec: bool = False,
        watch_batch: int = 500,
        max_watch_streams: int = 1_000,
        max_watch_streams_per_client: int = 100,
        watch_all_capacity: int = 100_000,
        default_page_size: int = 100,
        max_page_size: int = 1_000,
        work_hub: WorkerHub | None = None,
        result_budget: int = DEFAULT_RESULT_BUDGET,
        page_bytes: int = DEFAULT_PAGE_BYTES,
        journal: Journal | None = None,
        request_ids: dict[str, str] | None = None,
        check_job: Callable[[JobSpec], None] | None = None,
    ) -> None:
        """`watch_batch`: most events per WatchResponse (a message stays well under 4 MiB).
        `max_watch_streams`: open Watch streams, beyond which Watch answers RESOURCE_EXHAUSTED;
        `max_watch_streams_per_client`: likewise for one client's (`client_of`), so that one
        client cannot take every stream from the others.
        `watch_all_capacity`: events of all jobs held for watchers of every job (see
        `dukatd.event_ring`); the default takes the burst of a 100,000-task Submit (one
        READY event per task at once) in about 10 MB, and is held only while such a
        watcher is open. Page sizes are for ListJobs. `work_hub`: serves `Work`, and must
        be the hub of this scheduler (`WorkerHub(scheduler)`); None: Work is UNIMPLEMENTED.
        `result_budget`: bytes of task results one GetJob response carries at most; the rest
        are marked `result_omitted`, for the client to ask for by `task_ids`. `page_bytes`:
        bytes of jobs one ListJobs response carries at most (`page_bytes_for` the message
        limit); a page ends there even short of its size.
        `journal`: when given, Submit and Cancel answer once what they did is on disk, and
        GetJob and ListJobs once what they show is (`dukatd.journal`); the scheduler must
        hold events for it. `request_ids`: those of the jobs recovered from it.
        `check_job`: a check of the executor's on each job submitted, before the scheduler's
        (the Ray executor's: is its cluster there, does each exec task fit one of its nodes);
        it raises a `ValidationError` or a `Refusal`.
        """
        self.scheduler = scheduler
        self.allow_exec = allow_exec
        self.check_job = check_job
        self.watch_batch = watch_batch
        self.max_watch_streams = max_watch_streams
        self.max_watch_streams_per_client = max_watch_streams_per_client
        self.watchers = 0
        self._watchers_of: dict[str, int] = {}  # client -> its open Watch streams (> 0)
        self.ring = EventRing(scheduler, watch_all_capacity, source=journal)
        self.request_ids = RequestIds(scheduler)
        for request_id, job_id in (request_ids or {}).items():
            self.request_ids.add(request_id, job_id)
        self.journal = journal
        self._submitting: dict[str, asyncio.Future[str]] = {}  # request id -> its job id
        self.default_page_size = default_page_size
        self.max_page_size = max_page_size
        self.result_budget = result_budget
        self.page_bytes = page_bytes
        if work_hub is not None and work_hub.scheduler is not scheduler:
            raise ValueError("the work hub given serves another scheduler than the one given")
        self.work_hub = work_hub
        self.streams = LiveStreams()
        """Open Watch streams; the daemon's drain ends them with UNAVAILABLE."""

    @rpc_errors
    async def Submit(
        self, request: scheduler_pb2.SubmitRequest, context: grpc.aio.ServicerContext
    ) -> scheduler_pb2.SubmitResponse:
        # No await between looking the request id up and remembering it: two retries of one
        # request cannot both get through on the one loop.
        request_id = request.request_id
        bounded(
            ("request_id", request_id, convert.MAX_NAME),
            ("rerun_of", request.rerun_of, convert.MAX_NAME),
        )
        earlier = self.request_ids.get(request_id)
        if earlier is not None:
            return scheduler_pb2.SubmitResponse(job_id=earlier)
        if request_id in self._submitting:  # its twin is being written to the journal
            return scheduler_pb2.SubmitResponse(
                job_id=await asyncio.shield(self._submitting[request_id])
            )
        wire, spec = request.job, None
        rerun_of = request.rerun_of or None
        if rerun_of is not None:
            before = self._rerun_source(rerun_of)
            if not request.HasField("job"):  # the old job as it was
                spec, wire = before, convert.job_spec_to_proto(before)
        if not self.allow_exec:
            _refuse_exec(wire)
        if spec is None:
            spec = convert.job_spec_from_proto(wire, path="job")
        if self.check_job is not None:
            try:
                self.check_job(spec)
            except ValidationError as error:
                raise convert.at_path(error, "job") from None
        try:
            # Nothing is journaled before it fits.
            prepared = self.scheduler.prepare(spec, rerun_of=rerun_of)
        except ValidationError as error:
            raise convert.at_path(error, "job") from None
        except CapacityError as error:
            raise Refused("RESOURCE_EXHAUSTED", _over_max_tasks(error)) from None
        try:
            if self.journal is not None:
                await self._make_durable(request_id, wire, prepared)
            # Remembered before the start, which is all or nothing: should it fail, an entry
            # for a job the scheduler does not hold is never answered (RequestIds.get).
            self.request_ids.add(request_id, prepared.job_id)
            job_id = self.scheduler.start(prepared)
        except RuntimeError:  # closed by the drain while the journal was writing
            raise Refused(
                "UNAVAILABLE",
                "dukatd is shutting down; the job is kept and runs when it is back (Submit "
                "again with the same request_id to get its id)",
            ) from None
        except MemoryError:
            # Out of memory after the journal took it: it must not run after a restart.
            if self.journal is not None and prepared.job_id not in self.scheduler:
                self.journal.drop(prepared.job_id)
            raise
        finally:
            self.scheduler.abandon(prepared)  # its room and breakers, unless it started
        return scheduler_pb2.SubmitResponse(job_id=job_id)

    async def _make_durable(
        self, request_id: str, wire: job_pb2.JobSpec, prepared: PreparedJob
    ) -> None:
        """Write the job to the journal (its spec, as `wire`, and the tasks a rerun carried
        over into it); nothing of it has run, and on failure nothing will."""
        journal = self.journal
        assert journal is not None
        refuse_if_frozen(journal)
        job_id = prepared.job_id
        twin: asyncio.Future[str] | None = None
        if request_id:
            twin = asyncio.get_running_loop().create_future()
            self._submitting[request_id] = twin
        try:
            spec = wire.SerializeToString()
            journal.accept(job_id, request_id, spec, prepared.job.created_at, prepared.carried)
            await durable(journal, "the job was not accepted", accepted=job_id)
        except BaseException as error:
            journal.drop(job_id)  # in case a later commit would write it after all
            if twin is not None:
                twin.set_exception(error)
                twin.exception()  # retrieved: a twin may never come to read it
            raise
        else:
            if twin is not None:
                twin.set_result(job_id)
        finally:
            if request_id:
                del self._submitting[request_id]

    def _rerun_source(self, job_id: str) -> JobSpec:
        """The spec of the finished job a rerun continues from (`SubmitRequest.rerun_of`)."""
        try:
            spec = self.scheduler.job_spec(job_id)
        except NotFoundError:
            raise NotFoundError(
                f"rerun_of: no job {job_id!r}: unknown, or dropped since it finished (dukatd "
                "keeps finished jobs as --retain-finished-jobs and --finished-job-ttl say)"
            ) from None
        state = self.scheduler.job_state(job_id)
        if not state.is_terminal:
            raise Refused(
                "FAILED_PRECONDITION",
                f"rerun_of: job {job_id!r} is still {state.value}; cancel it or wait for it to "
                "end, then rerun it",
            )
        return spec

    @rpc_errors
    async def Watch(
        self, request: scheduler_pb2.WatchRequest, context: grpc.aio.ServicerContext
    ) -> None:
        bounded(("job_id", request.job_id, convert.MAX_NAME))
        with self._watcher(client_of(context)), self.streams.track(context):
            if request.job_id:
                await self._watch_job(request, context)
            else:
                await self._watch_all(request, context)

    async def _watch_job(
        self, request: scheduler_pb2.WatchRequest, context: grpc.aio.ServicerContext
    ) -> None:
        # The engine's cursor over its bounded per-job log: a watcher that stalls in
        # context.write (flow control) holds only its place; past the log's end it gets a
        # snapshot. aclosing: a cancelled call must not leave the generator to the GC.
        batches = self.scheduler.watch(
            request.job_id, request.after_sequence, max_batch=self.watch_batch
        )
        async with contextlib.aclosing(batches):
            async for batch in batches:
                events = _wire_events(batch, request.job_events_only)
                if events:
                    await context.write(scheduler_pb2.WatchResponse(events=events))

    async def _watch_all(
        self, request: scheduler_pb2.WatchRequest, context: grpc.aio.ServicerContext
    ) -> None:
        if request.after_sequence:
            raise ValidationError(
                "after_sequence numbers one job's events; a watch of every job (empty job_id) "
                "starts now and takes none",
                violations=[FieldViolation("after_sequence", "must be 0 when job_id is empty")],
            )
        with self.ring.open() as cursor:
            # Headers once the cursor is open: a client that has them misses no later event.
            await context.send_initial_metadata(())
            while True:
                batch = await cursor.next_batch(self.watch_batch)
                events = _wire_events(batch, request.job_events_only)
                if events:
                    await context.write(scheduler_pb2.WatchResponse(events=events))

    @contextlib.contextmanager
    def _watcher(self, client: str) -> Iterator[None]:
        if self.watchers >= self.max_watch_streams:
            raise Refused(
                "RESOURCE_EXHAUSTED",
                f"{self.watchers} watch streams are open, the daemon's limit "
                "(--max-watch-streams); close one first, or poll GetJob",
            )
        held = self._watchers_of.get(client, 0)
        if held >= self.max_watch_streams_per_client:
            raise Refused(
                "RESOURCE_EXHAUSTED",
                f"this client has {held} watch streams open, the daemon's limit per client "
                "(--max-watch-streams-per-client); close one first, or poll GetJob",
            )
        self.watchers += 1
        self._watchers_of[client] = held + 1
        try:
            yield
        finally:
            self.watchers -= 1
            left = self._watchers_of[client] - 1
            if left:
                self._watchers_of[client] = left
            else:
                del self._watchers_of[client]

    @rpc_errors
    async def Cancel(
        self, request: scheduler_pb2.CancelRequest, context: grpc.aio.ServicerContext
    ) -> scheduler_pb2.CancelResponse:
        require_job_id(request.job_id)
        bounded(("reason", request.reason, convert.MAX_TEXT), *task_id_fields(request.task_ids))
        if self.journal is not None:
            refuse_if_frozen(self.journal)
        cancelled = self.scheduler.cancel(request.job_id, request.task_ids, reason=request.reason)
        if self.journal is not None and cancelled:
            self.journal.cancel(request.job_id, request.task_ids, request.reason)
            await durable(self.journal, "the cancel may not survive a restart")
        return scheduler_pb2.CancelResponse(cancelled_count=cancelled)

    @rpc_errors
    async def GetJob(
        self, request: scheduler_pb2.GetJobRequest, context: grpc.aio.ServicerContext
    ) -> scheduler_pb2.GetJobResponse:
        require_job_id(request.job_id)
        bounded(*task_id_fields(request.task_ids))
        snapshot = self.scheduler.get_job(request.job_id)
        if self.work_hub is not None:  # READY dispatch tasks nobody serves say so
            snapshot = self.work_hub.with_waiting_for(snapshot)
        if request.task_ids:
            known = {status.id for status in snapshot.tasks}
            unknown = [task_id for task_id in request.task_ids if task_id not in known]
            if unknown:
                raise NotFoundError(f"job {request.job_id!r} has no task {unknown[0]!r}")
        if self.journal is not None:  # show nothing a crash could take back
            await durable(self.journal, "the job's state cannot be vouched for")
        job = convert.job_to_proto(
            snapshot, result_budget=self.result_budget, task_ids=request.task_ids
        )
        return scheduler_pb2.GetJobResponse(job=job)

    @rpc_errors
    async def ListJobs(
        self, request: scheduler_pb2.ListJobsRequest, context: grpc.aio.ServicerContext
    ) -> scheduler_pb2.ListJobsResponse:
        states = {
            convert.JOB_STATES.from_proto(number, f"states[{index}]")
            for index, number in enumerate(request.states)
        }
        if request.page_size < 0:
            raise ValidationError(
                f"page_size must be 0 or more, not {request.page_size}",
                violations=[FieldViolation("page_size", "must be 0 or more")],
            )
        labels = dict(request.labels)
        problems = convert.Problems()
        convert.check_labels(problems.report(), "labels", labels)
        problems.raise_if_any()
        size = min(request.page_size or self.default_page_size, self.max_page_size)
        jobs = self.scheduler.jobs(labels=labels)  # oldest first, no tasks
        newest_first = [job for job in reversed(jobs) if not states or job.state in states]
        start = page_start(newest_first, request.page_token)
        page, more = fill_page(newest_first, start, size, self.page_bytes, listed_job)
        last = newest_first[start + len(page) - 1] if page else None
        response = scheduler_pb2.ListJobsResponse(
            jobs=page, next_page_token=page_token(last) if more and last else ""
        )
        if self.journal is not None:  # show nothing a crash could take back
            await durable(self.journal, "the jobs' states cannot be vouched for")
        return response

    @rpc_errors
    async def Work(
        self, request_iterator: AsyncIterator[Any], context: grpc.aio.ServicerContext
    ) -> None:
        hub = self.work_hub
        if hub is None:
            raise Refused(
                "UNIMPLEMENTED",
                "this daemon does not serve workers: it has no dispatch runner",
            )
        with self.streams.track(context):
            requests = aiter(request_iterator)
            first = await anext(requests, None)
            if first is None:
                return  # closed before saying anything: nothing to serve
            if isinstance(first, Undecodable):
                raise Refused(
                    "INVALID_ARGUMENT",
                    f"the request is not a valid {first.message_name}: {first.reason}",
                )
            if first.WhichOneof("kind") != "hello":
                raise Refused(
                    "FAILED_PRECONDITION",
                    "the first WorkRequest must be a hello (queues, max_in_flight)",
                )
            session = hub.connect(first.hello)
            try:
                await context.write(hub.welcome(session))
                await session.serve(requests, context)
            finally:
                if self.streams.ending is None:
                    hub.disconnect(session, "left")
                else:  # the drain ended the stream: its attempts run again after the restart
                    hub.disconnect(session, DRAINED, cause="daemon_stopping")


def client_of(context: grpc.aio.ServicerContext) -> str:
    """Who makes a call, for the per-client limits: its `dukat-client-id` metadata, else
    its peer address. A client sends any id it likes: the limits keep well-behaved clients
    from starving each other, they do not stop a hostile one (the global limits do). A
    unix socket shows every peer as `unix:`, so its clients that send no id count as one."""
    for key, value in context.invocation_metadata() or ():
        if key == CLIENT_ID_KEY:
            return f"id:{value}"
    return f"peer:{context.peer()}"


def _refuse_exec(job: job_pb2.JobSpec) -> None:
    for index, task in enumerate(job.tasks):
        if task.WhichOneof("action") == "exec":
            raise Refused(
                "PERMISSION_DENIED",
                f"task {task.id!r} (job.tasks[{index}].exec): this daemon does not run exec "
                "tasks; start it with --allow-exec, or use a dispatch task and a worker",
            )


def _over_max_tasks(error: CapacityError) -> str:
    """The engine's refusal, naming the daemon's option."""
    named = CapacityError("--max-tasks", error.capacity, held=error.held, requested=error.requested)
    return f"{named} (--max-tasks bounds the tasks dukatd holds in memory)"


_TASK_EVENTS = (TaskStateChanged, TaskProgress, TaskOutput, TaskWaiting)


def _wire_events(batch: Iterable[Any], job_events_only: bool) -> list[Any]:
    """A Watch batch as Event messages; without task events for `job_events_only`."""
    if job_events_only:
        return [convert.event_to_proto(e) for e in batch if not isinstance(e, _TASK_EVENTS)]
    return [convert.event_to_proto(event) for event in batch]
