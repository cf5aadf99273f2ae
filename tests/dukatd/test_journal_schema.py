"""The journal's schema across versions: older files are upgraded in place and read back,
newer ones are refused with what to do. The daemon's side is in test_durability.py."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from dukat.core.states import JobState, TaskState
from dukat.v1 import job_pb2
from dukatd.journal import SCHEMA_VERSION, Journal, JournalError
from dukatd.recovery import decode_result, encode_result
from tests.dukatd.journal_files import write_v1_journal


def open_journal(path: Path) -> Journal:
    return Journal.open(path, encode_result=encode_result, decode_result=decode_result)


def user_version(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute("PRAGMA user_version").fetchone()[0]


SPEC = job_pb2.JobSpec(
    tasks=[
        job_pb2.TaskSpec(id="a", exec=job_pb2.ExecAction(argv=["true"])),
        job_pb2.TaskSpec(id="b", dependencies=["a"], exec=job_pb2.ExecAction(argv=["true"])),
    ]
)


async def test_a_schema_1_journal_is_upgraded_and_keeps_its_job(tmp_path: Path):
    path = tmp_path / "journal.sqlite3"
    write_v1_journal(
        path,
        job_id="j1",
        request_id="r1",
        spec=SPEC,
        tasks=[("a", "succeeded", 1, b"out\n"), ("b", "running", 2, None)],
    )
    assert user_version(path) == 1

    journal = open_journal(path)
    try:
        jobs, breakers = journal.load()
    finally:
        await journal.close()
    assert user_version(path) == SCHEMA_VERSION
    assert breakers == {}
    [job] = jobs
    assert (job.job_id, job.request_id, job.state) == ("j1", "r1", JobState.RUNNING)
    assert job_pb2.JobSpec.FromString(job.spec) == SPEC
    assert (job.last_sequence, job.events, job.cancels) == (9, [], [])
    tasks = {task.id: task for task in job.tasks}
    assert (tasks["a"].state, tasks["a"].attempts) == (TaskState.SUCCEEDED, 1)
    assert tasks["a"].result.stdout == b"out\n"
    assert (tasks["b"].state, tasks["b"].attempts, tasks["b"].result) == (
        TaskState.RUNNING,
        2,
        None,
    )

    # The tables of the current version are there, those of version 1 that it packed into
    # them are gone, and the next open has nothing to upgrade.
    journal = open_journal(path)
    try:
        assert journal.load()[0][0].job_id == "j1"
    finally:
        await journal.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert {"jobs", "task_changes", "event_chunks", "cancels", "breakers"} <= tables
    assert not {"tasks", "events"} & tables


def test_a_journal_of_a_newer_dukatd_is_refused(tmp_path: Path):
    path = tmp_path / "journal.sqlite3"
    write_v1_journal(path, job_id="j1", spec=SPEC, tasks=[])
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(JournalError, match="written by a newer dukatd") as refused:
        open_journal(path)
    assert "move the state directory aside" in str(refused.value)
    assert user_version(path) == SCHEMA_VERSION + 1
