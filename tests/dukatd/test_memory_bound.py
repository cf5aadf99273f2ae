"""The daemon's bound on the tasks it holds (`--max-tasks`), and running out of memory.

Jobs nobody serves pile up in memory: without a bound, thirty of 20,000 tasks took a daemon
from 52 MB to 1 GB, and under an address-space limit a Submit answered UNKNOWN (MemoryError)
yet was journaled. Real daemons with a journal; the bound is small so that it is hit fast.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
from pathlib import Path
from typing import Any

import grpc
import pytest

from dukat import convert
from dukat.core._gates import Gates
from dukat.v1 import job_pb2, scheduler_pb2, scheduler_pb2_grpc
from dukatd.journal import JOURNAL_FILE
from dukatd.journal.writer import Writer
from tests.dukatd.in_loop import served
from tests.dukatd.test_recovery import config_for

RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


def unserved_job(tasks: int) -> job_pb2.JobSpec:
    """`tasks` dispatch tasks to a queue no worker serves: they stay held, READY."""
    return job_pb2.JobSpec(
        tasks=[
            job_pb2.TaskSpec(id=f"t{i}", dispatch=job_pb2.DispatchAction(queue="nobody"))
            for i in range(tasks)
        ]
    )


def journaled_requests(state: Path) -> set[str]:
    """The request ids of the jobs in the journal (read beside the running daemon: WAL)."""
    with contextlib.closing(sqlite3.connect(state / JOURNAL_FILE)) as db:
        return {row[0] for row in db.execute("SELECT request_id FROM jobs")}


async def submit(address: str, tasks: int, request_id: str) -> str:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
        request = scheduler_pb2.SubmitRequest(job=unserved_job(tasks), request_id=request_id)
        return (await stub.Submit(request, timeout=10)).job_id


async def refused(address: str, tasks: int, request_id: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await submit(address, tasks, request_id)
    return caught.value


async def test_submits_past_max_tasks_are_refused_naming_it_and_nothing_is_journaled(
    daemons, short_tmp: Path
):
    state = short_tmp / "state"
    daemon = await daemons("--max-tasks", "50", state_dir=state).serving()
    accepted: dict[str, str] = {}
    for number in range(10):
        request_id = f"job-{number}"
        try:
            accepted[request_id] = await submit(daemon.address, 20, request_id)
        except grpc.aio.AioRpcError as error:
            assert error.code() is RESOURCE_EXHAUSTED, error
            assert "--max-tasks" in (error.details() or ""), error.details()
            assert "50" in (error.details() or "")
            break
    else:
        pytest.fail("ten jobs of 20 tasks fitted under --max-tasks 50")
    assert list(accepted) == ["job-0", "job-1"]  # 40 held; 20 more would be 60
    assert journaled_requests(state) == {"job-0", "job-1"}  # nothing of the refused one
    assert daemon.returncode() is None and await daemon.health() == "SERVING"

    error = await refused(daemon.address, 51, "too-big")
    assert error.code() is RESOURCE_EXHAUSTED and "never" in (error.details() or "")

    # A job that finishes makes room (finished jobs are dropped, oldest first, for it).
    async with grpc.aio.insecure_channel(daemon.address) as channel:
        stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
        await stub.Cancel(scheduler_pb2.CancelRequest(job_id=accepted["job-0"]))
    assert await submit(daemon.address, 30, "after-cancel")
    assert journaled_requests(state) == {"job-1", "after-cancel"}


async def test_a_restart_with_a_bound_below_what_the_journal_holds_starts_and_says_so(
    daemons, short_tmp: Path
):
    state = short_tmp / "state"
    first = await daemons(state_dir=state).serving()
    kept = [await submit(first.address, 20, f"job-{number}") for number in range(3)]
    first.signal(signal.SIGTERM)
    assert await first.exited() == 0

    again = await daemons("--max-tasks", "30", state_dir=state).serving()
    log = again.log()
    assert "--max-tasks" in log and "60" in log, log
    async with grpc.aio.insecure_channel(again.address) as channel:
        stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
        for job_id in kept:  # every job is back
            job = (await stub.GetJob(scheduler_pb2.GetJobRequest(job_id=job_id))).job
            assert len(job.tasks) == 20
    error = await refused(again.address, 1, "one-more")
    assert error.code() is RESOURCE_EXHAUSTED and "--max-tasks" in (error.details() or "")
    assert journaled_requests(state) == {"job-0", "job-1", "job-2"}


# -- running out of memory on a request's path -----------------------------------------------


@pytest.mark.parametrize("where", ["convert", "journal", "start"])
async def test_a_submit_that_runs_out_of_memory_keeps_nothing(
    short_tmp: Path, monkeypatch, where: str
):
    """Out of memory anywhere in a Submit: RESOURCE_EXHAUSTED, and nothing of the job kept,
    in memory or in the journal; the daemon goes on (its journal writer too)."""
    target, name = {
        "convert": (convert, "job_spec_from_proto"),
        "journal": (Writer, "commit"),
        "start": (Gates, "make_ready"),
    }[where]
    original = getattr(target, name)
    calls = 0

    def out_of_memory_the_first_time(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise MemoryError
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, out_of_memory_the_first_time)

    config = config_for(short_tmp)
    async with served(config) as daemon:
        address = config.listen[0]
        error = await refused(address, 3, "out-of-memory")
        assert error.code() is RESOURCE_EXHAUSTED, error
        assert "memory" in (error.details() or "")
        assert daemon.scheduler.jobs() == []
        job_id = await submit(address, 3, "then-fine")  # the journal still writes
        assert [job.job_id for job in daemon.scheduler.jobs()] == [job_id]
        assert journaled_requests(config.state_dir) == {"then-fine"}
    async with served(config) as again:  # and a restart brings back only that one
        assert [job.job_id for job in again.scheduler.jobs()] == [job_id]
