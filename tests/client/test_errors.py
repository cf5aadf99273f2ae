"""Every gRPC status the daemon answers with comes back as its dukat.errors class."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator

import grpc
import pytest

import dukat
from dukat.actions import DispatchAction, ExecAction
from dukat.client import ERRORS_BY_CODE, Reconnect
from dukat.core.spec import JobSpec, TaskSpec
from dukat.errors import (
    CycleError,
    DaemonError,
    DaemonNotFoundError,
    DaemonUnavailableError,
    DeadlineExceededError,
    FailedPreconditionError,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    ValidationError,
)
from dukat.v1 import job_pb2, scheduler_pb2
from tests.client.daemon import Daemon, running_daemon
from tests.helpers import wait_for

NO_RETRY = Reconnect(give_up_after=0)


def dispatch(task_id: str, payload: bytes = b"ok", **fields: object) -> TaskSpec:
    return TaskSpec(task_id, DispatchAction("q", payload), **fields)  # type: ignore[arg-type]


async def test_a_bad_job_is_an_invalid_argument_error_with_every_violation(client) -> None:
    bad = JobSpec(tasks=(dispatch("a", dependencies=("x",)), dispatch("a")))
    with pytest.raises(InvalidArgumentError) as caught:
        await client.submit(bad)
    error = caught.value
    assert isinstance(error, ValidationError) and error.code == "INVALID_ARGUMENT"
    assert error.task_id == "a"
    assert FieldViolation("job.tasks[1].id", "duplicate task id 'a'") in error.violations
    assert str(error) == error.details and "task 'a'" in str(error)


async def test_a_cycle_comes_back_with_its_path(client) -> None:
    cyclic = JobSpec(tasks=(dispatch("a", dependencies=("b",)), dispatch("b", dependencies=("a",))))
    with pytest.raises(InvalidArgumentError) as caught:
        await client.submit(cyclic)
    # Not a CycleError: the wire carries the path in words, not as a list.
    assert not isinstance(caught.value, CycleError)
    assert "a -> b -> a" in str(caught.value) or "b -> a -> b" in str(caught.value)
    assert caught.value.violations


async def test_an_unknown_job_is_not_found_for_every_call(client) -> None:
    handle = client.job("nope")
    for call in (handle.get, handle.cancel, handle.wait):
        with pytest.raises(DaemonNotFoundError) as caught:
            await call()
        assert isinstance(caught.value, NotFoundError) and caught.value.code == "NOT_FOUND"
    with pytest.raises(DaemonNotFoundError):
        [e async for e in handle.events()]


async def test_exec_tasks_on_a_daemon_without_exec_are_permission_denied(client) -> None:
    spec = JobSpec(tasks=(TaskSpec("x", ExecAction(("true",))),))
    with pytest.raises(PermissionDeniedError, match="--allow-exec") as caught:
        await client.submit(spec)
    assert caught.value.code == "PERMISSION_DENIED"


async def test_too_many_watchers_is_resource_exhausted() -> None:
    async with (
        running_daemon(max_watch_streams=1) as daemon,
        dukat.connect(daemon.address) as client,
    ):
        handle = await client.submit(JobSpec(tasks=(dispatch("a", b"gate"),)))
        first = handle.events()
        await anext(first)
        with pytest.raises(ResourceExhaustedError) as caught:
            await anext(handle.events())
        assert caught.value.code == "RESOURCE_EXHAUSTED"
        await first.aclose()


async def test_no_daemon_is_unavailable_once_the_reconnect_policy_gives_up() -> None:
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="dukat-none-") as directory:
        address = f"unix:{directory}/none.sock"
        async with dukat.connect(address, reconnect=NO_RETRY) as client:
            with pytest.raises(DaemonUnavailableError) as caught:
                await client.get_job("j")
        assert isinstance(caught.value, ConnectionError) and caught.value.code == "UNAVAILABLE"
        loop = asyncio.get_running_loop()
        started = loop.time()
        patient = Reconnect(initial_backoff=0.01, max_backoff=0.05, give_up_after=0.3)
        async with dukat.connect(address, reconnect=patient) as client:
            with pytest.raises(DaemonUnavailableError):
                await client.submit(JobSpec(tasks=(dispatch("a"),)))
        assert 0.3 <= loop.time() - started < 3


async def test_a_submit_waits_for_a_daemon_that_comes_back(daemon: Daemon) -> None:
    await daemon.stop()
    patient = Reconnect(initial_backoff=0.01, max_backoff=0.05, give_up_after=10)
    async with dukat.connect(daemon.address, reconnect=patient) as client:
        submitting = asyncio.create_task(client.submit(JobSpec(tasks=(dispatch("a"),))))
        await asyncio.sleep(0.1)
        assert not submitting.done()
        await daemon.restart()
        handle = await asyncio.wait_for(submitting, 5)
        assert (await handle.wait()).state.name == "SUCCEEDED"


# -- codes the daemon's scheduler does not answer with by itself: a stand-in server ---------

TOKEN = "s3cret"


async def _get_job(request: scheduler_pb2.GetJobRequest, context: grpc.aio.ServicerContext):
    metadata = dict(context.invocation_metadata() or ())
    if metadata.get("authorization") != f"Bearer {TOKEN}":
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "a bearer token is required")
    code = getattr(grpc.StatusCode, request.job_id, None)
    if code is not None:
        await context.abort(code, f"asked for {request.job_id}")
    return scheduler_pb2.GetJobResponse(
        job=job_pb2.Job(job_id=request.job_id, state=job_pb2.JOB_STATE_RUNNING)
    )


@contextlib.asynccontextmanager
async def stand_in() -> AsyncIterator[str]:
    handler = grpc.method_handlers_generic_handler(
        "dukat.v1.SchedulerService",
        {
            "GetJob": grpc.unary_unary_rpc_method_handler(
                _get_job,
                request_deserializer=scheduler_pb2.GetJobRequest.FromString,
                response_serializer=scheduler_pb2.GetJobResponse.SerializeToString,
            )
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="dukat-stand-in-") as directory:
        address = f"unix:{directory}/s.sock"
        server.add_insecure_port(address)
        await server.start()
        try:
            yield address
        finally:
            await server.stop(None)


async def test_the_token_is_sent_as_a_bearer_and_without_it_the_call_is_unauthenticated() -> None:
    async with stand_in() as address:
        async with dukat.connect(address, reconnect=NO_RETRY) as client:
            with pytest.raises(UnauthenticatedError) as caught:
                await client.get_job("j")
            assert caught.value.code == "UNAUTHENTICATED"
        async with dukat.connect(address, token=TOKEN, reconnect=NO_RETRY) as client:
            assert (await client.get_job("j")).job_id == "j"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        *ERRORS_BY_CODE.items(),
        (grpc.StatusCode.INTERNAL, DaemonError),
        (grpc.StatusCode.ABORTED, DaemonError),
    ],
    ids=lambda value: getattr(value, "name", getattr(value, "__name__", "")),
)
async def test_each_status_code_raises_its_error_class(code, expected) -> None:
    async with (
        stand_in() as address,
        dukat.connect(address, token=TOKEN, reconnect=NO_RETRY) as client,
    ):
        with pytest.raises(expected) as caught:
            await client.get_job(code.name)
    assert type(caught.value) is expected
    assert caught.value.code == code.name
    assert caught.value.details == f"asked for {code.name}"


def test_the_table_maps_the_codes_the_contract_names() -> None:
    assert {code.name: kind for code, kind in ERRORS_BY_CODE.items()} == {
        "INVALID_ARGUMENT": InvalidArgumentError,
        "NOT_FOUND": DaemonNotFoundError,
        "PERMISSION_DENIED": PermissionDeniedError,
        "UNAUTHENTICATED": UnauthenticatedError,
        "RESOURCE_EXHAUSTED": ResourceExhaustedError,
        "FAILED_PRECONDITION": FailedPreconditionError,
        "DEADLINE_EXCEEDED": DeadlineExceededError,
        "UNAVAILABLE": DaemonUnavailableError,
    }


async def test_bad_arguments_to_connect_name_the_fix() -> None:
    with pytest.raises(ValueError, match="unix:/run/dukatd"):
        async with dukat.connect(""):
            pass
    with pytest.raises(ValueError, match="single line"):
        async with dukat.connect("unix:/x", token="a\nb"):
            pass
    with pytest.raises(ValueError, match="at least 1024"):
        async with dukat.connect("unix:/x", max_message_bytes=10):
            pass


async def test_submit_takes_a_job_spec_only(client) -> None:
    with pytest.raises(TypeError, match="JobSpec"):
        await client.submit({"tasks": []})


async def test_a_watch_stopped_early_frees_its_slot_on_the_daemon() -> None:
    async with (
        running_daemon(max_watch_streams=1) as daemon,
        dukat.connect(daemon.address) as client,
    ):
        handle = await client.submit(JobSpec(tasks=(dispatch("a", b"gate"),)))
        for _ in range(3):
            events = handle.events()
            await anext(events)
            assert daemon.service.watchers == 1
            await events.aclose()
            await wait_for(lambda: daemon.service.watchers == 0)
