"""SchedulerService over real gRPC: a grpc.aio server from create_server on a unix socket."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import random
import string
import struct
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from dukat.actions import DispatchAction, DispatchResult, ExecAction
from dukat.core.resources import ResourcePool
from dukat.core.scheduler import Scheduler
from dukat.core.states import JobState
from dukat.v1 import event_pb2, job_pb2, scheduler_pb2, scheduler_pb2_grpc
from dukatd.exec_runner import ExecRunner
from dukatd.scheduler_service import RequestIds, SchedulerService
from dukatd.server import create_server
from tests.dukatd.rpc_errors import rpc_error, violations
from tests.helpers import finished, wait_for

MAX_TASKS = 20_000
RING = 1_000


class EchoRunner:
    """Runs dispatch tasks in the test: returns the payload; b'fail' fails, b'gate' waits."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()

    async def run(self, context) -> bytes:
        payload = context.action.payload
        if payload == b"fail":
            raise RuntimeError("asked to fail")
        if payload == b"gate":
            await self.gate.wait()
        if payload.startswith(b"result:"):  # what a worker's WorkSuccess becomes
            return DispatchResult(payload.removeprefix(b"result:"), "text/plain")
        # Let the loop turn, as a real runner's I/O would: else a worker runs task after
        # task without ever yielding, and nothing else (a watcher) runs until the job ends.
        await asyncio.sleep(0)
        return payload


@dataclass
class Daemon:
    scheduler: Scheduler
    service: SchedulerService
    runner: EchoRunner
    channel: grpc.aio.Channel
    stub: scheduler_pb2_grpc.SchedulerServiceStub
    address: str


@contextlib.asynccontextmanager
async def running_daemon(
    *, allow_exec: bool, channel_options=(), ring: int = RING
) -> AsyncIterator[Daemon]:
    runner = EchoRunner()
    scheduler = Scheduler(
        max_concurrency=8,
        runners={DispatchAction: runner, ExecAction: ExecRunner()},
        resources=ResourcePool({"seats": 2}),
        max_tasks_per_job=MAX_TASKS,
        event_log_length=1_000,
    )
    service = SchedulerService(scheduler, allow_exec=allow_exec, watch_all_capacity=ring)
    # Short, so the socket path fits in sun_path (108 bytes) wherever pytest's tmp is.
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="dukatd-") as directory:
        address = f"unix:{directory}/d.sock"
        server = await create_server(scheduler, [address], service=service)
        await server.start()
        channel = grpc.aio.insecure_channel(address, options=list(channel_options))
        try:
            stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
            yield Daemon(scheduler, service, runner, channel, stub, address)
        finally:
            runner.gate.set()
            await channel.close()
            await server.stop(None)
            await scheduler.close()


@pytest.fixture
async def daemon() -> AsyncIterator[Daemon]:
    async with running_daemon(allow_exec=True) as d:
        yield d


def dispatch(task_id: str, payload: bytes = b"ok", **fields) -> job_pb2.TaskSpec:
    return job_pb2.TaskSpec(
        id=task_id, dispatch=job_pb2.DispatchAction(queue="q", payload=payload), **fields
    )


def job(*tasks: job_pb2.TaskSpec, **fields) -> job_pb2.JobSpec:
    return job_pb2.JobSpec(tasks=tasks, **fields)


async def submit(d: Daemon, spec: job_pb2.JobSpec, request_id: str = "") -> str:
    response = await d.stub.Submit(scheduler_pb2.SubmitRequest(job=spec, request_id=request_id))
    return response.job_id


async def watch_to_end(d: Daemon, job_id: str, after: int = 0) -> list[list[event_pb2.Event]]:
    call = d.stub.Watch(scheduler_pb2.WatchRequest(job_id=job_id, after_sequence=after))
    return [list(response.events) async for response in call]


def flat(batches: list[list[event_pb2.Event]]) -> list[event_pb2.Event]:
    return [event for batch in batches for event in batch]


def job_states(events: list[event_pb2.Event]) -> list[int]:
    return [e.job_state.state for e in events if e.WhichOneof("kind") == "job_state"]


