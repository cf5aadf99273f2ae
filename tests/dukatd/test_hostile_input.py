"""Hostile or out-of-range input against a real dukatd (`dukatd.app.serve` in the test's loop,
real gRPC on a unix socket): refused with INVALID_ARGUMENT or RESOURCE_EXHAUSTED naming the
field or the limit, and never able to spoil what other clients see."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2

import dukat
from dukat import convert
from dukat.actions import DispatchAction
from dukat.core.breaker import CircuitBreakerConfig
from dukat.core.spec import JobSpec, TaskSpec
from dukat.core.states import JobState
from dukat.errors import InvalidArgumentError, ResourceExhaustedError
from dukat.v1 import (
    breaker_pb2,
    breaker_pb2_grpc,
    job_pb2,
    scheduler_pb2,
    scheduler_pb2_grpc,
    work_pb2,
)
from dukatd.breaker_service import MAX_BREAKERS
from dukatd.config import Config
from tests.dukatd.in_loop import served
from tests.dukatd.journal_files import write_journal
from tests.dukatd.rpc_errors import rpc_error, violations
from tests.dukatd.work_worker import RawWorker, failure

KIB = 1024


def config_for(directory: Path, **options: object) -> Config:
    defaults: dict[str, object] = {
        "listen": (f"unix:{directory}/d.sock",),
        "ephemeral": True,
        "metrics_listen": None,
    }
    return Config(**{**defaults, **options})


def big_labels(n: int, size: int) -> dict[str, str]:
    """About `size` characters of labels, in 64 labels of the longest values allowed."""
    per_value = min(1024, size // 64)
    return {f"k{i:02}": f"{n}-{i}-".ljust(per_value, "x") for i in range(64)}


# -- ListJobs ---------------------------------------------------------------------------------


async def test_list_jobs_pages_by_size_and_the_client_gets_every_job(short_tmp: Path):
    # Twelve jobs of 64 KiB of labels each are 768 KiB: over a 256 KiB message thrice.
    config = config_for(short_tmp, max_message_bytes=256 * KIB)
    async with served(config), dukat.connect(config.listen[0]) as client:
        submitted = []
        for n in range(12):
            spec = JobSpec(
                tasks=(TaskSpec("a", DispatchAction("nobody-serves-this")),),
                labels=big_labels(n, 64 * KIB),
            )
            submitted.append((await client.submit(spec)).job_id)
        listed = [job async for job in client.jobs(state=JobState.RUNNING)]
        assert [job.job_id for job in listed] == submitted[::-1]
        assert all(len(job.labels) == 64 for job in listed)


# -- durations --------------------------------------------------------------------------------

FOREVER = duration_pb2.Duration(seconds=2**63 - 1)  # what the fuzzer sent


def dispatch(task_id: str, **fields: object) -> job_pb2.TaskSpec:
    return job_pb2.TaskSpec(id=task_id, dispatch=job_pb2.DispatchAction(queue="q"), **fields)


async def test_a_breaker_timeout_out_of_range_is_refused_and_changes_nothing(short_tmp: Path):
    config = config_for(short_tmp)
    async with served(config), grpc.aio.insecure_channel(config.listen[0]) as channel:
        stub = breaker_pb2_grpc.CircuitBreakerServiceStub(channel)
        request = breaker_pb2.ConfigureBreakerRequest(
            name="db", config=breaker_pb2.CircuitBreakerConfig(timeout=FOREVER)
        )
        error = await rpc_error(stub.ConfigureBreaker(request))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "config.timeout" in violations(error)
        assert "db" not in [b.name for b in (await stub.ListBreakers(LIST)).breakers]
        request.config.timeout.FromSeconds(convert.MAX_DURATION)  # the bound itself is fine
        await stub.ConfigureBreaker(request)
        (breaker,) = (await stub.ListBreakers(LIST)).breakers
        assert breaker.config.timeout.seconds == convert.MAX_DURATION


LIST = breaker_pb2.ListBreakersRequest()

BAD_DURATIONS = {
    "job.tasks[1].timeout": dispatch("b", timeout=FOREVER),
    "job.tasks[1].retry.initial_backoff": dispatch(
        "b", retry=job_pb2.RetryPolicy(max_attempts=2, initial_backoff=FOREVER)
    ),
    "job.tasks[1].retry.max_backoff": dispatch(
        "b", retry=job_pb2.RetryPolicy(max_attempts=2, max_backoff=FOREVER)
    ),
    "job.tasks[1].timeout ": dispatch(  # nanos beyond a second
        "b", timeout=duration_pb2.Duration(seconds=1, nanos=2_000_000_000)
    ),
}


@pytest.mark.parametrize("field", list(BAD_DURATIONS))
async def test_a_task_duration_out_of_range_is_refused_naming_it(short_tmp: Path, field: str):
    config = config_for(short_tmp)
    async with served(config), grpc.aio.insecure_channel(config.listen[0]) as channel:
        stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
        spec = job_pb2.JobSpec(tasks=[dispatch("a"), BAD_DURATIONS[field]])
        error = await rpc_error(stub.Submit(scheduler_pb2.SubmitRequest(job=spec)))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field.strip() in violations(error)
        assert "'b'" in error.details()
        assert not (await stub.ListJobs(scheduler_pb2.ListJobsRequest())).jobs


# -- a journal written before the bounds ------------------------------------------------------


async def test_a_journal_holding_out_of_range_values_loads_them_brought_within_bounds(
    short_tmp: Path, caplog
):
    state = short_tmp / "state"
    state.mkdir()
    spec = job_pb2.JobSpec(
        tasks=[
            job_pb2.TaskSpec(
                id="slow",
                dispatch=job_pb2.DispatchAction(queue="q", payload=b"hi"),
                timeout=FOREVER,
                retry=job_pb2.RetryPolicy(max_attempts=2, max_backoff=FOREVER),
            )
        ]
    )
    settings = {
        "failure_threshold": 5,
        "timeout_seconds": float(2**63),
        "half_open_max_calls": 1,
        "success_threshold": 1,
        "failure_rate_threshold": 0.5,
        "window_size": 2**31 - 1,
    }
    write_journal(
        state / "journal.sqlite3",
        jobs=[("old-job", spec)],
        breakers={"old": settings, "unusable": {"failure_threshold": -1}},
    )
    config = config_for(short_tmp, ephemeral=False, state_dir=state)
    with caplog.at_level(logging.WARNING, logger="dukatd"):
        async with served(config) as daemon, dukat.connect(config.listen[0]) as client:
            listed = await breakers(config)
            assert listed["old"].timeout_seconds == convert.MAX_DURATION
            assert listed["old"].window_size == convert.MAX_WINDOW
            assert "unusable" not in listed  # made with the defaults on first use
            assert daemon.scheduler is not None
            task = daemon.scheduler.task_spec("old-job", "slow")
            assert task.timeout == convert.MAX_DURATION
            assert task.retry is not None and task.retry.max_backoff == convert.MAX_DURATION

            async def shout(task: dukat.client.DispatchTask) -> bytes:
                return task.payload.upper()

            async with client.worker("q", shout):  # its assignment carries the timeout
                job = await client.job("old-job").wait()
            assert job.state is JobState.SUCCEEDED
    warnings = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    for named in ("'old'", "config.timeout", "config.window_size", "'unusable'"):
        assert named in warnings
    for named in ("old-job", "job.tasks[0].timeout", "job.tasks[0].retry.max_backoff"):
        assert named in warnings


async def breakers(config: Config) -> dict[str, CircuitBreakerConfig]:
    """ListBreakers: each breaker's config, by name."""
    async with grpc.aio.insecure_channel(config.listen[0]) as channel:
        stub = breaker_pb2_grpc.CircuitBreakerServiceStub(channel)
        response = await stub.ListBreakers(LIST)
    return {b.name: convert.breaker_config_from_proto(b.config) for b in response.breakers}


