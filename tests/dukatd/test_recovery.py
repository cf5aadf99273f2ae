"""Recovery: what a daemon restarted on the same state directory brings back.

The crash tests (test_durability.py) kill real daemon processes; these run `serve` in the
test's loop, stopping it gracefully, and call `recover` directly where a state is hard to
reach through a live daemon (a task being cancelled at the moment of the crash).
"""

from __future__ import annotations

import re
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import grpc
import pytest

from dukat.core import JobState, Scheduler, TaskState
from dukat.core.results import TaskStatus
from dukat.core.scheduler import CancelRequest
from dukat.v1 import breaker_pb2, breaker_pb2_grpc, job_pb2, scheduler_pb2, scheduler_pb2_grpc
from dukatd.config import Config
from dukatd.journal import JOURNAL_FILE, Journal, RecoveredJob
from dukatd.metrics_ray import RAY_METRICS
from dukatd.recovery import decode_result, encode_result, recover
from dukatd.work_hub import WorkerHub
from tests.dukatd.in_loop import served
from tests.dukatd.test_metrics import scrape
from tests.helpers import wait_for


def config_for(directory: Path, **options: object) -> Config:
    defaults: dict[str, object] = {
        "listen": (f"unix:{directory}/d.sock",),
        "state_dir": directory / "state",
        "metrics_listen": None,
    }
    return Config(**{**defaults, **options})


class Running:
    """A daemon served in this loop, stopped gracefully on exit."""

    def __init__(self, directory: Path, **options: object) -> None:
        self.config = config_for(directory, **options)

    async def __aenter__(self) -> Running:
        self._stack = AsyncExitStack()
        self.daemon = await self._stack.enter_async_context(served(self.config))
        self.channel = grpc.aio.insecure_channel(self.config.listen[0])
        self._stack.push_async_callback(self.channel.close)
        self.jobs = scheduler_pb2_grpc.SchedulerServiceStub(self.channel)
        self.breakers = breaker_pb2_grpc.CircuitBreakerServiceStub(self.channel)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._stack.__aexit__(*exc_info)


def dispatch_job(*task_ids: str) -> job_pb2.JobSpec:
    return job_pb2.JobSpec(
        tasks=[
            job_pb2.TaskSpec(id=task_id, dispatch=job_pb2.DispatchAction(queue="nobody-serves"))
            for task_id in task_ids
        ]
    )


async def test_jobs_request_ids_and_breaker_settings_come_back(short_tmp: Path):
    async with Running(short_tmp) as first:
        submitted = await first.jobs.Submit(
            scheduler_pb2.SubmitRequest(job=dispatch_job("a", "b"), request_id="req-7")
        )
        await first.breakers.ConfigureBreaker(
            breaker_pb2.ConfigureBreakerRequest(
                name="api", config=breaker_pb2.CircuitBreakerConfig(failure_threshold=7)
            )
        )
        await first.jobs.Cancel(
            scheduler_pb2.CancelRequest(job_id=submitted.job_id, task_ids=["b"])
        )

    async with Running(short_tmp) as second:
        again = await second.jobs.Submit(
            scheduler_pb2.SubmitRequest(job=dispatch_job("a", "b"), request_id="req-7")
        )
        assert again.job_id == submitted.job_id
        job = (await second.jobs.GetJob(scheduler_pb2.GetJobRequest(job_id=again.job_id))).job
        states = {task.id: task.state for task in job.tasks}
        assert states["b"] == job_pb2.TASK_STATE_CANCELLED
        assert states["a"] == job_pb2.TASK_STATE_READY  # waiting for a worker, as before
        breaker = await second.breakers.GetBreaker(breaker_pb2.GetBreakerRequest(name="api"))
        assert breaker.breaker.config.failure_threshold == 7


