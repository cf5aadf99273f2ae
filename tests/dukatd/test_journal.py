"""The journal on its own: a real SQLite file, a real scheduler writing through it."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from dukat.core import (
    CallableAction,
    JobSpec,
    JobState,
    RetryPolicy,
    Scheduler,
    TaskSpec,
    TaskState,
    current_task,
)
from dukat.core.events import JobStateChanged, TaskStateChanged
from dukat.core.scheduler import CancelRequest
from dukat.errors import TaskInterruptedError
from dukat.v1 import job_pb2
from dukatd.journal import (
    JOURNAL_FILE,
    SCHEMA_VERSION,
    Journal,
    JournalError,
    JournalWriteError,
)
from dukatd.journal.writer import Writer
from tests.dukatd.journal_files import write_journal
from tests.helpers import finished


def encode(value: Any) -> bytes:
    return repr(value).encode()


def decode(data: bytes) -> str:
    return data.decode()


def open_journal(directory: Path, **options: Any) -> Journal:
    options.setdefault("commit_delay", 0.001)
    return Journal.open(
        directory / JOURNAL_FILE, encode_result=encode, decode_result=decode, **options
    )


def returning(value: Any) -> Callable[[], Any]:
    async def run() -> Any:
        return value

    return run


def chain(length: int, *, payload: str = "") -> JobSpec:
    return JobSpec(
        tasks=tuple(
            TaskSpec(
                id=f"t{i}",
                action=CallableAction(returning(f"r{i}{payload}")),
                dependencies=(f"t{i - 1}",) if i else (),
            )
            for i in range(length)
        )
    )


def rows(directory: Path, query: str) -> list[tuple[Any, ...]]:
    """What a reader of the file sees (what the writer committed)."""
    with contextlib.closing(sqlite3.connect(directory / JOURNAL_FILE)) as db:
        return db.execute(query).fetchall()


class Host:
    """What dukatd does with a journal, in a few lines: the scheduler writes through it."""

    def __init__(self, journal: Journal, **options: Any) -> None:
        self.journal = journal
        self.scheduler = Scheduler(hold_events=True, **options)
        journal.start(
            publish=self.scheduler.publish,
            result_of=self.scheduler.task_result,
            interruptions_of=self.scheduler.task_interruptions,
        )
        self.scheduler.add_record_listener(journal.on_record)
        self.scheduler.add_drop_listener(journal.drop)

    async def submit(
        self,
        spec: JobSpec,
        *,
        request_id: str = "",
        wire: bytes = b"spec",
        rerun_of: str | None = None,
        start: bool = True,
    ) -> str:
        """`start`: False stops where a crash right after the acceptance would."""
        prepared = self.scheduler.prepare(spec, rerun_of=rerun_of)
        created_at = prepared.job.created_at
        self.journal.accept(prepared.job_id, request_id, wire, created_at, prepared.carried)
        await self.journal.sync()
        if not start:
            self.scheduler.abandon(prepared)
            return prepared.job_id
        return self.scheduler.start(prepared)

    async def close(self) -> None:
        self.journal.freeze()
        await self.scheduler.close()
        await self.journal.close()


@pytest.fixture
async def hosts(tmp_path: Path) -> AsyncIterator[Callable[..., Host]]:
    made: list[Host] = []

    def make(**options: Any) -> Host:
        journal_options = {
            k: options.pop(k)
            for k in ("event_log_length", "max_bytes", "sync", "commit_delay")
            if k in options
        }
        made.append(Host(open_journal(tmp_path, **journal_options), **options))
        return made[-1]

    yield make
    for host in made:
        if not host.journal.closed:
            await host.close()


async def test_a_job_comes_back_whole_after_the_journal_is_reopened(hosts, tmp_path):
    host = hosts()
    job_id = await host.submit(chain(3), request_id="req-1", wire=b"the spec")
    assert await finished(host.scheduler, job_id) is JobState.SUCCEEDED
    last = host.scheduler.get_job(job_id).last_sequence
    await host.close()

    reopened = open_journal(tmp_path)
    jobs, breakers = reopened.load()
    await reopened.close()
    (job,) = jobs
    assert (job.job_id, job.request_id, job.spec) == (job_id, "req-1", b"the spec")
    assert job.state is JobState.SUCCEEDED and job.finished_at is not None
    assert job.last_sequence == last
    assert [event[1] for event in job.events] == list(range(1, last + 1))
    assert job.events[-1][0] is JobStateChanged and job.events[-1][3] is JobState.SUCCEEDED
    tasks = {task.id: task for task in job.tasks}
    assert {t.state for t in tasks.values()} == {TaskState.SUCCEEDED}
    assert tasks["t2"].result == "'r2'" and tasks["t2"].attempts == 1
    assert tasks["t2"].started_at is not None and tasks["t2"].finished_at is not None
    assert breakers == {}


async def test_a_rerun_comes_back_with_its_carried_tasks_started_or_not(hosts, tmp_path):
    """They are written with the acceptance: a crash before the rerun's events are written
    loses none of them, and the SUCCEEDED events written later keep them carried."""
    host = hosts()
    flaky = [RuntimeError("not yet")]

    async def load() -> str:
        if flaky:
            raise flaky.pop()
        return "loaded"

    first = TaskSpec("extract", CallableAction(returning("rows")))
    spec = JobSpec(tasks=(first, TaskSpec("load", CallableAction(load), dependencies=("extract",))))
    old = await host.submit(spec)
    assert await finished(host.scheduler, old) is JobState.FAILED
    extracted = host.scheduler.get_job(old).task("extract")
    crashed = await host.submit(spec, rerun_of=old, start=False)
    ran = await host.submit(spec, rerun_of=old)
    assert await finished(host.scheduler, ran) is JobState.SUCCEEDED
    await host.close()

    reopened = open_journal(tmp_path)
    jobs = {job.job_id: job for job in reopened.load()[0]}
    await reopened.close()
    for job_id in (crashed, ran):
        tasks = {task.id: task for task in jobs[job_id].tasks}
        carried = tasks["extract"]
        assert (carried.state, carried.result, carried.carried_from) == (
            TaskState.SUCCEEDED,
            "'rows'",
            old,
        )
        assert (carried.attempts, carried.started_at, carried.finished_at) == (
            1,
            extracted.started_at,
            extracted.finished_at,
        )
    assert "load" not in {task.id for task in jobs[crashed].tasks}  # it has to run
    assert {t.id: t.carried_from for t in jobs[ran].tasks} == {"extract": old, "load": ""}
    assert {t.carried_from for t in jobs[old].tasks} == {""}


async def test_watchers_see_an_event_only_once_it_is_committed(hosts):
    host = hosts()
    prepared = host.scheduler.prepare(chain(2))
    host.journal.accept(prepared.job_id, "", b"spec", 0.0)
    await host.journal.sync()
    job_id = host.scheduler.start(prepared)
    log = host.scheduler._jobs[job_id].log
    assert log.last_sequence >= 2  # RUNNING and the first READY, in memory
    assert log.visible_sequence == 0  # and none of it on disk yet
    last = log.last_sequence
    await host.journal.sync()
    assert log.visible_sequence >= last  # (the tasks may have gone on meanwhile)


async def test_the_events_kept_per_job_are_a_bounded_ring(hosts, tmp_path):
    host = hosts(event_log_length=5)
    job_id = await host.submit(chain(10))
    await finished(host.scheduler, job_id)
    await host.journal.sync()
    last = host.scheduler.get_job(job_id).last_sequence
    assert last > 20
    oldest = rows(tmp_path, "SELECT min(last_sequence) FROM event_chunks")
    assert oldest[0][0] > last - 2 * 5  # chunks older than twice the tail are gone
    await host.close()
    reopened = open_journal(tmp_path, event_log_length=5)
    (job,) = reopened.load()[0]
    await reopened.close()
    assert [event[1] for event in job.events] == list(
        range(job.last_sequence - 4, job.last_sequence + 1)
    )


async def test_a_dropped_job_leaves_nothing_behind(hosts, tmp_path):
    host = hosts(retain_finished_jobs=0)
    job_id = await host.submit(chain(3))
    await finished(host.scheduler, job_id)
    host.scheduler.jobs()  # retention runs on lookups: the job is dropped
    await host.journal.sync()
    for table in ("jobs", "task_changes", "event_chunks", "cancels"):
        assert rows(tmp_path, f"SELECT count(*) FROM {table}") == [(0,)], table


async def test_a_commit_that_drops_a_job_publishes_every_job_it_wrote(hosts):
    # Nothing hurries the writer: what follows is queued, then committed as one.
    host = hosts(retain_finished_jobs=1, commit_delay=30)
    first = await host.submit(chain(1))
    await finished(host.scheduler, first)
    await host.journal.sync()
    second = await host.submit(chain(1))
    log = host.scheduler._jobs[second].log
    # Its events, then the drop of the first job (retention keeps one): one commit.
    await finished(host.scheduler, second)
    assert first not in host.scheduler and log.visible_sequence == 0
    await host.journal.sync()
    assert log.visible_sequence == log.last_sequence
    assert [b async for b in host.scheduler.watch(second, log.last_sequence)] == []


async def test_the_file_stays_bounded_under_a_steady_stream_of_jobs(hosts, tmp_path):
    host = hosts(retain_finished_jobs=3)
    sizes = []
    for _round in range(4):
        for _ in range(15):
            job_id = await host.submit(chain(40, payload="x" * 2000), wire=b"s" * 20_000)
            await finished(host.scheduler, job_id)
        await host.journal.sync()
        sizes.append(host.journal.size())  # the database and its WAL
    # Each job is ~100 KB in the file; 60 went through, 3 are kept. The file holds what is
    # kept plus what is free for reuse (and a WAL of a few MB), not the history.
    assert sizes[-1] <= sizes[1] * 1.5, sizes


async def test_cancels_and_breakers_are_kept(hosts, tmp_path):
    host = hosts()
    gate = asyncio.Event()

    async def wait() -> None:
        await gate.wait()

    spec = JobSpec(
        tasks=(
            TaskSpec(id="a", action=CallableAction(wait)),
            TaskSpec(id="b", action=CallableAction(wait)),
        )
    )
    job_id = await host.submit(spec)
    host.journal.cancel(job_id, ["b"])
    host.journal.cancel(job_id, [], "operator said stop")
    host.journal.configure_breaker("api", {"failure_threshold": 3})
    await host.journal.sync()
    gate.set()
    await host.close()
    reopened = open_journal(tmp_path)
    (job,), breakers = reopened.load()
    await reopened.close()
    assert job.cancels == [CancelRequest(("b",)), CancelRequest((), "operator said stop")]
    assert breakers == {"api": {"failure_threshold": 3}}


async def test_nothing_is_recorded_once_frozen(hosts):
    host = hosts()
    job_id = await host.submit(chain(1))
    await host.journal.sync()
    host.journal.freeze()
    queued = host.journal.queued
    await finished(host.scheduler, job_id)
    host.journal.cancel(job_id, [])
    assert host.journal.queued == queued
    await host.journal.sync()  # returns at once: nothing is waiting to be written


async def test_a_job_over_the_size_limit_is_refused_and_the_journal_goes_on(hosts, tmp_path):
    host = hosts(max_bytes=256 * 1024)
    with pytest.raises(JournalWriteError) as refused:
        await host.submit(chain(1), wire=b"x" * 1024 * 1024)
    assert refused.value.full
    assert host.scheduler.jobs() == []  # never started
    job_id = await host.submit(chain(2), wire=b"small")  # the next one fits
    assert await finished(host.scheduler, job_id) is JobState.SUCCEEDED
    await host.close()
    reopened = open_journal(tmp_path)
    jobs, _ = reopened.load()
    await reopened.close()
    assert [job.job_id for job in jobs] == [job_id]


# -- refusing to start ----------------------------------------------------------------------


def test_a_file_that_is_not_a_journal_is_refused_with_what_to_do(tmp_path):
    (tmp_path / JOURNAL_FILE).write_bytes(b"this is not a database, it is a note\n" * 100)
    with pytest.raises(JournalError) as refused:
        open_journal(tmp_path)
    message = str(refused.value)
    assert "damaged" in message and "mv " in message and "backup" in message


async def test_a_journal_with_damaged_pages_is_refused(hosts, tmp_path):
    host = hosts()
    for _ in range(5):
        job_id = await host.submit(chain(30, payload="y" * 500), wire=b"z" * 10_000)
        await finished(host.scheduler, job_id)
    await host.close()
    path = tmp_path / JOURNAL_FILE
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 8 * page
    for offset in range(2 * page, len(data) - page, 3 * page):  # every third page, not page 1
        data[offset : offset + page] = b"\xa5" * page
    path.write_bytes(bytes(data))
    with pytest.raises(JournalError, match="damaged"):
        journal = open_journal(tmp_path)
        try:
            journal.load()
        finally:
            await journal.close()


def test_a_journal_from_a_newer_dukatd_is_refused(tmp_path):
    db = sqlite3.connect(tmp_path / JOURNAL_FILE)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(JournalError, match="newer dukatd"):
        open_journal(tmp_path)


async def test_a_new_journal_is_in_wal_mode_at_the_current_schema(tmp_path):
    await open_journal(tmp_path).close()
    db = sqlite3.connect(tmp_path / JOURNAL_FILE)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
    db.close()


async def test_the_interrupted_state_of_a_running_task_is_kept(hosts, tmp_path):
    host = hosts()
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    job_id = await host.submit(JobSpec(tasks=(TaskSpec(id="a", action=CallableAction(hang)),)))
    await started.wait()
    await host.journal.sync()
    await host.close()  # frozen first: the cancel at close is not recorded
    reopened = open_journal(tmp_path)
    (job,) = reopened.load()[0]
    await reopened.close()
    (task,) = job.tasks
    assert (task.state, task.attempts) == (TaskState.RUNNING, 1)
    assert job.state is JobState.RUNNING
    states = [e[4] for e in job.events if e[0] is TaskStateChanged]
    assert states == [TaskState.READY, TaskState.RUNNING]
    assert job.job_id == job_id


async def test_interruptions_are_kept_and_a_task_between_attempts_comes_back_retrying(
    hosts, tmp_path
):
    host = hosts()
    hanging = asyncio.Event()
    left = TaskInterruptedError("worker 'w1' left", cause="worker_lost")

    async def interrupted_twice_then_hangs() -> None:
        if current_task().attempt <= 2:
            raise left
        hanging.set()
        await asyncio.Event().wait()

    async def interrupted(then: BaseException | None = None) -> None:
        if current_task().attempt == 1:
            raise left
        if then is not None:
            raise then

    def task(task_id: str, func: Callable[..., Any], *args: Any, **options: Any) -> TaskSpec:
        return TaskSpec(id=task_id, action=CallableAction(func, args), **options)

    retry = RetryPolicy(max_attempts=3, initial_backoff=600.0, max_backoff=600.0)
    job_id = await host.submit(
        JobSpec(
            tasks=(
                task("hangs", interrupted_twice_then_hangs),
                task("capped", interrupted, max_interruptions=0),
                task("done", interrupted),
                task("backing-off", interrupted, ValueError("boom"), retry=retry),
            )
        )
    )
    await hanging.wait()
    snapshot = host.scheduler.get_job(job_id)
    await host.journal.sync()
    await host.close()
    reopened = open_journal(tmp_path)
    (job,) = reopened.load()[0]
    await reopened.close()
    kept = {task.id: (task.state, task.attempts, task.interruptions) for task in job.tasks}
    assert kept == {
        "hangs": (TaskState.RUNNING, 3, 2),
        "capped": (TaskState.FAILED, 1, 1),
        "done": (TaskState.SUCCEEDED, 2, 1),
        "backing-off": (TaskState.RETRYING, 2, 1),
    }
    assert kept == {t.id: (t.state, t.attempts, t.interruptions) for t in snapshot.tasks}


async def test_task_changes_written_before_interruptions_were_counted_load_with_0(tmp_path):
    spec = job_pb2.JobSpec(tasks=[job_pb2.TaskSpec(id=t) for t in ("a", "b")])
    changes = [
        ("a", "running", 1, 10.0),
        ("b", "running", 1, 10.0),
        ("b", "failed", 1, None, 11.0, "TaskInterruptedError: gone", None),
    ]
    write_journal(tmp_path / JOURNAL_FILE, jobs=[("j", spec)], task_changes={"j": changes})
    journal = open_journal(tmp_path)
    (job,) = journal.load()[0]
    await journal.close()
    assert {task.id: (task.state, task.interruptions) for task in job.tasks} == {
        "a": (TaskState.RUNNING, 0),
        "b": (TaskState.FAILED, 0),
    }


async def test_a_failed_commit_fails_sync_but_settled_waits_for_the_next_that_works(
    tmp_path, monkeypatch
):
    commit = Writer.commit
    calls = 0

    def fails_once(writer: Writer, operations: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise sqlite3.OperationalError("disk I/O error")
        return commit(writer, operations)

    monkeypatch.setattr(Writer, "commit", fails_once)
    journal = open_journal(tmp_path)
    journal.start(
        publish=lambda job_id, sequence: None,
        result_of=lambda job_id, task_id: None,
        interruptions_of=lambda job_id, task_id: 0,
    )
    journal.accept("j", "", b"spec", 0.0)
    journal.configure_breaker("api", {"failure_threshold": 3})
    impatient = asyncio.ensure_future(journal.sync())
    patient = asyncio.ensure_future(journal.settled())
    with pytest.raises(JournalWriteError, match="disk I/O error"):
        await impatient
    await asyncio.wait_for(patient, 5)  # the retry, without the job, worked
    assert (journal.write_errors, journal.commits, journal.backlog) == (1, 1, 0)
    await journal.close()
    reopened = open_journal(tmp_path)
    assert reopened.load() == ([], {"api": {"failure_threshold": 3}})
    await reopened.close()
