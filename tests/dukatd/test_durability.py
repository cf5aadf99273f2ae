"""Durable by default: real dukatd processes with a journal, killed and restarted under a job.

What the issue promises, checked end to end over real gRPC with real exec tasks: a restart or a
`kill -9` of dukatd loses no job and re-runs no finished task; a task that was RUNNING was
interrupted, not failed: it runs again as a new attempt without spending its retry policy, up
to its `max_interruptions` (which a restarted daemon remembers; 0: it FAILS, "interrupted (the
daemon restarted)"); the process groups a killed daemon left are killed by the next one; the
socket file it left does not stop the next; event sequences go on without a gap or a duplicate;
a Submit retried with its `request_id` after the restart gets the same job.

Each task of the crash jobs appends "<task id> <attempt>" to a file and sleeps a little: the
file tells what really ran, whatever the daemons said. A task that a daemon reported SUCCEEDED
(on Watch, or in a GetJob, both of which show only what is on disk) must be in it once.

Kill points: `test_kill_9_at_a_point_then_restart` can kill the daemon at any of `KILL_POINTS`
(26: after the Nth task SUCCEEDED event a watcher saw, N = 0..19, 0 meaning at the first
RUNNING one; or a fixed time after Submit answered). CI runs `DEFAULT_KILL_POINTS` (5), which
keeps this module under 40 s; `DUKAT_CRASH_POINTS=all` runs all of them (about 70 s), and a
comma-separated list of their ids (`DUKAT_CRASH_POINTS=succeeded-3,after-0.1s`) runs those.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from dukat.v1 import event_pb2, job_pb2, scheduler_pb2, scheduler_pb2_grpc
from dukatd.journal import JOURNAL_FILE, SCHEMA_VERSION
from tests.dukatd.daemon_process import DaemonProcess
from tests.dukatd.journal_files import write_v1_journal
from tests.dukatd.processes import alive
from tests.helpers import wait_for

ARGS = ("--allow-exec", "--shutdown-grace", "0.3s", "--kill-grace", "0.3s")
SUCCEEDED = job_pb2.TASK_STATE_SUCCEEDED
RESTARTED = "the daemon restarted"

StartDaemon = Callable[..., DaemonProcess]


# -- kill points ----------------------------------------------------------------------------

KILL_POINTS = [f"succeeded-{n}" for n in range(20)] + [
    f"after-{delay}s" for delay in (0.0, 0.05, 0.1, 0.15, 0.2, 0.3)
]
DEFAULT_KILL_POINTS = ["succeeded-0", "succeeded-4", "succeeded-13", "after-0.0s", "after-0.2s"]


def _chosen_kill_points() -> list[str]:
    wanted = os.environ.get("DUKAT_CRASH_POINTS", "").strip()
    if not wanted:
        return DEFAULT_KILL_POINTS
    if wanted == "all":
        return KILL_POINTS
    points = [point.strip() for point in wanted.split(",") if point.strip()]
    unknown = [point for point in points if point not in KILL_POINTS]
    if unknown:
        raise ValueError(f"DUKAT_CRASH_POINTS: unknown {unknown!r}; known: all, {KILL_POINTS}")
    return points


# -- jobs -----------------------------------------------------------------------------------


def recording_task(
    task_id: str,
    out: Path,
    dependencies: tuple[str, ...] = (),
    *,
    first_attempt: str = "sleep 0.03",
    max_attempts: int | None = 10,
    then: str = "sleep 0.03",
    first_attempts: int = 1,
    max_interruptions: int | None = None,
) -> job_pb2.TaskSpec:
    """A task that appends "<id> <attempt>" to `out`, then runs `first_attempt` on its first
    `first_attempts` attempts and `then` on the others. `max_attempts` None: the default
    policy, one attempt; `max_interruptions` None: unset, the default."""
    script = (
        f'echo "{task_id} $DUKAT_ATTEMPT" >> "$OUT"; '
        f'if [ "$DUKAT_ATTEMPT" -le {first_attempts} ]; then {first_attempt}; else {then}; fi'
    )
    task = job_pb2.TaskSpec(
        id=task_id,
        dependencies=dependencies,
        exec=job_pb2.ExecAction(argv=["sh", "-c", script], env={"OUT": str(out)}),
    )
    if max_attempts is not None:
        task.retry.max_attempts = max_attempts
        task.retry.initial_backoff.nanos = 10_000_000
    if max_interruptions is not None:
        task.max_interruptions = max_interruptions
    return task


def chains_job(out: Path) -> job_pb2.JobSpec:
    """26 tasks: a root, three chains of eight with two cross edges, and a join."""
    tasks = [recording_task("root", out)]
    for chain in "abc":
        for index in range(8):
            upstream = f"{chain}{index - 1}" if index else "root"
            tasks.append(recording_task(f"{chain}{index}", out, (upstream,)))
    tasks[1 + 8 + 3].dependencies.append("a2")  # b3 after a2 too
    tasks[1 + 16 + 5].dependencies.append("b4")  # c5 after b4 too
    tasks.append(recording_task("join", out, ("a7", "b7", "c7")))
    return job_pb2.JobSpec(tasks=tasks)


# -- talking to daemons ---------------------------------------------------------------------


async def start(daemons: StartDaemon, state: Path, *args: str) -> DaemonProcess:
    """A daemon on the test's one socket and `state`, serving."""
    return await daemons(*ARGS, *args, state_dir=state).serving()