# -- one bounded field per RPC ----------------------------------------------------------------

LONG = "x" * (convert.MAX_TEXT + 1)
S, B = scheduler_pb2, breaker_pb2
TOO_LONG = {  # RPC -> (request, the field named)
    "Submit": (
        S.SubmitRequest(job=job_pb2.JobSpec(tasks=[dispatch("a")]), request_id=LONG),
        "request_id",
    ),
    "Submit ": (
        S.SubmitRequest(job=job_pb2.JobSpec(tasks=[dispatch("a")], labels={"k": LONG})),
        "job.labels['k']",
    ),
    "Watch": (S.WatchRequest(job_id=LONG), "job_id"),
    "Cancel": (S.CancelRequest(job_id="j", reason=LONG), "reason"),
    "GetJob": (S.GetJobRequest(job_id="j", task_ids=["a", LONG]), "task_ids[1]"),
    "ListJobs": (S.ListJobsRequest(labels={"k": LONG}), "labels['k']"),
    "GetBreaker": (B.GetBreakerRequest(name=LONG), "name"),
    "ConfigureBreaker": (
        B.ConfigureBreakerRequest(
            name="b",
            config=B.CircuitBreakerConfig(failure_rate_threshold=0.5, window_size=2**31 - 1),
        ),
        "config.window_size",
    ),
    "ResetBreaker": (B.ResetBreakerRequest(name=LONG), "name"),
    "Acquire": (B.AcquireRequest(name=LONG), "name"),
    "Record": (B.RecordRequest(name=LONG, outcome=B.CALL_OUTCOME_SUCCESS), "name"),
}