# -- Submit, GetJob, Watch --------------------------------------------------------------------


async def test_a_job_runs_and_its_watch_replays_then_ends_after_the_terminal_event(daemon):
    job_id = await submit(daemon, job(dispatch("a"), dispatch("b", dependencies=["a"])))
    batches = await watch_to_end(daemon, job_id)
    events = flat(batches)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert events[-1].job_state.state == job_pb2.JOB_STATE_SUCCEEDED
    assert all(e.job_id == job_id for e in events)

    got = (await daemon.stub.GetJob(scheduler_pb2.GetJobRequest(job_id=job_id))).job
    assert got.state == job_pb2.JOB_STATE_SUCCEEDED
    assert [t.id for t in got.tasks] == ["a", "b"]
    assert got.task_counts.succeeded == 2 and got.last_sequence == events[-1].sequence

    # A finished job replays at once, many events in one message, from after_sequence on.
    replay = await watch_to_end(daemon, job_id)
    assert len(replay) == 1 and len(replay[0]) == len(events)
    tail = flat(await watch_to_end(daemon, job_id, after=3))
    assert [e.sequence for e in tail] == [e.sequence for e in events[3:]]


async def test_a_watch_of_job_events_only_leaves_the_task_events_out(daemon):
    job_id = await submit(daemon, job(dispatch("a"), dispatch("b", dependencies=["a"])))
    everything = flat(await watch_to_end(daemon, job_id))
    request = scheduler_pb2.WatchRequest(job_id=job_id, job_events_only=True)
    only = [e async for response in daemon.stub.Watch(request) for e in response.events]
    assert only == [e for e in everything if e.WhichOneof("kind") == "job_state"]
    assert job_states(only)[-1] == job_pb2.JOB_STATE_SUCCEEDED


async def test_watch_follows_a_live_job(daemon):
    job_id = await submit(
        daemon, job(dispatch("wait", b"gate"), dispatch("then", dependencies=["wait"]))
    )
    call = daemon.stub.Watch(scheduler_pb2.WatchRequest(job_id=job_id))
    seen: list[event_pb2.Event] = []
    async for response in call:
        seen.extend(response.events)
        running = [e for e in seen if e.task_state.state == job_pb2.TASK_STATE_RUNNING]
        if running and not daemon.runner.gate.is_set():
            daemon.runner.gate.set()  # only now: what follows is live, not replayed
    assert job_states(seen)[-1] == job_pb2.JOB_STATE_SUCCEEDED
    assert [e.sequence for e in seen] == list(range(1, len(seen) + 1))


async def test_a_failed_task_skips_its_dependents_and_other_branches_finish(daemon):
    spec = job(dispatch("bad", b"fail"), dispatch("after", dependencies=["bad"]), dispatch("other"))
    job_id = await submit(daemon, spec)
    await watch_to_end(daemon, job_id)
    got = (await daemon.stub.GetJob(scheduler_pb2.GetJobRequest(job_id=job_id))).job
    states = {t.id: t.state for t in got.tasks}
    assert got.state == job_pb2.JOB_STATE_FAILED
    assert states == {
        "bad": job_pb2.TASK_STATE_FAILED,
        "after": job_pb2.TASK_STATE_SKIPPED,
        "other": job_pb2.TASK_STATE_SUCCEEDED,
    }
    assert "asked to fail" in next(t.error for t in got.tasks if t.id == "bad")


async def test_an_exec_task_runs_when_exec_is_allowed(daemon):
    spec = job(job_pb2.TaskSpec(id="t", exec=job_pb2.ExecAction(argv=["true"])))
    job_id = await submit(daemon, spec)
    assert job_states(flat(await watch_to_end(daemon, job_id)))[-1] == job_pb2.JOB_STATE_SUCCEEDED