async def kill_9(daemon: DaemonProcess) -> None:
    daemon.signal(signal.SIGKILL)
    assert await daemon.exited() == -signal.SIGKILL


def stub_of(channel: grpc.aio.Channel) -> scheduler_pb2_grpc.SchedulerServiceStub:
    return scheduler_pb2_grpc.SchedulerServiceStub(channel)


async def get_job(daemon: DaemonProcess, job_id: str) -> job_pb2.Job:
    async with grpc.aio.insecure_channel(daemon.address) as channel:
        reply = await stub_of(channel).GetJob(scheduler_pb2.GetJobRequest(job_id=job_id))
    return reply.job


async def submit(daemon: DaemonProcess, job: job_pb2.JobSpec, request_id: str = "") -> str:
    async with grpc.aio.insecure_channel(daemon.address) as channel:
        request = scheduler_pb2.SubmitRequest(job=job, request_id=request_id)
        return (await stub_of(channel).Submit(request, timeout=10)).job_id


async def finished(daemon: DaemonProcess, job_id: str, within: float = 30) -> job_pb2.Job:
    """The job once it has ended (its watch ends with its terminal event)."""
    async with grpc.aio.insecure_channel(daemon.address) as channel:
        request = scheduler_pb2.WatchRequest(job_id=job_id, job_events_only=True)
        async with asyncio.timeout(within):
            async for _ in stub_of(channel).Watch(request):
                pass
    return await get_job(daemon, job_id)


class Watcher:
    """Reads one job's events until its stream ends: the job ended, or the daemon died.

    `on_event(event)` sees each as it comes, before the next is read.
    """

    def __init__(
        self,
        daemon: DaemonProcess,
        job_id: str,
        *,
        after_sequence: int = 0,
        on_event: Callable[[event_pb2.Event], object] | None = None,
    ) -> None:
        self.daemon = daemon
        self.request = scheduler_pb2.WatchRequest(job_id=job_id, after_sequence=after_sequence)
        self.on_event = on_event
        self.events: list[event_pb2.Event] = []
        self.error: grpc.StatusCode | None = None
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async with grpc.aio.insecure_channel(self.daemon.address) as channel:
            try:
                async for reply in stub_of(channel).Watch(self.request):
                    for event in reply.events:
                        self.events.append(event)
                        if self.on_event is not None:
                            self.on_event(event)
            except grpc.aio.AioRpcError as error:
                self.error = error.code()

    async def ended(self, within: float = 30) -> Watcher:
        await asyncio.wait_for(asyncio.shield(self.task), within)
        return self

    @property
    def succeeded(self) -> set[str]:
        return {
            e.task_state.task_id
            for e in self.events
            if e.WhichOneof("kind") == "task_state" and e.task_state.state == SUCCEEDED
        }

    @property
    def last_sequence(self) -> int:
        return self.events[-1].sequence if self.events else 0