@pytest.mark.parametrize("rpc", list(TOO_LONG))
async def test_every_rpc_refuses_a_value_past_its_bound_naming_the_field(short_tmp: Path, rpc):
    config = config_for(short_tmp)
    request, field = TOO_LONG[rpc]
    async with served(config), grpc.aio.insecure_channel(config.listen[0]) as channel:
        service = scheduler_pb2_grpc.SchedulerServiceStub
        if request.DESCRIPTOR.file.name.endswith("breaker.proto"):
            service = breaker_pb2_grpc.CircuitBreakerServiceStub
        call = getattr(service(channel), rpc.strip())(request)
        if rpc == "Watch":
            call = call.read()
        error = await rpc_error(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in violations(error)


async def test_a_hello_past_a_bound_is_refused_and_a_workers_long_words_are_cut(short_tmp: Path):
    config = config_for(short_tmp)
    async with served(config):
        refused = RawWorker(config.listen[0], queues=("q" * (convert.MAX_NAME + 1),))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await refused.start()
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "hello.queues" in violations(raised.value)
        await refused.close()

        def fail_wordily(assignment: work_pb2.TaskAssignment) -> work_pb2.WorkResult:
            return failure(assignment, "why " * 100_000, retryable=False)

        worker = await RawWorker(config.listen[0], handler=fail_wordily).start()
        try:
            async with dukat.connect(config.listen[0]) as client:
                handle = await client.submit(JobSpec(tasks=(TaskSpec("a", DispatchAction("q")),)))
                job = await handle.wait()
                (task,) = (await client.get_job(handle.job_id)).tasks
        finally:
            await worker.close()
        assert job.state is JobState.FAILED and worker.status is None  # the stream lives on
        assert len(task.error) <= convert.MAX_TEXT + 64 and task.error.endswith("…")


# -- breakers named by tasks ------------------------------------------------------------------


def guarded(task_id: str, breaker: str, queue: str = "q") -> TaskSpec:
    return TaskSpec(task_id, DispatchAction(queue), circuit_breaker=breaker)


async def test_a_submit_naming_more_breakers_than_the_cap_is_refused_and_keeps_nothing(
    short_tmp: Path,
):
    state = short_tmp / "state"
    config = config_for(short_tmp, ephemeral=False, state_dir=state)
    async with served(config), dukat.connect(config.listen[0]) as client:
        tasks = tuple(guarded(f"t{n}", f"b{n}") for n in range(MAX_BREAKERS + 500))
        with pytest.raises(ResourceExhaustedError) as raised:
            await client.submit(JobSpec(tasks=tasks))
        assert str(MAX_BREAKERS) in str(raised.value) and "circuit breakers" in str(raised.value)
        assert await breakers(config) == {}
        assert [job async for job in client.jobs()] == []
        with contextlib.closing(sqlite3.connect(state / "journal.sqlite3")) as db:
            assert db.execute("SELECT count(*) FROM jobs").fetchone() == (0,)
        # Nothing was taken: every client may still make breakers.
        assert await client.breaker("fresh").allow_request()
        await client.submit(JobSpec(tasks=tasks[: MAX_BREAKERS - 1]))


async def test_a_breaker_name_too_long_in_a_task_is_refused_naming_the_task_field(
    short_tmp: Path,
):
    config = config_for(short_tmp)
    async with served(config), dukat.connect(config.listen[0]) as client:
        spec = JobSpec(tasks=(guarded("a", "ok"), guarded("b", "b" * 300_000)))
        with pytest.raises(InvalidArgumentError) as raised:
            await client.submit(spec)
        assert [v.field for v in raised.value.violations] == ["job.tasks[1].circuit_breaker"]
        assert raised.value.task_id == "b"
        assert await breakers(config) == {}


async def test_breakers_of_finished_jobs_make_room_for_new_ones(short_tmp: Path):
    config = config_for(short_tmp)
    per_job = MAX_BREAKERS * 3 // 5

    async def echo(task: dukat.client.DispatchTask) -> bytes:
        return task.payload

    async with served(config), dukat.connect(config.listen[0]) as client:
        async with client.worker("q", echo, concurrency=64):
            for round_ in range(3):  # 1,800 breakers made in all, never more than 1,000 held
                tasks = tuple(guarded(f"t{n}", f"r{round_}-{n}") for n in range(per_job))
                handle = await client.submit(JobSpec(tasks=tasks))
                assert (await handle.wait()).state is JobState.SUCCEEDED
        held = await breakers(config)
        assert len(held) <= MAX_BREAKERS and "r2-0" in held
        assert await client.breaker("fresh").allow_request()