async def test_get_job_carries_dispatch_and_exec_results_of_succeeded_tasks(daemon):
    spec = job(
        dispatch("d", b"result:42"),
        job_pb2.TaskSpec(
            id="x", exec=job_pb2.ExecAction(argv=["sh", "-c", "echo hi; echo no >&2"])
        ),
        dispatch("f", b"fail"),
    )
    job_id = await submit(daemon, spec)
    events = flat(await watch_to_end(daemon, job_id))
    # Watch carries no results: a stream of small events (job.proto, TaskStatus.result).
    assert not any(e.snapshot.job.tasks for e in events if e.HasField("snapshot"))
    got = (await daemon.stub.GetJob(scheduler_pb2.GetJobRequest(job_id=job_id))).job
    d, x, f = got.tasks
    assert d.result.dispatch == job_pb2.DispatchResult(payload=b"42", content_type="text/plain")
    assert x.result.exec == job_pb2.ExecResult(exit_code=0, stdout=b"hi\n", stderr=b"no\n")
    assert f.state == job_pb2.TASK_STATE_FAILED and not f.HasField("result")


async def test_get_job_keeps_results_within_its_budget_and_fetches_by_task_id(daemon):
    daemon.service.result_budget = 19  # a takes 20 bytes on the wire: left out; b takes 18
    job_id = await submit(daemon, job(dispatch("a", b"result:1234"), dispatch("b", b"result:56")))
    await watch_to_end(daemon, job_id)
    got = (await daemon.stub.GetJob(scheduler_pb2.GetJobRequest(job_id=job_id))).job
    assert [(t.HasField("result"), t.result_omitted) for t in got.tasks] == [
        (False, True),
        (True, False),
    ]
    daemon.service.result_budget = 100
    request = scheduler_pb2.GetJobRequest(job_id=job_id, task_ids=["a"])
    only = (await daemon.stub.GetJob(request)).job
    assert [t.id for t in only.tasks] == ["a"] and only.tasks[0].result.dispatch.payload == b"1234"
    assert only.task_counts.succeeded == 2
    unknown = scheduler_pb2.GetJobRequest(job_id=job_id, task_ids=["a", "nope"])
    error = await rpc_error(daemon.stub.GetJob(unknown))
    assert error.code() is grpc.StatusCode.NOT_FOUND and "'nope'" in error.details()


async def test_a_retried_submit_with_the_same_request_id_returns_the_same_job(daemon):
    spec = job(dispatch("a"))
    first = await submit(daemon, spec, request_id="r-1")
    again = await submit(daemon, spec, request_id="r-1")
    other = await submit(daemon, spec, request_id="r-2")
    assert first == again != other
    assert len(daemon.scheduler.jobs()) == 2


def test_request_ids_are_kept_only_for_jobs_the_scheduler_holds():
    held: set[str] = set()
    ids = RequestIds(held)  # anything with `in` will do
    for n in range(10_000):
        held.add(f"j{n}")
        held.discard(f"j{n - 10}")  # the scheduler retains the last 10 jobs
        ids.add(f"r{n}", f"j{n}")
        assert len(ids) <= 2 * 10 + RequestIds.MIN_SWEEP
    assert ids.get("r9999") == "j9999"
    assert ids.get("r0") is None


# -- errors -----------------------------------------------------------------------------------


def custom(name: str, amount: float) -> job_pb2.ResourceRequirement:
    return job_pb2.ResourceRequirement(type=job_pb2.RESOURCE_TYPE_CUSTOM, amount=amount, name=name)


def cpu(amount: float) -> job_pb2.ResourceRequirement:
    return job_pb2.ResourceRequirement(type=job_pb2.RESOURCE_TYPE_CPU, amount=amount)