def ran(out: Path) -> Counter[str]:
    """How many times each task started, by the lines it appended."""
    lines = out.read_text().split("\n") if out.exists() else []
    return Counter(line.split()[0] for line in lines if line)


def attempts_run(out: Path, task_id: str) -> list[int]:
    lines = out.read_text().splitlines()
    return [int(line.split()[1]) for line in lines if line.split()[0] == task_id]


def runs_of(out: Path, task_ids: set[str]) -> dict[str, int]:
    """How many times each of `task_ids` ran so far: what a task reported SUCCEEDED keeps."""
    counts = ran(out)
    return {task_id: counts[task_id] for task_id in task_ids}


def assert_ran_once_each_reported(
    job: job_pb2.Job, spec: job_pb2.JobSpec, out: Path, reported: dict[str, int]
) -> None:
    """Every task ran; none reported SUCCEEDED ran again after (`reported`: how many times
    each had run when it was); a task that ran more than once did so as further attempts."""
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job
    counts = ran(out)
    assert set(counts) == {task.id for task in spec.tasks}
    assert runs_of(out, set(reported)) == reported
    by_id = {task.id: task for task in job.tasks}
    for task_id, count in counts.items():
        attempts = attempts_run(out, task_id)
        # Each run is a new attempt, numbered on from the ones the journal knew of.
        assert attempts == sorted(set(attempts)), (task_id, attempts)
        assert by_id[task_id].attempts == attempts[-1], (task_id, attempts)
        if count > 1:
            assert by_id[task_id].attempts > 1


# -- 1. kill -9 at many points --------------------------------------------------------------


@pytest.mark.parametrize("point", _chosen_kill_points())
async def test_kill_9_at_a_point_then_restart(daemons, short_tmp: Path, point: str):
    state, out = short_tmp / "state", short_tmp / "ran.txt"
    spec = chains_job(out)
    first = await start(daemons, state)
    job_id = await submit(first, spec)
    succeeded: set[str] = set()

    if point.startswith("succeeded-"):
        wanted = int(point.removeprefix("succeeded-"))
        seen = 0

        def kill_at_point(event: event_pb2.Event) -> None:
            nonlocal seen
            if event.WhichOneof("kind") != "task_state" or first.returncode() is not None:
                return
            state = event.task_state.state
            if state == SUCCEEDED:
                seen += 1
            if seen == wanted and (wanted or state == job_pb2.TASK_STATE_RUNNING):
                first.signal(signal.SIGKILL)

        watcher = Watcher(first, job_id, on_event=kill_at_point)
        await watcher.ended()
        assert seen >= wanted, "the job ended before the kill point"
    else:
        watcher = Watcher(first, job_id)
        await asyncio.sleep(float(point.removeprefix("after-").removesuffix("s")))
        before = await get_job(first, job_id)
        succeeded |= {task.id for task in before.tasks if task.state == SUCCEEDED}
        first.signal(signal.SIGKILL)
        await watcher.ended()
    assert await first.exited() == -signal.SIGKILL
    assert watcher.error is grpc.StatusCode.UNAVAILABLE, "the job ended before the kill"
    reported = runs_of(out, succeeded | watcher.succeeded)
    assert set(reported.values()) <= {1}

    second = await start(daemons, state)
    job = await finished(second, job_id)
    assert_ran_once_each_reported(job, spec, out, reported)


