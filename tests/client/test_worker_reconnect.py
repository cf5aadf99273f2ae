"""A worker outlives its daemon: real dukatd processes on one socket, one after the other.

The worker is never restarted by the test: when its daemon drains and a new one starts on
the same address, the same `Worker` says hello again and serves the new daemon's tasks.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable

import pytest

import dukat
from dukat.actions import DispatchAction
from dukat.client import DispatchTask, Reconnect
from dukat.core.events import TaskStateChanged
from dukat.core.retry import RetryPolicy
from dukat.core.spec import JobSpec, TaskSpec
from dukat.core.states import JobState, TaskState
from dukat.errors import UnauthenticatedError
from tests.dukatd.daemon_process import daemons, short_tmp
from tests.helpers import wait_for

__all__ = ["daemons", "short_tmp"]


class Handler:
    """Shouts the payload; b'hold' waits until cancelled, and says so."""

    def __init__(self) -> None:
        self.served: list[tuple[str, int]] = []
        self.holding = asyncio.Event()
        self.cancelled = 0

    async def __call__(self, task: DispatchTask) -> bytes:
        if task.payload == b"hold":
            self.holding.set()
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        self.served.append((task.task_id, task.attempt))
        return task.payload.upper()


# The client's calls give up quickly; the worker is not bound by their policy.
IMPATIENT = Reconnect(initial_backoff=0.01, max_backoff=0.05, give_up_after=0.2)


async def test_a_worker_serves_the_daemon_that_replaces_its_own(daemons, caplog) -> None:
    caplog.set_level(logging.INFO, "dukat.client")
    first = await daemons("--shutdown-grace", "200ms").serving()
    handler = Handler()
    async with (
        dukat.connect(first.address, reconnect=IMPATIENT) as client,
        client.worker("q", handler, 2) as worker,
    ):
        await asyncio.wait_for(worker.connected.wait(), 10)
        await client.submit(JobSpec(tasks=(TaskSpec("held", DispatchAction("q", b"hold")),)))
        await asyncio.wait_for(handler.holding.wait(), 10)

        first.signal(signal.SIGTERM)  # a restart, say for an upgrade
        assert await first.exited() == 0
        # The stream broke under the running attempt: its handler was cancelled.
        await wait_for(lambda: handler.cancelled == 1)
        assert not worker.connected.is_set()
        # No daemon at all for longer than the client's own calls would wait.
        await asyncio.sleep(1)

        second = await daemons().serving()
        assert second.address == first.address
        task = TaskSpec("again", DispatchAction("q", b"hi"))
        async with dukat.connect(second.address) as submitter:
            handle = await submitter.submit(JobSpec(tasks=(task,)))
            job = await asyncio.wait_for(handle.wait(), 30)
        assert job.state is JobState.SUCCEEDED, job
        assert job.task("again").result.payload == b"HI"
        assert handler.served == [("again", 1)]
        assert worker.connected.is_set()
    lost = [r for r in caplog.records if "reconnecting" in r.getMessage()]
    assert [r.levelno for r in lost if r.levelno >= logging.WARNING] == [logging.WARNING]
    assert any("serving again" in r.getMessage() for r in caplog.records)


async def test_a_wrong_token_ends_the_worker_with_its_error(daemons, short_tmp) -> None:
    token = short_tmp / "token"
    token.write_text("right\n")
    token.chmod(0o600)  # dukatd refuses a token that others may read
    daemon = await daemons("--token-file", str(token)).serving()
    async with dukat.connect(daemon.address, token="wrong") as client:
        worker = client.worker("q", Handler())
        with pytest.raises(UnauthenticatedError):
            await asyncio.wait_for(worker.run(), 10)
        assert not worker.connected.is_set()


class OnceHolding(Handler):
    """Holds the first attempt of task 'held' (until the daemon under it dies), then serves."""

    async def __call__(self, task: DispatchTask) -> bytes:
        if task.task_id == "held" and task.attempt == 1:
            self.holding.set()
            await asyncio.sleep(60)
        self.served.append((task.task_id, task.attempt))
        return task.payload.upper()


@pytest.mark.parametrize(
    ("stop", "why"),
    [
        ("kill-9", "the daemon restarted"),
        ("sigterm", "worker 'w1' was disconnected: the daemon is stopping"),
    ],
)
async def test_a_worker_served_job_goes_on_across_a_restart_of_its_daemon(
    daemons, short_tmp, stop: str, why: str
):
    """With a journal: the job outlives the daemon; the worker, never told, serves the next.
    The attempt the restart took was interrupted, not failed: the task, with the default
    policy of one attempt, runs again. A kill -9 leaves it RUNNING for the next daemon to
    interrupt; a drain interrupts it as it ends the worker's stream, before the journal stops."""
    state = short_tmp / "state"
    first = await daemons(state_dir=state).serving()
    handler = OnceHolding()
    tasks = (
        TaskSpec("first", DispatchAction("q", b"a")),
        TaskSpec("held", DispatchAction("q", b"b"), dependencies=("first",)),
        TaskSpec("last", DispatchAction("q", b"c"), dependencies=("held",)),
    )
    async with (
        dukat.connect(first.address, reconnect=IMPATIENT) as client,
        client.worker("q", handler, 2, worker_id="w1") as worker,
    ):
        await asyncio.wait_for(worker.connected.wait(), 10)
        handle = await client.submit(JobSpec(tasks=tasks))
        await asyncio.wait_for(handler.holding.wait(), 10)
        reported = await client.get_job(handle.job_id)
        assert reported.task("first").state is TaskState.SUCCEEDED

        if stop == "kill-9":
            first.kill()  # SIGKILL: no drain, no goodbye to the worker
        else:
            first.signal(signal.SIGTERM)  # systemctl restart
            assert await first.exited() == 0
        second = await daemons(state_dir=state).serving()
        async with dukat.connect(second.address) as watcher:
            job = await asyncio.wait_for(watcher.job(handle.job_id).wait(), 30)
            events = [event async for event in watcher.job(handle.job_id).events()]
            results = await watcher.job(handle.job_id).results()
        assert job.state is JobState.SUCCEEDED, job
        held = job.task("held")
        assert (held.attempts, held.interruptions) == (2, 1)
        assert (results["held"].attempts, results["held"].interruptions) == (2, 1)
        assert [event.sequence for event in events] == list(range(1, len(events) + 1))
        interrupted = [
            event
            for event in events
            if isinstance(event, TaskStateChanged) and event.state is TaskState.RETRYING
        ]
        assert [(e.task_id, e.attempt, e.message) for e in interrupted] == [
            ("held", 1, f"interrupted ({why}), 1 of 3; running again")
        ]
        assert job.task("last").result.payload == b"C"
        # 'first' was reported done before the kill: it never ran again.
        assert handler.served == [("first", 1), ("held", 2), ("last", 1)]