INVALID = {
    "empty job": (job(), "job.tasks", None),
    "empty id": (job(dispatch("")), "job.tasks[0].id", None),
    "duplicate id": (job(dispatch("a"), dispatch("a")), "job.tasks[1].id", "'a'"),
    "over-long id": (job(dispatch("x" * 257)), "job.tasks[0].id", "256"),
    "unknown dependency": (
        job(dispatch("a", dependencies=["ghost"])),
        "job.tasks[0].dependencies[0]",
        "'ghost'",
    ),
    "no action": (job(job_pb2.TaskSpec(id="a")), "job.tasks[0].action", "'a'"),
    "empty argv": (
        job(job_pb2.TaskSpec(id="e", exec=job_pb2.ExecAction())),
        "job.tasks[0].exec.argv",
        "'e'",
    ),
    "zero amount": (
        job(dispatch("a", resources=[cpu(0)])),
        "job.tasks[0].resources[0].amount",
        "'a'",
    ),
    "negative amount": (
        job(dispatch("a", resources=[custom("seats", -1)])),
        "job.tasks[0].resources[0].amount",
        None,
    ),
    "over capacity": (
        job(dispatch("ok"), dispatch("a", resources=[cpu(0.5), custom("seats", 3)])),
        "job.tasks[1].resources[1].amount",
        "'a'",
    ),
    "unknown custom resource": (
        job(dispatch("a", resources=[custom("licences", 1)])),
        "job.tasks[0].resources[0].name",
        "'licences'",
    ),
    "bad retry multiplier": (
        job(dispatch("a", retry=job_pb2.RetryPolicy(max_attempts=3, multiplier=0.5))),
        "job.tasks[0].retry.multiplier",
        "'a'",
    ),
    "bad retry attempts": (
        job(dispatch("a", retry=job_pb2.RetryPolicy(max_attempts=-2))),
        "job.tasks[0].retry.max_attempts",
        "'a'",
    ),
    "negative max_interruptions": (
        job(dispatch("a", max_interruptions=-1)),
        "job.tasks[0].max_interruptions",
        "'a'",
    ),
    "max_interruptions past its bound": (
        job(dispatch("ok"), dispatch("a", max_interruptions=101)),
        "job.tasks[1].max_interruptions",
        "from 0 to 100",
    ),
    "bad job concurrency": (job(dispatch("a"), max_concurrency=-1), "job.max_concurrency", None),
    "over the per-job task limit": (
        job(*(dispatch(f"t{n}") for n in range(MAX_TASKS + 1))),
        "job.tasks",
        str(MAX_TASKS),
    ),
}


@pytest.mark.parametrize("case", list(INVALID))
async def test_an_invalid_job_is_rejected_whole_with_the_field_path(daemon, case):
    spec, path, in_message = INVALID[case]
    error = await rpc_error(submit(daemon, spec))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert path in violations(error)
    if in_message is not None:
        assert in_message in error.details()
    assert daemon.scheduler.jobs() == []  # nothing of it was kept


async def test_a_cycle_is_invalid_and_its_path_is_in_the_message(daemon):
    spec = job(
        dispatch("a", dependencies=["c"]),
        dispatch("b", dependencies=["a"]),
        dispatch("c", dependencies=["b"]),
        dispatch("free"),
    )
    error = await rpc_error(submit(daemon, spec))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    # Read "depends on": a depends on c, c on b, b on a.
    rotations = ["a -> c -> b -> a", "c -> b -> a -> c", "b -> a -> c -> b"]
    assert any(cycle in error.details() for cycle in rotations), error.details()
    (field,) = violations(error)
    assert field in {f"job.tasks[{i}].dependencies" for i in range(3)}


async def test_exec_is_permission_denied_when_the_daemon_does_not_allow_it():
    async with running_daemon(allow_exec=False) as d:
        spec = job(
            dispatch("fine"), job_pb2.TaskSpec(id="sh", exec=job_pb2.ExecAction(argv=["sh"]))
        )
        error = await rpc_error(submit(d, spec))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "'sh'" in error.details() and "job.tasks[1].exec" in error.details()
        assert d.scheduler.jobs() == []