async def test_kill_9_twice_in_a_row_once_during_recovery(daemons, short_tmp: Path):
    state, out = short_tmp / "state", short_tmp / "ran.txt"
    spec = chains_job(out)
    first = await start(daemons, state)
    job_id = await submit(first, spec)

    reported: dict[str, int] = {}

    def kill_after(daemon: DaemonProcess, count: int) -> Callable[[event_pb2.Event], None]:
        """Kill `daemon` once `count` more tasks than `reported` have SUCCEEDED (a watch
        from the start replays those)."""

        def on_event(event: event_pb2.Event) -> None:
            if event.WhichOneof("kind") == "task_state" and event.task_state.state == SUCCEEDED:
                seen.add(event.task_state.task_id)
                if len(seen - set(reported)) >= count and daemon.returncode() is None:
                    daemon.signal(signal.SIGKILL)

        seen: set[str] = set()
        return on_event

    watcher = await Watcher(first, job_id, on_event=kill_after(first, 5)).ended()
    assert await first.exited() == -signal.SIGKILL
    reported |= runs_of(out, watcher.succeeded)

    # The second dies as soon as it serves: recovery has re-queued what was running, and
    # some of it runs again, or is about to.
    second = await start(daemons, state)
    await kill_9(second)
    third = await start(daemons, state)
    watcher = await Watcher(third, job_id, on_event=kill_after(third, 4)).ended()
    assert await third.exited() == -signal.SIGKILL
    reported |= runs_of(out, watcher.succeeded - set(reported))

    fourth = await start(daemons, state)
    job = await finished(fourth, job_id)
    assert_ran_once_each_reported(job, spec, out, reported)
    assert len(reported) >= 9


async def test_a_killed_daemons_task_processes_are_killed_and_its_running_tasks_resume(
    daemons, short_tmp: Path
):
    """The next daemon kills what the dead one left running before anything runs again. A
    task cut off was interrupted, not failed: with the default policy (one attempt) it runs
    again and its job succeeds; one that must never run twice (max_interruptions=0) fails,
    saying why."""
    state, out = short_tmp / "state", short_tmp / "ran.txt"
    slow = "echo $$; exec sleep 30"
    resumes = job_pb2.JobSpec(
        tasks=[
            recording_task("again", out, first_attempt=slow, max_attempts=None),
            recording_task("after", out, ("again",), max_attempts=None),
        ]
    )
    once = job_pb2.JobSpec(
        tasks=[recording_task("once", out, first_attempt=slow, max_interruptions=0)]
    )
    first = await start(daemons, state)
    resumes_id, once_id = await submit(first, resumes), await submit(first, once)
    pgids: dict[str, int] = {}

    def on_event(event: event_pb2.Event) -> None:
        if event.WhichOneof("kind") == "output":
            pgids[event.output.task_id] = int(event.output.text)
            if len(pgids) == 2:
                first.signal(signal.SIGKILL)

    await asyncio.gather(
        Watcher(first, resumes_id, on_event=on_event).ended(),
        Watcher(first, once_id, on_event=on_event).ended(),
    )
    assert await first.exited() == -signal.SIGKILL
    assert all(alive(pgid) for pgid in pgids.values())  # orphans, in sessions of their own

    second = await start(daemons, state)
    assert not any(alive(pgid) for pgid in pgids.values())
    assert "killed 2 process(es) of tasks left running by an earlier dukatd" in second.log()
    job = await finished(second, resumes_id)
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED
    tasks = {task.id: task for task in job.tasks}
    assert (tasks["again"].state, tasks["again"].attempts, tasks["again"].interruptions) == (
        SUCCEEDED,
        2,
        1,
    )
    assert (tasks["after"].state, tasks["after"].attempts) == (SUCCEEDED, 1)
    job = await finished(second, once_id)
    assert job.state == job_pb2.JOB_STATE_FAILED
    (task,) = job.tasks
    assert (task.state, task.attempts, task.interruptions) == (job_pb2.TASK_STATE_FAILED, 1, 1)
    assert task.error == (
        f"TaskInterruptedError: interrupted ({RESTARTED}); max_interruptions is 0: "
        "it must not run twice"
    )
    assert ran(out) == {"again": 2, "after": 1, "once": 1}


