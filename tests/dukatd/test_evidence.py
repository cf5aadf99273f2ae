"""A failure tells you why, end to end: real dukatd processes with a journal, real exec tasks,
the Python client, and a restart in between.

A failed exec task keeps its exit code (or signal) and the tails of both streams in GetJob,
in the Python client's `TaskStatus.failure`, in its failed event's message, and after the
daemon is killed and started again. A cancel keeps its reason in the tasks' errors, the job's
message and the events, and a cancel that was still stopping a task when the daemon died is
applied again with its reason.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

import grpc

import dukat
from dukat.actions import ExecAction
from dukat.core import JobSpec, JobState, TaskSpec, TaskState
from dukat.core.events import JobStateChanged, TaskStateChanged
from dukat.errors import TaskFailedRemotely
from dukat.v1 import job_pb2, scheduler_pb2, scheduler_pb2_grpc
from tests.dukatd.daemon_process import DaemonProcess

StartDaemon = Callable[..., DaemonProcess]

FAILING = "echo o1; echo e1 >&2; echo e2 >&2; echo e3 >&2; exit 7"
FAILED_MESSAGE = "TaskProcessError: 'sh' exited with code 7; stderr ends: e1 | e2 | e3"


async def start(daemons: StartDaemon, state: Path, *args: str) -> DaemonProcess:
    return await daemons("--allow-exec", *args, state_dir=state).serving()


async def kill_9(daemon: DaemonProcess) -> None:
    daemon.signal(signal.SIGKILL)
    assert await daemon.exited() == -signal.SIGKILL


async def get_job(daemon: DaemonProcess, job_id: str) -> job_pb2.Job:
    async with grpc.aio.insecure_channel(daemon.address) as channel:
        stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
        return (await stub.GetJob(scheduler_pb2.GetJobRequest(job_id=job_id))).job


def sh(script: str) -> ExecAction:
    return ExecAction(("sh", "-c", script))


async def test_a_failed_exec_task_keeps_its_exit_code_and_both_tails_across_a_restart(
    daemons: StartDaemon, tmp_path: Path
) -> None:
    daemon = await start(daemons, tmp_path)
    async with dukat.connect(daemon.address) as client:
        handle = await client.submit(JobSpec(tasks=(TaskSpec("f", sh(FAILING)),)))
        job = await asyncio.wait_for(handle.wait(), 30)
        events = [event async for event in handle.events()]
        results = await handle.results()
    assert job.state is JobState.FAILED
    status = job.task("f")
    assert status.error == FAILED_MESSAGE
    failure = status.failure
    assert failure is not None
    assert (failure.type, failure.exit_code, failure.signal) == ("TaskProcessError", 7, None)
    assert (failure.stdout, failure.stderr) == (b"o1\n", b"e1\ne2\ne3\n")
    failed = [e for e in events if isinstance(e, TaskStateChanged) and e.state is TaskState.FAILED]
    assert [e.message for e in failed] == [FAILED_MESSAGE]
    error = results["f"].error
    assert isinstance(error, TaskFailedRemotely) and error.type == "TaskProcessError"

    wire = (await get_job(daemon, handle.job_id)).tasks[0]
    assert (wire.failure.exit_code, wire.failure.stdout, wire.failure.stderr) == (
        7,
        b"o1\n",
        b"e1\ne2\ne3\n",
    )
    assert not wire.HasField("result")  # a result stays a success's

    await kill_9(daemon)
    daemon = await start(daemons, tmp_path)
    async with dukat.connect(daemon.address) as client:
        again = await client.get_job(handle.job_id)
    assert again.task("f").failure == failure
    assert again.task("f").error == FAILED_MESSAGE


async def test_a_task_killed_by_a_signal_says_which(daemons: StartDaemon, tmp_path: Path) -> None:
    daemon = await start(daemons, tmp_path)
    async with dukat.connect(daemon.address) as client:
        script = "echo going >&2; kill -KILL $$"
        handle = await client.submit(JobSpec(tasks=(TaskSpec("k", sh(script)),)))
        job = await asyncio.wait_for(handle.wait(), 30)
    status = job.task("k")
    assert status.failure is not None
    assert (status.failure.exit_code, status.failure.signal) == (None, signal.SIGKILL)
    assert status.error == (
        "TaskProcessError: 'sh' was killed by signal 9 (SIGKILL); stderr ends: going"
    )


async def test_a_cancel_keeps_its_reason_end_to_end_and_across_a_restart(
    daemons: StartDaemon, tmp_path: Path
) -> None:
    daemon = await start(daemons, tmp_path)
    spec = JobSpec(
        tasks=(
            TaskSpec("a", sh("sleep 30")),
            TaskSpec("b", sh("true"), dependencies=("a",)),
            TaskSpec("c", sh("true")),
        )
    )
    async with dukat.connect(daemon.address) as client:
        handle = await client.submit(spec)
        seen: set[tuple[str, TaskState]] = set()
        async for event in handle.events():  # until a runs and c is done
            if isinstance(event, TaskStateChanged):
                seen.add((event.task_id, event.state))
            if {("a", TaskState.RUNNING), ("c", TaskState.SUCCEEDED)} <= seen:
                break
        assert await handle.cancel(reason="operator said stop") == 2
        job = await asyncio.wait_for(handle.wait(), 30)
        events = [event async for event in handle.events()]
    expected = {"a": "job cancelled: operator said stop", "b": "job cancelled: operator said stop"}
    assert job.state is JobState.CANCELLED
    assert job.message == "2 of 3 tasks cancelled: operator said stop"
    assert {t.id: t.error for t in job.tasks if t.state is TaskState.CANCELLED} == expected
    ends = {
        e.task_id: e.message
        for e in events
        if isinstance(e, TaskStateChanged) and e.state is TaskState.CANCELLED
    }
    assert ends == expected
    assert [e.message for e in events if isinstance(e, JobStateChanged)][-1] == job.message

    await kill_9(daemon)
    daemon = await start(daemons, tmp_path)
    async with dukat.connect(daemon.address) as client:
        again = await client.get_job(handle.job_id)
    assert again.message == job.message
    assert {t.id: t.error for t in again.tasks} == {t.id: t.error for t in job.tasks}


async def test_a_cancel_that_was_stopping_a_task_when_the_daemon_died_keeps_its_reason(
    daemons: StartDaemon, tmp_path: Path
) -> None:
    # The task ignores SIGTERM and the kill grace is long: it is still being stopped, RUNNING,
    # when the daemon is killed; the journaled cancel ends it after the restart.
    daemon = await start(daemons, tmp_path, "--kill-grace", "60s")
    stubborn = sh("trap '' TERM; echo up; sleep 60")
    async with dukat.connect(daemon.address) as client:
        handle = await client.submit(JobSpec(tasks=(TaskSpec("s", stubborn),)))
        async for event in handle.events():
            if getattr(event, "text", "") == "up":
                break
        await handle.cancel("s", reason="wrong branch")
        assert (await handle.get()).task("s").state is TaskState.RUNNING
    await kill_9(daemon)
    daemon = await start(daemons, tmp_path)
    async with dukat.connect(daemon.address) as client:
        job = await asyncio.wait_for(client.job(handle.job_id).wait(), 30)
    assert job.state is JobState.CANCELLED
    assert job.task("s").error == "cancelled: wrong branch"
    assert job.message == "1 of 1 tasks cancelled: wrong branch"