async def test_unknown_ids_are_not_found(daemon):
    stub = daemon.stub
    for call in (
        stub.GetJob(scheduler_pb2.GetJobRequest(job_id="nope")),
        stub.Cancel(scheduler_pb2.CancelRequest(job_id="nope")),
        watch_to_end(daemon, "nope"),
    ):
        error = await rpc_error(call)
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert "'nope'" in error.details()
    job_id = await submit(daemon, job(dispatch("a")))
    error = await rpc_error(
        stub.Cancel(scheduler_pb2.CancelRequest(job_id=job_id, task_ids=["zz"]))
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND and "'zz'" in error.details()


async def test_empty_job_ids_and_negative_sequences_are_invalid(daemon):
    stub = daemon.stub
    for call in (
        stub.GetJob(scheduler_pb2.GetJobRequest()),
        stub.Cancel(scheduler_pb2.CancelRequest()),
        watch_to_end(daemon, "", after=5),
    ):
        assert (await rpc_error(call)).code() == grpc.StatusCode.INVALID_ARGUMENT
    job_id = await submit(daemon, job(dispatch("a")))
    error = await rpc_error(watch_to_end(daemon, job_id, after=-1))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_work_is_unimplemented_for_now(daemon):
    call = daemon.stub.Work(iter([scheduler_pb2.WorkRequest()]))
    error = await rpc_error(call.read())
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "worker" in error.details()


# -- Cancel and ListJobs ----------------------------------------------------------------------


async def test_cancel_a_task_with_its_downstream_then_the_job_idempotently(daemon):
    spec = job(
        dispatch("wait", b"gate"),
        dispatch("after", dependencies=["wait"]),
        dispatch("blocked", b"gate"),
    )
    job_id = await submit(daemon, spec)
    stub = daemon.stub
    request = scheduler_pb2.CancelRequest(job_id=job_id, task_ids=["wait"], reason="test")
    assert (await stub.Cancel(request)).cancelled_count == 2  # wait and after
    assert (await stub.Cancel(request)).cancelled_count == 0
    whole = scheduler_pb2.CancelRequest(job_id=job_id)
    assert (await stub.Cancel(whole)).cancelled_count == 1  # blocked
    events = flat(await watch_to_end(daemon, job_id))
    assert job_states(events)[-1] == job_pb2.JOB_STATE_CANCELLED
    assert (await stub.Cancel(whole)).cancelled_count == 0


async def test_list_jobs_filters_by_state_and_labels_and_pages_newest_first(daemon):
    stub = daemon.stub
    done = [
        await submit(daemon, job(dispatch("a"), labels={"team": "x", "n": str(n)}))
        for n in range(5)
    ]
    for job_id in done:
        await finished(daemon.scheduler, job_id)
    live = await submit(daemon, job(dispatch("w", b"gate")), request_id="live")
    other = await submit(daemon, job(dispatch("a"), labels={"team": "y"}))
    await finished(daemon.scheduler, other)

    listed = await stub.ListJobs(scheduler_pb2.ListJobsRequest())
    assert [j.job_id for j in listed.jobs] == [other, live, *reversed(done)]
    assert not listed.next_page_token and all(not j.tasks for j in listed.jobs)
    assert listed.jobs[1].task_counts.running + listed.jobs[1].task_counts.ready == 1

    by_state = await stub.ListJobs(
        scheduler_pb2.ListJobsRequest(states=[job_pb2.JOB_STATE_RUNNING])
    )
    assert [j.job_id for j in by_state.jobs] == [live]
    by_label = await stub.ListJobs(scheduler_pb2.ListJobsRequest(labels={"team": "x", "n": "3"}))
    assert [j.job_id for j in by_label.jobs] == [done[3]]

    pages, token = [], ""
    while True:
        request = scheduler_pb2.ListJobsRequest(labels={"team": "x"}, page_size=2, page_token=token)
        response = await stub.ListJobs(request)
        pages.append([j.job_id for j in response.jobs])
        token = response.next_page_token
        if not token:
            break
    assert pages == [[done[4], done[3]], [done[2], done[1]], [done[0]]]


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def test_list_jobs_rejects_bad_filters_and_tokens(daemon):
    stub = daemon.stub
    for request in (
        scheduler_pb2.ListJobsRequest(states=[job_pb2.JOB_STATE_UNSPECIFIED]),
        scheduler_pb2.ListJobsRequest(states=[42]),
        scheduler_pb2.ListJobsRequest(page_size=-1),
    ):
        error = await rpc_error(stub.ListJobs(request))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert violations(error)


BAD_TOKENS = {
    "words": "not a token",
    "deeply nested json": b64(b"[" * 100_000 + b"]" * 100_000),
    "the json of an older daemon": b64(b'[1700000000.0, "abc"]'),
    "long": "A" * 100_000,
    "not base64": "%%%%",
    "not ascii": "jøb",
    "a valid prefix with junk": b64(b"\x01" + b"\x00" * 8) + "!",
    "empty payload": b64(b"\x01"),
    "unknown version": b64(b"\x09" + b"\x00" * 8 + b"job"),
    "not a number": b64(b"\x01" + struct.pack(">d", math.nan) + b"job"),
    "job id not utf-8": b64(b"\x01" + struct.pack(">d", 1.0) + b"\xff\xfe"),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
async def test_a_page_token_that_does_not_decode_is_invalid_naming_it(daemon, case):
    await submit(daemon, job(dispatch("a")))
    request = scheduler_pb2.ListJobsRequest(page_token=BAD_TOKENS[case])
    error = await rpc_error(daemon.stub.ListJobs(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(violations(error)) == ["page_token"]


async def test_page_tokens_are_short_and_opaque(daemon):
    for _ in range(3):
        await submit(daemon, job(dispatch("a")))
    response = await daemon.stub.ListJobs(scheduler_pb2.ListJobsRequest(page_size=1))
    token = response.next_page_token
    assert token and len(token) <= 128
    assert set(token) <= set(string.ascii_letters + string.digits + "-_")


# -- watching every job -----------------------------------------------------------------------


async def test_watch_all_sees_every_job_live(daemon):
    call = daemon.stub.Watch(scheduler_pb2.WatchRequest())
    await call.initial_metadata()  # the daemon's cursor is open from here on
    first = await submit(daemon, job(dispatch("a")))
    second = await submit(daemon, job(dispatch("b", b"fail")))
    ended: dict[str, int] = {}
    async for response in call:
        for event in response.events:
            if event.WhichOneof("kind") == "job_state" and event.job_state.state in (
                job_pb2.JOB_STATE_SUCCEEDED,
                job_pb2.JOB_STATE_FAILED,
            ):
                ended[event.job_id] = event.job_state.state
        if len(ended) == 2:
            break
    assert ended == {first: job_pb2.JOB_STATE_SUCCEEDED, second: job_pb2.JOB_STATE_FAILED}
    call.cancel()
    # The last watcher gone, the ring lets its events go and stops listening.
    await wait_for(lambda: not daemon.service.ring.cursors)
    assert len(daemon.service.ring) <= RING
    assert daemon.service.ring.append not in daemon.scheduler._listeners


async def test_watch_streams_over_the_limit_are_resource_exhausted(daemon):
    daemon.service.max_watch_streams = 1
    call = daemon.stub.Watch(scheduler_pb2.WatchRequest())
    await call.initial_metadata()
    error = await rpc_error(watch_to_end(daemon, "whatever"))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    call.cancel()


async def test_a_watcher_of_every_job_that_falls_behind_the_ring_is_ended(daemon):
    call = daemon.stub.Watch(scheduler_pb2.WatchRequest())
    await call.initial_metadata()
    # One Submit puts a READY event per task in the ring at once: more than it holds.
    job_id = await submit(daemon, job(*(dispatch(f"t{n}") for n in range(2 * RING))))
    error = await rpc_error(call.read())
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "fell" in error.details()
    await wait_for(lambda: not daemon.service.ring.cursors)  # the ring let go of it at once
    assert await finished(daemon.scheduler, job_id) is JobState.SUCCEEDED


STALL_RING = 15_000  # takes the Submit's burst of 10,001 events: the stall comes later


async def test_stalled_watchers_do_not_hold_back_a_10000_task_job_nor_grow_memory():
    # No BDP probing: the client's window stays small, so a watcher that does not read
    # stalls in the server's context.write within a few messages, as a stuck client would.
    async with running_daemon(
        allow_exec=False, channel_options=[("grpc.http2.bdp_probe", 0)], ring=STALL_RING
    ) as d:
        everything = d.stub.Watch(scheduler_pb2.WatchRequest())
        await everything.initial_metadata()
        job_id = await submit(d, job(*(dispatch(f"t{n}") for n in range(10_000))))
        one_job = d.stub.Watch(scheduler_pb2.WatchRequest(job_id=job_id))

        assert await finished(d.scheduler, job_id, within=60) is JobState.SUCCEEDED
        ring = d.service.ring
        (cursor,) = ring.cursors  # still open: stuck in a write, it has not noticed yet
        assert ring.end > 30_000  # every event of the job went through the ring...
        assert len(ring) == STALL_RING  # ...which held only its capacity
        assert cursor.lag > STALL_RING  # the stalled watcher fell behind, holding nothing
        log = d.scheduler._jobs[job_id].log  # the engine's per-job log: bounded as well
        assert len(log) <= 2 * 1_000

        # Reading now: watch-all says it fell behind; the job's watcher gets a snapshot in
        # place of what its bounded log no longer holds, and its stream ends.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in everything:
                pass
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        events = [event async for response in one_job for event in response.events]
        kinds = [e.WhichOneof("kind") for e in events]
        assert "snapshot" in kinds and len(events) < 30_000
        last = events[-1]
        if last.WhichOneof("kind") == "snapshot":
            assert last.snapshot.job.state == job_pb2.JOB_STATE_SUCCEEDED
        else:
            assert last.job_state.state == job_pb2.JOB_STATE_SUCCEEDED


# -- the rest of the server: garbage, health, reflection --------------------------------------

METHODS = {
    "Submit": "unary",
    "Cancel": "unary",
    "GetJob": "unary",
    "ListJobs": "unary",
    "Watch": "stream",
    "Work": "bidi",
}
# Eleven 0xff bytes: a varint longer than ten bytes, which no protobuf parser accepts.
BROKEN = b"\xff" * 11


async def send_raw(channel: grpc.aio.Channel, method: str, data: bytes) -> grpc.StatusCode:
    path = f"/dukat.v1.SchedulerService/{method}"
    kind = METHODS[method]
    try:
        if kind == "unary":
            await channel.unary_unary(path)(data)
        elif kind == "stream":
            call = channel.unary_stream(path)(data)
            # Random bytes that happen to parse may be a live watch: its headers are answer
            # enough that the server took it; a status ends everything else.
            async for _ in call:
                pass
        else:
            call = channel.stream_stream(path)(iter([data]))
            async for _ in call:
                pass
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("method", list(METHODS))
async def test_garbage_bytes_get_an_error_and_the_server_keeps_serving(daemon, method, caplog):
    rng = random.Random(method)
    # Work answers UNIMPLEMENTED before it reads anything, for now.
    expected = (
        grpc.StatusCode.UNIMPLEMENTED if method == "Work" else grpc.StatusCode.INVALID_ARGUMENT
    )
    for garbage in (BROKEN, BROKEN + rng.randbytes(64), b"\x0f" + rng.randbytes(200)):
        assert await send_raw(daemon.channel, method, garbage) == expected
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    health = health_pb2_grpc.HealthStub(daemon.channel)
    reply = await health.Check(health_pb2.HealthCheckRequest())
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    job_id = await submit(daemon, job(dispatch("still")))
    assert await finished(daemon.scheduler, job_id) is JobState.SUCCEEDED


async def test_health_is_serving_for_the_server_and_the_scheduler_service(daemon):
    health = health_pb2_grpc.HealthStub(daemon.channel)
    for service in ("", "dukat.v1.SchedulerService"):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    error = await rpc_error(health.Check(health_pb2.HealthCheckRequest(service="nope")))
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_reflection_lists_the_services(daemon):
    stub = reflection_pb2_grpc.ServerReflectionStub(daemon.channel)
    call = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    response = await call.read()
    call.cancel()
    names = {service.name for service in response.list_services_response.service}
    assert {
        "dukat.v1.SchedulerService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names