async def test_the_interruptions_a_task_had_survive_restarts_and_count_to_its_cap(
    daemons, short_tmp: Path
):
    """Each kill -9 of the daemon interrupts the running tasks once more, and a restarted
    daemon remembers how often: the default task runs a fourth time after three, the one
    capped at 2 fails at its third."""
    state, out = short_tmp / "state", short_tmp / "ran.txt"
    hang = "exec sleep 30"
    spec = job_pb2.JobSpec(
        tasks=[
            recording_task("default", out, first_attempt=hang, first_attempts=3, max_attempts=None),
            recording_task(
                "capped", out, first_attempt=hang, first_attempts=3, max_interruptions=2
            ),
        ]
    )
    daemon = await start(daemons, state)
    job_id = await submit(daemon, spec)
    for attempt in (1, 2, 3):
        # Both in their attempt number `attempt` (on disk before its process started).
        both_in = {"default": attempt, "capped": attempt}
        await wait_for(lambda both_in=both_in: ran(out) == both_in, within=30)
        job = await get_job(daemon, job_id)
        assert {t.id: t.interruptions for t in job.tasks} == {
            "default": attempt - 1,
            "capped": attempt - 1,
        }
        await kill_9(daemon)
        daemon = await start(daemons, state)
    job = await finished(daemon, job_id)
    tasks = {task.id: task for task in job.tasks}
    default, capped = tasks["default"], tasks["capped"]
    assert (default.state, default.attempts, default.interruptions) == (SUCCEEDED, 4, 3)
    assert (capped.state, capped.attempts, capped.interruptions) == (
        job_pb2.TASK_STATE_FAILED,
        3,
        3,
    )
    assert capped.error == (
        f"TaskInterruptedError: interrupted 3 times, the last ({RESTARTED}); max_interruptions is 2"
    )
    assert ran(out) == {"default": 4, "capped": 3}


# -- 2. a graceful restart ------------------------------------------------------------------


async def test_sigterm_restart_keeps_what_finished_and_runs_the_interrupted_again(
    daemons, short_tmp: Path
):
    """`systemctl restart`: the attempts the drain cuts off are interrupted, not failed. A
    task with the default policy (one attempt) runs again after the restart and its job
    succeeds; one with max_interruptions=0 fails, saying why."""
    state, out = short_tmp / "state", short_tmp / "ran.txt"
    # The slow tasks outlast the drain's grace on their first attempt: it cancels them.
    spec = job_pb2.JobSpec(
        tasks=[
            recording_task("quick", out),
            recording_task("slow-1", out, ("quick",), first_attempt="sleep 30", max_attempts=None),
            recording_task("slow-2", out, ("quick",), first_attempt="sleep 30"),
            recording_task("after", out, ("slow-1", "slow-2"), max_attempts=None),
        ]
    )
    once_out = short_tmp / "once.txt"
    once = job_pb2.JobSpec(
        tasks=[recording_task("once", once_out, first_attempt="sleep 30", max_interruptions=0)]
    )
    first = await start(daemons, state)
    job_id, once_id = await submit(first, spec), await submit(first, once)
    running: set[str] = set()

    def on_event(event: event_pb2.Event) -> None:
        kind = event.WhichOneof("kind")
        if kind == "task_state" and event.task_state.state == job_pb2.TASK_STATE_RUNNING:
            running.add(event.task_state.task_id)
            if running >= {"slow-1", "slow-2", "once"} and first.returncode() is None:
                first.signal(signal.SIGTERM)

    watcher, _ = await asyncio.gather(
        Watcher(first, job_id, on_event=on_event).ended(),
        Watcher(first, once_id, on_event=on_event).ended(),
    )
    assert await first.exited() == 0
    assert watcher.error is grpc.StatusCode.UNAVAILABLE
    assert watcher.succeeded == {"quick"}

    second = await start(daemons, state)
    resumed = await Watcher(second, job_id, after_sequence=watcher.last_sequence).ended()
    assert [e.sequence for e in resumed.events] == list(
        range(watcher.last_sequence + 1, watcher.last_sequence + 1 + len(resumed.events))
    )
    retried = [
        e.task_state
        for e in resumed.events
        if e.WhichOneof("kind") == "task_state"
        and e.task_state.state == job_pb2.TASK_STATE_RETRYING
    ]
    assert sorted((t.task_id, t.attempt, t.message) for t in retried) == [
        (task_id, 1, f"interrupted ({RESTARTED}), 1 of 3; running again")
        for task_id in ("slow-1", "slow-2")
    ]

    job = await get_job(second, job_id)
    assert_ran_once_each_reported(job, spec, out, {"quick": 1})
    assert {t.id: (t.attempts, t.interruptions) for t in job.tasks} == {
        "quick": (1, 0),
        "slow-1": (2, 1),
        "slow-2": (2, 1),
        "after": (1, 0),
    }
    job = await finished(second, once_id)
    assert job.state == job_pb2.JOB_STATE_FAILED
    assert job.tasks[0].error == (
        f"TaskInterruptedError: interrupted ({RESTARTED}); max_interruptions is 0: "
        "it must not run twice"
    )
    assert ran(out) == {"quick": 1, "slow-1": 2, "slow-2": 2, "after": 1}
    assert ran(once_out) == {"once": 1}


