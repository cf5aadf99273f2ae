"""A journal written by dukatd 0.1.0 (`fixtures/journal-0.1.0.sqlite3`, made by
`fixtures/make_release_journal.py`, whose docstring lists what it holds) opens under the
dukatd of today with the engine's event and state classes renamed: the journal reads no
Python class path. Every job comes back as it was and runs to its end."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

import dukat
from dukat.core import JobState, TaskState
from dukat.core.events import TaskOutput, TaskProgress, TaskStateChanged, TaskWaiting
from dukatd.journal import JOURNAL_FILE
from tests.dukatd.daemon_process import DaemonProcess

FIXTURE = Path(__file__).parent / "fixtures" / "journal-0.1.0.sqlite3"

# dukatd with its engine's classes moved: each renamed, and gone from where it was. Run as
# the `wrapper` of `python -m dukatd`, whose argv it is given after its own.
RENAMED = """
import sys
import dukatd.__main__, dukatd.app
import dukat.core.events as events, dukat.core.states as states
for module, names in (
    (events, ("JobStateChanged", "TaskStateChanged", "TaskProgress", "TaskOutput", "TaskWaiting")),
    (states, ("TaskState", "JobState")),
):
    for name in names:
        kind = getattr(module, name)
        delattr(module, name)
        kind.__name__ = kind.__qualname__ = "Renamed" + name
        setattr(module, kind.__name__, kind)
sys.exit(dukatd.__main__.main(sys.argv[4:]))
"""


async def start(daemons, state: Path) -> DaemonProcess:
    daemon = daemons(
        "--allow-exec",
        "--shutdown-grace",
        "0.3s",
        # The fixture's jobs finished when it was made: kept however long ago that was.
        "--finished-job-ttl",
        "876000h",
        state_dir=state,
        wrapper=(sys.executable, "-c", RENAMED),
    )
    return await daemon.serving()


async def by_name(client: dukat.Client) -> dict[str, dukat.JobSnapshot]:
    return {job.labels["name"]: await client.get_job(job.job_id) async for job in client.jobs()}


async def events_of(client: dukat.Client, job_id: str) -> list[object]:
    return [event async for event in client.job(job_id).events()]


async def upper(task: dukat.client.DispatchTask) -> bytes:
    return task.payload.upper()


@pytest.mark.timeout(60)
async def test_a_journal_of_0_1_0_comes_back_whole_with_the_engine_classes_renamed(
    daemons, short_tmp: Path
):
    state = short_tmp / "state"
    state.mkdir()
    shutil.copyfile(FIXTURE, state / JOURNAL_FILE)
    daemon = await start(daemons, state)
    async with dukat.connect(daemon.address) as client:
        jobs = await by_name(client)
        assert {name: job.state for name, job in jobs.items()} == {
            "done": JobState.SUCCEEDED,
            "failed": JobState.FAILED,
            "cancelled": JobState.CANCELLED,
            "rerun": JobState.RUNNING,
            "live": JobState.RUNNING,
        }
        done, failed, cancelled = jobs["done"], jobs["failed"], jobs["cancelled"]
        assert done.task("a").result.stdout == b"out-a\n"
        assert done.task("a").result.stderr == b"err-a\n"
        assert done.task("b").result.payload == b"PAYLOAD-B"
        f = failed.task("f")
        assert (f.state, f.failure.exit_code, f.failure.stdout, f.failure.stderr) == (
            TaskState.FAILED,
            3,
            b"partial\n",
            b"boom\n",
        )
        assert failed.task("after").state is TaskState.SKIPPED
        assert cancelled.message.endswith("cancelled: operator said stop")

        # The finished jobs' events, every one, each of its kind with its fields.
        events = await events_of(client, done.job_id)
        assert [e.sequence for e in events] == list(range(1, 12))
        assert [(e.task_id, e.stream, e.text) for e in events if isinstance(e, TaskOutput)] == [
            ("a", "stdout", "out-a"),
            ("a", "stderr", "err-a"),
        ]
        assert [
            (e.task_id, e.fraction, e.message) for e in events if isinstance(e, TaskProgress)
        ] == [("b", 0.5, "half way")]
        assert [
            (e.task_id, e.state, e.attempt) for e in events if isinstance(e, TaskStateChanged)
        ] == [
            ("a", TaskState.READY, 0),
            ("a", TaskState.RUNNING, 1),
            ("a", TaskState.SUCCEEDED, 1),
            ("b", TaskState.READY, 0),
            ("b", TaskState.RUNNING, 1),
            ("b", TaskState.SUCCEEDED, 1),
        ]
        waiting = [
            e for e in await events_of(client, cancelled.job_id) if isinstance(e, TaskWaiting)
        ]
        assert [(e.task_id, e.queue) for e in waiting] == [("x", "nobody")]

        breakers = {b.name: b for b in await client.breakers()}
        assert (
            breakers["api"].config.failure_threshold,
            breakers["api"].config.timeout_seconds,
        ) == (3, 7.0)

        rerun, live = jobs["rerun"], jobs["live"]
        ok = rerun.task("ok")
        assert (ok.state, ok.carried_from, ok.result.stdout) == (
            TaskState.SUCCEEDED,
            failed.job_id,
            b"fine\n",
        )
        once = live.task("once")
        assert (once.state, once.interruptions, once.failure.type) == (
            TaskState.FAILED,
            1,
            "TaskInterruptedError",
        )
        assert live.task("c").error == "cancelled: not needed"

        # The unfinished jobs run to their ends.
        async with client.worker(["later", "slow", "q"], upper, concurrency=4):
            rerun = await client.job(rerun.job_id).wait()
            live = await client.job(live.job_id).wait()
        assert rerun.state is JobState.SUCCEEDED
        assert rerun.task("f").result.payload == b"F"
        assert live.state is JobState.FAILED  # `once` failed
        outcomes = {t.id: (t.state, t.attempts, t.interruptions) for t in live.tasks}
        assert outcomes == {
            "p": (TaskState.SUCCEEDED, 3, 2),
            "once": (TaskState.FAILED, 1, 1),
            "c": (TaskState.CANCELLED, 0, 0),
            "tail": (TaskState.SUCCEEDED, 1, 0),
            "nap": (TaskState.SUCCEEDED, 3, 2),
        }
        before = await by_name(client)

    # What this dukatd wrote reads back the same.
    daemon.signal(15)
    assert await daemon.exited() == 0
    again = await start(daemons, state)
    async with dukat.connect(again.address) as client:
        after = await by_name(client)
        assert after == before
        events = await events_of(client, after["live"].job_id)
        assert [e.sequence for e in events] == list(range(1, after["live"].last_sequence + 1))
