"""Reruns through a real dukatd: a failed pipeline continued from where it failed.

The pipeline: `extract` (exec) -> `shape` (dispatch, served by a Python worker here) ->
`load` (exec, fails until a flag file says `fixed`) -> `report` (dispatch, after `shape` and
`load`). The exec tasks append their name to a file and the worker records what it was
given: what really ran, whatever the daemon says.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

import dukat
from dukat.actions import DispatchAction, ExecAction, ExecResult
from dukat.client import Client, DispatchTask
from dukat.core import JobSpec, JobState, TaskSpec, TaskState
from dukat.core.events import TaskStateChanged
from dukat.errors import DaemonNotFoundError, FailedPreconditionError, InvalidArgumentError
from tests.dukatd.daemon_process import DaemonProcess

ARGS = ("--allow-exec", "--shutdown-grace", "0.3s", "--kill-grace", "0.3s")


class Pipeline:
    """The job, the files its exec tasks use, and what the worker was given."""

    def __init__(self, directory: Path) -> None:
        self.ran = directory / "ran.txt"
        self.flag = directory / "flag"
        self.flag.write_text("broken\n")
        self.served: list[str] = []  # dispatch task ids, in the order the worker got them
        self.upstreams: dict[str, dict[str, bytes]] = {}  # task id -> upstream payloads

    def exec(self, name: str, then: str = "true") -> ExecAction:
        script = f'echo {name} >> "$RAN"; {then}'
        env = {"RAN": str(self.ran), "FLAG": str(self.flag)}
        return ExecAction(argv=("sh", "-c", script), env=env)

    def spec(self, *, shape_payload: bytes = b"rows") -> JobSpec:
        return JobSpec(
            tasks=(
                TaskSpec("extract", self.exec("extract")),
                TaskSpec(
                    "shape", DispatchAction("pipeline", shape_payload), dependencies=("extract",)
                ),
                TaskSpec(
                    "load", self.exec("load", 'grep -qx fixed "$FLAG"'), dependencies=("shape",)
                ),
                TaskSpec(
                    "report", DispatchAction("pipeline", b"report"), dependencies=("shape", "load")
                ),
            ),
            labels={"pipeline": "daily"},
        )

    def ran_lines(self) -> list[str]:
        return self.ran.read_text().split() if self.ran.exists() else []

    async def serve(self, task: DispatchTask) -> bytes:
        self.served.append(task.task_id)
        self.upstreams[task.task_id] = {u.task_id: u.payload for u in task.upstream_results}
        return b"shaped " + task.payload


@asynccontextmanager
async def serving(daemon: DaemonProcess, pipeline: Pipeline) -> AsyncIterator[Client]:
    async with dukat.connect(daemon.address) as client, client.worker("pipeline", pipeline.serve):
        yield client


async def failed_run(client: Client, pipeline: Pipeline) -> str:
    """The pipeline, run once: `load` fails."""
    job = await asyncio.wait_for((await client.submit(pipeline.spec())).wait(), 30)
    assert job.state is JobState.FAILED
    assert pipeline.ran_lines() == ["extract", "load"] and pipeline.served == ["shape"]
    return job.job_id


@pytest.fixture
async def daemon(daemons: Callable[..., DaemonProcess]) -> DaemonProcess:
    return await daemons(*ARGS).serving()


async def test_a_rerun_runs_only_what_had_not_succeeded(daemon, short_tmp):
    pipeline = Pipeline(short_tmp)
    async with serving(daemon, pipeline) as client:
        old = await failed_run(client, pipeline)
        pipeline.flag.write_text("fixed\n")
        handle = await client.job(old).rerun()
        assert handle.job_id != old
        job = await asyncio.wait_for(handle.wait(), 30)
        assert job.state is JobState.SUCCEEDED, job.message
        # `extract` and `shape` did not run again; `load` did, then `report`.
        assert pipeline.ran_lines() == ["extract", "load", "load"]
        assert pipeline.served == ["shape", "report"]
        # `report` was given the carried result of `shape`, as if it had just run.
        assert pipeline.upstreams["report"] == {"shape": b"shaped rows", "load": b""}
        before = await client.get_job(old)
        for task_id in ("extract", "shape"):
            task = job.task(task_id)
            assert (task.state, task.carried_from) == (TaskState.SUCCEEDED, old)
            assert task.result == before.task(task_id).result
            assert (task.started_at, task.finished_at) == (
                before.task(task_id).started_at,
                before.task(task_id).finished_at,
            )
        assert isinstance(job.task("extract").result, ExecResult)
        assert job.task("load").carried_from == "" and job.task("load").attempts == 1
        assert before.state is JobState.FAILED  # the old job is as it was
        assert {t.carried_from for t in before.tasks} == {""}
        events = [event async for event in handle.events()]
        carried = [
            (e.task_id, e.message)
            for e in events
            if isinstance(e, TaskStateChanged) and e.state is TaskState.SUCCEEDED and e.message
        ]
        message = f"carried over from job {old}"
        assert carried == [("extract", message), ("shape", message)]
        assert job.labels == {"pipeline": "daily"}


async def test_a_rerun_with_a_corrected_job_runs_what_changed_and_its_downstream(daemon, short_tmp):
    pipeline = Pipeline(short_tmp)
    async with serving(daemon, pipeline) as client:
        old = await failed_run(client, pipeline)
        pipeline.flag.write_text("fixed\n")
        corrected = pipeline.spec(shape_payload=b"rows, v2")
        job = await asyncio.wait_for((await client.rerun(old, corrected)).wait(), 30)
        assert job.state is JobState.SUCCEEDED, job.message
        assert pipeline.ran_lines() == ["extract", "load", "load"]
        assert pipeline.served == ["shape", "shape", "report"]
        assert pipeline.upstreams["report"]["shape"] == b"shaped rows, v2"
        assert {t.id: t.carried_from for t in job.tasks} == {
            "extract": old,
            "shape": "",
            "load": "",
            "report": "",
        }


async def test_a_rerun_needs_a_finished_job_the_daemon_holds(daemon, short_tmp):
    async with dukat.connect(daemon.address) as client:
        idle = JobSpec(tasks=(TaskSpec("waits", DispatchAction("nobody-serves-this")),))
        running = await client.submit(idle)
        with pytest.raises(FailedPreconditionError, match="cancel it or wait"):
            await running.rerun()
        with pytest.raises(DaemonNotFoundError) as raised:
            await client.rerun("no-such-job")
        assert "rerun_of" in str(raised.value)
        assert "--retain-finished-jobs" in str(raised.value)
        assert "--finished-job-ttl" in str(raised.value)
        with pytest.raises(InvalidArgumentError) as too_long:
            await client.rerun("j" * 300)
        assert [v.field for v in too_long.value.violations] == ["rerun_of"]
        await running.cancel()
        assert [job.job_id async for job in client.jobs()] == [running.job_id]


async def test_a_repeated_rerun_request_makes_one_job(daemon, short_tmp):
    pipeline = Pipeline(short_tmp)
    async with serving(daemon, pipeline) as client:
        old = await failed_run(client, pipeline)
        first = await client.rerun(old, request_id="rerun-1")
        again = await client.rerun(old, request_id="rerun-1")
        assert first == again
        await asyncio.wait_for(first.wait(), 30)
        assert len([job async for job in client.jobs()]) == 2
        assert pipeline.served == ["shape"]  # the rerun failed again, without running it


async def test_kill_9_right_after_a_rerun_keeps_what_it_carried_over(daemons, short_tmp):
    state = short_tmp / "state"
    pipeline = Pipeline(short_tmp)
    daemon = await daemons(*ARGS, state_dir=state).serving()
    async with serving(daemon, pipeline) as client:
        old = await failed_run(client, pipeline)
        pipeline.flag.write_text("fixed\n")
        new = (await client.rerun(old)).job_id
        daemon.kill()  # SIGKILL, the moment Submit answered
    restarted = await daemons(*ARGS, state_dir=state).serving()
    async with serving(restarted, pipeline) as client:
        job = await asyncio.wait_for(client.job(new).wait(), 30)
        assert job.state is JobState.SUCCEEDED, job.message
        assert {t.id for t in job.tasks if t.carried_from == old} == {"extract", "shape"}
        assert isinstance(job.task("extract").result, ExecResult)
        # Not one of them ran again, through the kill and the restart.
        assert pipeline.ran_lines().count("extract") == 1
        assert pipeline.served.count("shape") == 1
        assert pipeline.upstreams["report"]["shape"] == b"shaped rows"
        # The old job, brought back from the journal, is the same work as a client's spec.
        corrected = pipeline.spec(shape_payload=b"rows, v2")
        again = await asyncio.wait_for((await client.rerun(old, corrected)).wait(), 30)
        assert {t.id for t in again.tasks if t.carried_from} == {"extract"}