# -- 3. Watch resumed across a restart ------------------------------------------------------


@pytest.mark.parametrize("stop", ["kill-9", "sigterm"])
async def test_watch_resumes_after_a_restart_without_gap_or_duplicate(
    daemons, short_tmp: Path, stop: str
):
    state, out = short_tmp / "state", short_tmp / "ran.txt"
    spec = chains_job(out)
    first = await start(daemons, state, "--event-log-length", "100000")
    job_id = await submit(first, spec)

    def stop_after_six(event: event_pb2.Event) -> None:
        if len(watcher.succeeded) == 6 and first.returncode() is None:
            first.signal(signal.SIGKILL if stop == "kill-9" else signal.SIGTERM)

    watcher = Watcher(first, job_id, on_event=stop_after_six)
    await watcher.ended()
    await first.exited()
    reported = runs_of(out, watcher.succeeded)
    last = watcher.last_sequence
    assert [e.sequence for e in watcher.events] == list(range(1, last + 1))

    second = await start(daemons, state, "--event-log-length", "100000")
    resumed = await Watcher(second, job_id, after_sequence=last).ended()
    assert resumed.error is None
    sequences = [e.sequence for e in resumed.events]
    assert sequences == list(range(last + 1, last + 1 + len(sequences)))
    ending = resumed.events[-1]
    assert ending.WhichOneof("kind") == "job_state"
    assert ending.job_state.state == job_pb2.JOB_STATE_SUCCEEDED
    job = await get_job(second, job_id)
    assert job.last_sequence == ending.sequence
    # Each task's states, over both daemons, as one log would tell them.
    assert_ran_once_each_reported(job, spec, out, reported)
    everything = watcher.events + resumed.events
    succeeded = Counter(
        e.task_state.task_id
        for e in everything
        if e.WhichOneof("kind") == "task_state" and e.task_state.state == SUCCEEDED
    )
    assert succeeded == Counter({task.id: 1 for task in spec.tasks})


# -- 4. a Submit retried after the restart --------------------------------------------------


async def test_a_submit_retried_with_its_request_id_after_kill_9_gets_the_same_job(
    daemons, short_tmp: Path
):
    state, out = short_tmp / "state", short_tmp / "ran.txt"
    spec = chains_job(out)
    first = await start(daemons, state)
    job_id = await submit(first, spec, request_id="req-1")
    await kill_9(first)

    second = await start(daemons, state)
    assert (await get_job(second, job_id)).job_id == job_id
    assert await submit(second, spec, request_id="req-1") == job_id
    job = await finished(second, job_id)
    assert_ran_once_each_reported(job, spec, out, {})
    async with grpc.aio.insecure_channel(second.address) as channel:
        listed = await stub_of(channel).ListJobs(scheduler_pb2.ListJobsRequest())
    assert [j.job_id for j in listed.jobs] == [job_id]


# -- 5. a finished job survives ------------------------------------------------------------