# Short heartbeat terms, so that a test sees a stream given up, or a daemon gone silent, soon.
HEARTBEATS = ("--worker-heartbeat-interval", "100ms", "--worker-heartbeat-timeout", "1s")


def block_the_loop_until(condition: Callable[[], bool], within: float = 30.0) -> None:
    """What a CPU-bound or blocking handler does to its worker: nothing else runs meanwhile."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"condition not met within {within}s"
        time.sleep(0.01)


async def test_a_worker_whose_handler_blocked_its_loop_past_the_heartbeat_timeout_serves_on(
    daemons,
) -> None:
    # The first handler blocks the worker's event loop while 1 MiB assignments are on their
    # way to it: no heartbeat goes out and nothing is read, so the daemon gives the stream up
    # while its writes to the worker are stuck. Free again, the worker finds its stream
    # ended, says hello again, and every task of the queue finishes.
    daemon = await daemons(*HEARTBEATS).serving()
    blocked: list[str] = []

    async def handler(task: DispatchTask) -> bytes:
        if not blocked:
            blocked.append(task.task_id)
            block_the_loop_until(lambda: "went silent for" in daemon.log())
        return b"done " + task.task_id.encode()

    retry = RetryPolicy(max_attempts=3, initial_backoff=0.01)
    big = b"x" * (1024 * 1024)
    tasks = tuple(TaskSpec(f"t{i}", DispatchAction("q", big), retry=retry) for i in range(40))
    async with (
        dukat.connect(daemon.address) as client,
        client.worker("q", handler, concurrency=8) as worker,
    ):
        await asyncio.wait_for(worker.connected.wait(), 10)
        handle = await client.submit(JobSpec(tasks=tasks))
        job = await asyncio.wait_for(handle.wait(), 60)
        assert job.state is JobState.SUCCEEDED, job
        assert job.task(blocked[0]).attempts == 2  # its first attempt was given up
        later = await client.submit(JobSpec(tasks=(TaskSpec("later", DispatchAction("q")),)))
        assert (await asyncio.wait_for(later.wait(), 30)).state is JobState.SUCCEEDED
        assert worker.connected.is_set()
        snapshot = await client.get_job(handle.job_id)
    assert {t.id: t.result.payload for t in snapshot.tasks} == {
        t.id: b"done " + t.id.encode() for t in tasks
    }


async def test_a_worker_whose_daemon_went_silent_says_hello_again(daemons) -> None:
    # A stopped daemon keeps its connections open and answers nothing, keepalive pings
    # neither: only the daemon's own heartbeats tell the worker, within its heartbeat timeout
    # rather than the channel's keepalive (30 s, then 20 s for the ack).
    daemon = await daemons(*HEARTBEATS).serving()
    handler = OnceHolding()
    retry = RetryPolicy(max_attempts=3, initial_backoff=0.01)
    held = TaskSpec("held", DispatchAction("q", b"b"), retry=retry)
    async with (
        dukat.connect(daemon.address) as client,
        client.worker("q", handler, 2) as worker,
    ):
        await asyncio.wait_for(worker.connected.wait(), 10)
        handle = await client.submit(JobSpec(tasks=(held,)))
        await asyncio.wait_for(handler.holding.wait(), 10)

        daemon.signal(signal.SIGSTOP)
        try:
            await wait_for(lambda: not worker.connected.is_set(), within=10)
            assert handler.served == []  # the held attempt was cancelled, not finished
        finally:
            daemon.signal(signal.SIGCONT)
        job = await asyncio.wait_for(handle.wait(), 30)
        assert worker.connected.is_set()
    assert job.state is JobState.SUCCEEDED, job
    assert handler.served == [("held", 2)]