async def test_a_finished_job_is_listed_and_watchable_after_a_restart(short_tmp: Path):
    async with Running(short_tmp) as first:
        submitted = await first.jobs.Submit(scheduler_pb2.SubmitRequest(job=dispatch_job("a")))
        await first.jobs.Cancel(scheduler_pb2.CancelRequest(job_id=submitted.job_id))
        before = (await first.jobs.GetJob(scheduler_pb2.GetJobRequest(job_id=submitted.job_id))).job

    async with Running(short_tmp) as second:
        listed = await second.jobs.ListJobs(scheduler_pb2.ListJobsRequest())
        assert [job.job_id for job in listed.jobs] == [submitted.job_id]
        after = (await second.jobs.GetJob(scheduler_pb2.GetJobRequest(job_id=submitted.job_id))).job
        assert after.state == before.state == job_pb2.JOB_STATE_CANCELLED
        assert after.last_sequence == before.last_sequence
        sequences = [
            event.sequence
            async for reply in second.jobs.Watch(
                scheduler_pb2.WatchRequest(job_id=submitted.job_id)
            )
            for event in reply.events
        ]
        assert sequences == list(range(1, before.last_sequence + 1))


async def test_a_task_being_cancelled_when_the_daemon_died_stays_cancelled(tmp_path: Path):
    journal = Journal.open(
        tmp_path / JOURNAL_FILE, encode_result=encode_result, decode_result=decode_result
    )
    scheduler = Scheduler(hold_events=True)
    WorkerHub(scheduler)  # the dispatch runner; no worker ever comes
    spec = dispatch_job("a", "b").SerializeToString()
    kept = RecoveredJob(
        job_id="j",
        request_id="",
        spec=spec,
        created_at=1.0,
        state=JobState.RUNNING,
        finished_at=None,
        message="",
        last_sequence=4,
        tasks=[TaskStatus(id="a", state=TaskState.RUNNING, attempts=1)],
        cancels=[CancelRequest(("a",))],
    )
    try:
        recovered = recover(scheduler, journal, [kept])
        assert (recovered.live, recovered.interrupted) == (1, 1)
        await wait_for(lambda: scheduler.get_job("j").task("a").state.is_terminal)
        states = {task.id: task.state for task in scheduler.get_job("j").tasks}
        assert states["a"] is TaskState.CANCELLED
    finally:
        await scheduler.close()
        await journal.close()


async def test_the_journal_reports_its_commits_size_and_backlog_on_metrics(short_tmp: Path):
    async with Running(short_tmp, metrics_listen="127.0.0.1:0") as running:
        await running.jobs.Submit(scheduler_pb2.SubmitRequest(job=dispatch_job("a", "b")))
        http = running.daemon.metrics_http
        assert http is not None
        scraped = await scrape(http)
        assert scraped.get("dukat_journal_commits_total") >= 1
        assert scraped.get("dukat_journal_commit_seconds_count") >= 1
        assert scraped.get("dukat_journal_bytes") > 0
        assert scraped.get("dukat_journal_write_errors_total") == 0
        assert "dukat_journal_backlog" in {sample.name for sample in scraped.samples}


METRICS_DOC = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()


async def test_the_metrics_doc_lists_exactly_the_metrics_a_daemon_serves(short_tmp: Path):
    listed = set(re.findall(r"^\| `((?:dukat|grpc)_[a-z_]+)` \|", METRICS_DOC, re.M))
    async with Running(short_tmp, metrics_listen="127.0.0.1:0") as running:
        await running.jobs.Submit(scheduler_pb2.SubmitRequest(job=dispatch_job("a")))
        http = running.daemon.metrics_http
        assert http is not None
        scraped = await scrape(http)
    served = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in scraped.families
        if not family.name.endswith("_created")  # prometheus-client's start times, not ours
    }
    # The Ray executor's are served by a daemon on Ray only (test_ray_executor scrapes them).
    assert listed == served | set(RAY_METRICS)


async def test_once_the_drain_stops_the_journal_submit_and_cancel_are_refused(short_tmp: Path):
    async with Running(short_tmp) as running:
        kept = await running.jobs.Submit(scheduler_pb2.SubmitRequest(job=dispatch_job("a")))
        assert running.daemon.journal is not None
        running.daemon.journal.freeze()  # where the drain's grace ends
        for call in (
            running.jobs.Submit(scheduler_pb2.SubmitRequest(job=dispatch_job("b"))),
            running.jobs.Cancel(scheduler_pb2.CancelRequest(job_id=kept.job_id)),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call
            assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
            assert "shutting down" in refused.value.details()
        job = (await running.jobs.GetJob(scheduler_pb2.GetJobRequest(job_id=kept.job_id))).job
        assert job.state == job_pb2.JOB_STATE_RUNNING  # not cancelled: it runs after a restart