@pytest.mark.parametrize("stop", ["kill-9", "sigterm"])
async def test_a_finished_job_is_the_same_after_a_restart(daemons, short_tmp: Path, stop: str):
    state = short_tmp / "state"
    spec = job_pb2.JobSpec(
        labels={"kind": "finished"},
        tasks=[
            job_pb2.TaskSpec(
                id="hello",
                description="says hello",
                exec=job_pb2.ExecAction(argv=["sh", "-c", "echo hello; echo oops >&2"]),
            ),
            job_pb2.TaskSpec(
                id="bye",
                dependencies=["hello"],
                exec=job_pb2.ExecAction(argv=["sh", "-c", "printf 'bye\\n%.0s' 1 2 3"]),
            ),
        ],
    )
    first = await start(daemons, state)
    job_id = await submit(first, spec)
    before = await finished(first, job_id)
    assert before.state == job_pb2.JOB_STATE_SUCCEEDED
    results = {task.id: task.result.exec for task in before.tasks}
    assert results["hello"] == job_pb2.ExecResult(exit_code=0, stdout=b"hello\n", stderr=b"oops\n")
    assert results["bye"].stdout == b"bye\nbye\nbye\n"
    if stop == "kill-9":
        await kill_9(first)
    else:
        first.signal(signal.SIGTERM)
        assert await first.exited() == 0

    second = await start(daemons, state)
    assert await get_job(second, job_id) == before
    async with grpc.aio.insecure_channel(second.address) as channel:
        listed = await stub_of(channel).ListJobs(scheduler_pb2.ListJobsRequest())
    assert [(j.job_id, j.state, j.task_counts.succeeded) for j in listed.jobs] == [
        (job_id, job_pb2.JOB_STATE_SUCCEEDED, 2)
    ]
    assert dict(listed.jobs[0].labels) == {"kind": "finished"}


async def test_an_exec_job_outlives_a_restart_without_exec_and_reruns_once_exec_is_back(
    daemons, short_tmp: Path
):
    state = short_tmp / "state"
    out = short_tmp / "out"
    spec = job_pb2.JobSpec(
        tasks=[
            recording_task("first", out, max_attempts=None),
            recording_task(
                "hangs",
                out,
                ("first",),
                first_attempt=f'[ -e "{out}.fixed" ] || sleep 30',  # until the test says
                max_attempts=None,
            ),
        ]
    )
    first = await start(daemons, state)
    job_id = await submit(first, spec)
    await wait_for(lambda: out.exists() and "hangs 1" in out.read_text(), within=10)
    await kill_9(first)

    # The operator turned exec off: the job accepted before is kept, not dropped, and what
    # this daemon cannot run fails saying how to run it.
    without = await daemons("--shutdown-grace", "0.3s", state_dir=state).serving()
    ended = await finished(without, job_id)
    assert ended.state == job_pb2.JOB_STATE_FAILED
    tasks = {task.id: task for task in ended.tasks}
    assert tasks["first"].state == SUCCEEDED
    assert tasks["hangs"].state == job_pb2.TASK_STATE_FAILED
    assert "exec tasks are off on this daemon; restart it with --allow-exec" in tasks["hangs"].error
    assert "dropped" not in without.log()
    without.signal(signal.SIGTERM)
    assert await without.exited() == 0

    (short_tmp / "out.fixed").touch()
    again = await start(daemons, state)
    async with grpc.aio.insecure_channel(again.address) as channel:
        request = scheduler_pb2.SubmitRequest(rerun_of=job_id)
        rerun = (await stub_of(channel).Submit(request, timeout=10)).job_id
    assert (await finished(again, rerun)).state == job_pb2.JOB_STATE_SUCCEEDED
    assert out.read_text().splitlines() == ["first 1", "hangs 1", "hangs 1"]  # first: carried


# -- 6. a damaged journal -------------------------------------------------------------------


async def _refuses_to_start(daemons: StartDaemon, state: Path) -> str:
    """The daemon exits 1 without serving; its log."""
    daemon = daemons(*ARGS, state_dir=state)
    assert await daemon.exited() == 1
    log = daemon.log()
    assert "is damaged" in log
    assert f"mv {state / JOURNAL_FILE} {state / JOURNAL_FILE}.damaged" in log
    assert "move it aside" in log
    return log


async def test_a_journal_of_garbage_stops_the_start(daemons, short_tmp: Path):
    state = short_tmp / "state"
    state.mkdir()
    garbage = b"this is no database, " * 400
    (state / JOURNAL_FILE).write_bytes(garbage)
    await _refuses_to_start(daemons, state)
    assert (state / JOURNAL_FILE).read_bytes() == garbage  # never started over empty


@pytest.mark.parametrize("damage", ["pages", "truncated"])
async def test_a_damaged_journal_stops_the_start(daemons, short_tmp: Path, damage: str):
    state, out = short_tmp / "state", short_tmp / "ran.txt"
    first = await start(daemons, state)
    job_id = await submit(first, chains_job(out))
    await finished(first, job_id)
    first.signal(signal.SIGTERM)
    assert await first.exited() == 0  # checkpointed: everything is in the main file
    path = state / JOURNAL_FILE
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) >= 4 * page
    if damage == "pages":
        for offset in range(page, len(data), page):  # every page but the header's
            data[offset : offset + page] = bytes(range(256)) * (page // 256)
        path.write_bytes(bytes(data))
    else:
        path.write_bytes(bytes(data[: 2 * page]))
    await _refuses_to_start(daemons, state)
    assert ran(out)  # the job had run
    assert path.read_bytes() == bytes(data if damage == "pages" else data[: 2 * page])


# -- 7. a full journal ---------------------------------------------------------------------


async def test_a_full_journal_refuses_submits_and_the_daemon_goes_on(daemons, short_tmp: Path):
    state, out = short_tmp / "state", short_tmp / "ran.txt"
    daemon = await start(daemons, state, "--journal-max-bytes", "300KiB")

    def big_job(number: int) -> job_pb2.JobSpec:
        task = recording_task(f"big-{number}", out)
        # 40 KB of labels, the most a job may carry is 64: go into the journal with the spec.
        task.labels.update({f"{number}-{n}": "x" * 1_000 for n in range(40)})
        return job_pb2.JobSpec(tasks=[task])

    accepted: list[str] = []
    async with grpc.aio.insecure_channel(daemon.address) as channel:
        stub = stub_of(channel)
        for number in range(20):
            request = scheduler_pb2.SubmitRequest(job=big_job(number))
            try:
                accepted.append((await stub.Submit(request, timeout=10)).job_id)
            except grpc.aio.AioRpcError as error:
                assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, error
                assert "the journal" in (error.details() or "")
                break
        else:
            pytest.fail("20 jobs of 40 KB each fitted in a journal of 300 KiB")
        assert len(accepted) >= 2
        assert daemon.returncode() is None
        assert await daemon.health() == "SERVING"

    for job_id in accepted:
        job = await finished(daemon, job_id)
        assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job
    assert ran(out) == {f"big-{number}": 1 for number in range(len(accepted))}

    # What it accepted is on disk as it said.
    await kill_9(daemon)
    again = await start(daemons, state, "--journal-max-bytes", "300KiB")
    for job_id in accepted:
        assert (await get_job(again, job_id)).state == job_pb2.JOB_STATE_SUCCEEDED


# -- 8. a journal of the previous schema ----------------------------------------------------


async def test_a_journal_of_schema_v1_is_upgraded_and_its_job_recovered(daemons, short_tmp: Path):
    state, out = short_tmp / "state", short_tmp / "ran.txt"
    state.mkdir()
    spec = job_pb2.JobSpec(
        tasks=[
            recording_task("done", out),
            recording_task("was-running", out, ("done",)),
            recording_task("never-ran", out, ("was-running",)),
        ]
    )
    write_v1_journal(
        state / JOURNAL_FILE,
        job_id="old-job",
        request_id="old-request",
        spec=spec,
        tasks=[
            ("done", "succeeded", 1, b"done\n"),
            ("was-running", "running", 1, None),
        ],
    )

    daemon = await start(daemons, state)
    job = await finished(daemon, "old-job")
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED
    tasks = {task.id: task for task in job.tasks}
    assert tasks["done"].result.exec.stdout == b"done\n"
    assert (tasks["was-running"].attempts, tasks["never-ran"].attempts) == (2, 1)
    assert ran(out) == {"was-running": 1, "never-ran": 1}
    assert await submit(daemon, spec, request_id="old-request") == "old-job"
    with contextlib.closing(sqlite3.connect(state / JOURNAL_FILE)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
