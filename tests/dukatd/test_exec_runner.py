"""dukatd.exec_runner with real processes, through the real Scheduler, on both event loops.

Every test runs on the default asyncio loop and on uvloop (the daemon's). Waiting is on
conditions; the only sleeping is done by the child processes. After every test no child of
this process may be left, running or zombie.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import inspect
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import uvloop

from dukat.actions import ExecAction
from dukat.core import JobSpec, JobState, RetryPolicy, Scheduler, TaskSpec, TaskState
from dukat.core.events import TaskOutput, TaskProgress
from dukat.errors import (
    TaskInterruptedError,
    TaskProcessError,
    TaskTimeoutError,
    ValidationError,
)
from dukatd import exec_process
from dukatd.exec_groups import GroupLedger, recorded
from dukatd.exec_output import dropped_marker
from dukatd.exec_runner import (
    DEFAULT_PATH,
    ExecOptions,
    ExecResult,
    ExecRunner,
    default_base_env,
)
from tests.dukatd.processes import (
    alive,
    all_dead,
    group_members,
    my_children,
    no_child_left,  # noqa: F401 - an autouse fixture
)
from tests.helpers import finished, settle, wait_for

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


def on_both_loops(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Make an async test a sync one, run once on each loop in LOOPS (fixtures still work)."""
    signature = inspect.signature(test)

    @pytest.mark.parametrize("loop_name", list(LOOPS))
    def run(loop_name: str, **fixtures: Any) -> None:
        with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
            runner.run(asyncio.wait_for(test(**fixtures), 30))

    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [p.replace(kind=keyword) for p in signature.parameters.values()]
    run.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[inspect.Parameter("loop_name", keyword), *parameters]
    )
    functools.update_wrapper(run, test, assigned=("__module__", "__name__", "__qualname__"))
    del run.__wrapped__  # pytest would read the async function's signature through it
    return run


# -- a job around one task ------------------------------------------------------------------


class Run:
    """One job of exec tasks on a fresh scheduler, with every event it made."""

    def __init__(self, runner: ExecRunner | None = None, **scheduler_options: Any) -> None:
        self.runner = runner or ExecRunner()
        self.scheduler = Scheduler(runners={ExecAction: self.runner}, **scheduler_options)
        self.events: list[Any] = []
        self.scheduler.add_listener(self.events.append)
        self.job_id = ""

    def submit(self, *tasks: TaskSpec) -> str:
        self.job_id = self.scheduler.submit(JobSpec(tasks))
        return self.job_id

    async def finish(self) -> JobState:
        return await finished(self.scheduler, self.job_id, within=20)

    def result(self, task_id: str = "t") -> Any:
        return self.scheduler.results(self.job_id)[task_id]

    def output(self, stream: str | None = None) -> list[str]:
        return [
            e.text
            for e in self.events
            if isinstance(e, TaskOutput) and (stream is None or e.stream == stream)
        ]

    def progress(self) -> list[tuple[float | None, str]]:
        return [(e.fraction, e.message) for e in self.events if isinstance(e, TaskProgress)]


def sh(script: str, **options: Any) -> ExecAction:
    return ExecAction(("sh", "-c", script), **options)


def task(action: ExecAction, task_id: str = "t", **options: Any) -> TaskSpec:
    return TaskSpec(task_id, action, **options)


async def tree_of(run: Run, size: int) -> tuple[int, list[int]]:
    """The pgid of the one running task and its `size` live processes, once they are there."""
    await wait_for(lambda: len(run.runner.live_groups) == 1, within=10)
    (pgid,) = run.runner.live_groups
    await wait_for(lambda: len(group_members(pgid)) == size, within=10)
    return pgid, group_members(pgid)


# -- success, output, env, cwd, stdin -------------------------------------------------------


@on_both_loops
async def test_success_gives_exit_code_tails_and_output_events_line_by_line() -> None:
    run = Run()
    run.submit(task(sh("echo one; echo two; echo oops >&2; printf 'no newline'")))
    assert await run.finish() is JobState.SUCCEEDED
    result = run.result()
    assert result.state is TaskState.SUCCEEDED
    assert result.result == ExecResult(0, b"one\ntwo\nno newline", b"oops\n")
    assert run.output("stdout") == ["one", "two", "no newline"]
    assert run.output("stderr") == ["oops"]


async def test_no_process_starts_before_before_spawn_returns(tmp_path) -> None:
    """The daemon passes its journal's sync: no process runs whose attempt is not on disk."""
    gate = asyncio.Event()
    waited: list[bool] = []

    async def before_spawn() -> None:
        waited.append(True)
        await gate.wait()

    run = Run(ExecRunner(before_spawn=before_spawn))
    marker = tmp_path / "ran"
    run.submit(task(sh(f"touch {marker}")))
    await wait_for(lambda: waited == [True])
    await settle()
    assert not marker.exists() and run.runner.live_groups == frozenset()
    gate.set()
    assert await run.finish() is JobState.SUCCEEDED
    assert marker.exists()


@on_both_loops
async def test_env_is_the_action_env_over_a_clean_base(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUKATD_SECRET_FOR_THE_DAEMON_ONLY", "x")
    monkeypatch.setenv("LANG", "C.UTF-8")
    run = Run(ExecRunner())
    run.submit(task(sh("env", env={"GREETING": "hello world", "LANG": "C"})))
    assert await run.finish() is JobState.SUCCEEDED
    env = dict(line.split("=", 1) for line in run.output("stdout"))
    assert env["GREETING"] == "hello world"
    assert env["LANG"] == "C"  # the action's env wins over the base
    assert env["PATH"] == os.environ["PATH"]
    assert "DUKATD_SECRET_FOR_THE_DAEMON_ONLY" not in env
    assert env["DUKAT_JOB_ID"] == run.job_id
    assert env["DUKAT_TASK_ID"] == "t"
    assert env["DUKAT_ATTEMPT"] == "1"


def test_default_base_env_passes_on_only_the_listed_names() -> None:
    daemon = {"PATH": "/opt/bin", "HOME": "/home/d", "NOTIFY_SOCKET": "/run/n", "TZ": "UTC"}
    assert default_base_env(daemon) == {"PATH": "/opt/bin", "HOME": "/home/d", "TZ": "UTC"}
    assert default_base_env({}) == {"PATH": DEFAULT_PATH}


@on_both_loops
async def test_base_env_can_be_replaced_and_argv0_is_found_in_its_path(tmp_path: Path) -> None:
    program = tmp_path / "hello"
    program.write_text("#!/bin/sh\necho hello from $0\n")
    program.chmod(0o755)
    base = {"PATH": f"{tmp_path}:{DEFAULT_PATH}"}
    run = Run(ExecRunner(ExecOptions(base_env=base)))
    run.submit(task(ExecAction(("hello",))))
    assert await run.finish() is JobState.SUCCEEDED
    assert run.output() == [f"hello from {program}"]


@on_both_loops
async def test_cwd_and_stdin(tmp_path: Path) -> None:
    run = Run()
    run.submit(task(sh("pwd; cat", cwd=str(tmp_path), stdin=b"line 1\nline 2\n")))
    assert await run.finish() is JobState.SUCCEEDED
    assert run.output() == [str(tmp_path), "line 1", "line 2"]


@on_both_loops
async def test_stdin_larger_than_a_pipe_is_written_as_the_process_reads() -> None:
    data = os.urandom(3 * 1024 * 1024)
    run = Run()
    run.submit(task(ExecAction(("wc", "-c"), stdin=data)))
    assert await run.finish() is JobState.SUCCEEDED
    assert run.output() == [str(len(data))]


@on_both_loops
async def test_stdin_that_the_process_never_reads_is_no_error() -> None:
    run = Run()
    run.submit(task(ExecAction(("true",), stdin=b"x" * (1024 * 1024))))
    assert await run.finish() is JobState.SUCCEEDED


@on_both_loops
async def test_without_stdin_the_process_reads_end_of_file() -> None:
    run = Run()
    run.submit(task(sh("cat; echo after")))
    assert await run.finish() is JobState.SUCCEEDED
    assert run.output() == ["after"]


@on_both_loops
async def test_progress_lines_become_progress_events() -> None:
    run = Run()
    script = """
        echo '::progress 0.4 loading data'
        echo '::progress 1'
        echo '::progress 2 out of range'
        echo '::progress soon'
        echo '::progress 0.5 on stderr is output' >&2
    """
    run.submit(task(sh(script)))
    assert await run.finish() is JobState.SUCCEEDED
    assert run.progress() == [(0.4, "loading data"), (1.0, "")]
    assert run.output("stdout") == ["::progress 2 out of range", "::progress soon"]
    assert run.output("stderr") == ["::progress 0.5 on stderr is output"]
    assert run.scheduler.get_job(run.job_id).tasks[0].progress == 1.0


# -- bounds ---------------------------------------------------------------------------------


def dropped_counts(markers: list[str], stream: str = "stdout") -> int:
    """How many lines the markers say were dropped (each must be a well-formed marker)."""
    total = 0
    for marker in markers:
        count = int(re.findall(r"\d+", marker)[0])
        assert marker == dropped_marker(stream, count)
        total += count
    return total


@on_both_loops
async def test_output_over_the_rate_limit_is_dropped_and_counted() -> None:
    options = ExecOptions(lines_per_second=50, line_burst=20, output_tail_bytes=1000)
    run = Run(ExecRunner(options))
    started = time.monotonic()
    run.submit(task(ExecAction(("seq", "1", "20000"))))
    assert await run.finish() is JobState.SUCCEEDED
    elapsed = time.monotonic() - started
    lines = run.output("stdout")
    numbers = [line for line in lines if line.isdigit()]
    markers = [line for line in lines if not line.isdigit()]
    assert numbers[:20] == [str(i) for i in range(1, 21)]  # the burst goes through whole
    assert len(numbers) + dropped_counts(markers) == 20000  # every line told of, one way or another
    assert len(lines) <= 20 + 50 * elapsed + 1  # events: the burst, then the rate; markers count
    assert run.result().result.stdout.endswith(b"19999\n20000\n")  # the tail saw everything
    assert len(run.result().result.stdout) == 1000


@on_both_loops
async def test_long_lines_are_cut_with_a_note() -> None:
    run = Run(ExecRunner(ExecOptions(max_line_bytes=1000)))
    run.submit(task(sh("head -c 100000 /dev/zero | tr '\\0' x; echo; echo short")))
    assert await run.finish() is JobState.SUCCEEDED
    assert run.output() == ["x" * 1000 + " [dukatd: 99000 more bytes cut]", "short"]


@on_both_loops
async def test_the_tail_keeps_the_end_of_each_stream() -> None:
    run = Run(ExecRunner(ExecOptions(output_tail_bytes=100)))
    run.submit(task(sh("seq 1 100000; seq 1 100000 >&2; exit 1")))
    assert await run.finish() is JobState.FAILED
    error = run.result().error
    assert len(error.stderr_tail) == 100
    assert error.stderr_tail.endswith(b"99999\n100000\n")


# -- failure --------------------------------------------------------------------------------


@on_both_loops
async def test_a_nonzero_exit_fails_with_the_code_and_the_tails() -> None:
    run = Run()
    run.submit(task(sh("echo working; echo 'fatal: no such ref' >&2; exit 3")))
    assert await run.finish() is JobState.FAILED
    result = run.result()
    assert result.state is TaskState.FAILED
    error = result.error
    assert isinstance(error, TaskProcessError)
    assert (error.program, error.exit_code, error.signal) == ("sh", 3, None)
    assert (error.stdout_tail, error.stderr_tail) == (b"working\n", b"fatal: no such ref\n")
    assert str(error) == "'sh' exited with code 3; stderr ends: fatal: no such ref"
    assert result.message == f"TaskProcessError: {error}"


@on_both_loops
async def test_killed_by_a_signal_fails_with_the_signal() -> None:
    run = Run()
    run.submit(task(sh("kill -KILL $$")))
    assert await run.finish() is JobState.FAILED
    error = run.result().error
    assert isinstance(error, TaskProcessError)
    assert (error.exit_code, error.signal) == (None, signal.SIGKILL)
    assert str(error) == "'sh' was killed by signal 9 (SIGKILL)"


@on_both_loops
async def test_a_missing_program_fails_cleanly_and_the_job_goes_on() -> None:
    run = Run()
    run.submit(
        task(ExecAction(("no-such-program-here", "--help")), "missing"),
        task(sh("echo fine"), "other"),
    )
    assert await run.finish() is JobState.FAILED
    error = run.result("missing").error
    assert isinstance(error, TaskProcessError)
    assert error.spawn_error == "No such file or directory: 'no-such-program-here'"
    assert str(error) == (
        "'no-such-program-here' could not start: No such file or directory: 'no-such-program-here'"
    )
    assert run.result("other").state is TaskState.SUCCEEDED
    assert run.runner.live_groups == frozenset()


@on_both_loops
async def test_a_missing_cwd_or_a_program_that_is_not_executable_fails_cleanly(
    tmp_path: Path,
) -> None:
    not_executable = tmp_path / "script"
    not_executable.write_text("#!/bin/sh\n")
    run = Run()
    run.submit(
        task(ExecAction(("true",), cwd=str(tmp_path / "nope")), "cwd"),
        task(ExecAction((str(not_executable),)), "perm"),
    )
    assert await run.finish() is JobState.FAILED
    assert run.result("cwd").error.spawn_error == (
        f"No such file or directory: {str(tmp_path / 'nope')!r}"
    )
    assert run.result("perm").error.spawn_error.startswith("Permission denied")


# -- stopping -------------------------------------------------------------------------------


@on_both_loops
async def test_a_timeout_kills_the_whole_process_tree() -> None:
    run = Run()
    run.submit(task(sh("sleep 30 & sleep 30 & wait"), timeout=0.5))
    pgid, members = await tree_of(run, 3)  # sh and both sleeps
    assert await run.finish() is JobState.FAILED
    result = run.result()
    assert isinstance(result.error, TaskTimeoutError)
    await all_dead([pgid, *members])
    assert run.runner.live_groups == frozenset()


@on_both_loops
async def test_cancelling_a_running_job_kills_the_tree() -> None:
    run = Run()
    run.submit(task(sh("sleep 30 & sleep 30 & wait")))
    pgid, members = await tree_of(run, 3)
    started = time.monotonic()
    assert run.scheduler.cancel(run.job_id) == 1
    assert await run.finish() is JobState.CANCELLED
    assert time.monotonic() - started < 2.5  # sh and sleep die of SIGTERM: no grace needed
    assert run.result().state is TaskState.CANCELLED
    await all_dead([pgid, *members])


@on_both_loops
async def test_a_child_that_ignores_sigterm_gets_sigkill_after_the_grace() -> None:
    run = Run(ExecRunner(ExecOptions(kill_grace=0.5)))
    run.submit(task(sh("trap '' TERM; echo ready; sleep 30 & wait")))
    await wait_for(lambda: run.output() == ["ready"], within=10)
    pgid, members = await tree_of(run, 2)
    started = time.monotonic()
    run.scheduler.cancel(run.job_id)
    await wait_for(lambda: not alive(pgid), within=10)
    assert time.monotonic() - started >= 0.45  # it got its grace
    assert await run.finish() is JobState.CANCELLED
    await all_dead(members)


@on_both_loops
async def test_a_second_cancel_during_the_grace_kills_at_once_and_still_reaps() -> None:
    run = Run(ExecRunner(ExecOptions(kill_grace=20)))
    run.submit(task(sh("trap '' TERM; echo ready; sleep 30 & wait")))
    await wait_for(lambda: run.output() == ["ready"], within=10)
    pgid, members = await tree_of(run, 2)
    started = time.monotonic()
    run.scheduler.cancel(run.job_id)  # SIGTERM, ignored: 20 s of grace begin
    await run.scheduler.close(grace=0.2)  # then the worker itself is cancelled
    assert time.monotonic() - started < 10
    await all_dead([pgid, *members])
    assert run.runner.live_groups == frozenset()


@on_both_loops
async def test_what_the_leader_leaves_running_ends_with_it() -> None:
    run = Run()
    run.submit(task(sh("sleep 30 & echo $!")))
    assert await run.finish() is JobState.SUCCEEDED
    (background,) = run.output()
    await all_dead([int(background)])


@on_both_loops
async def test_an_escaped_process_holds_the_pipes_only_for_the_drain_timeout() -> None:
    # setsid leaves the task's session: out of killpg's reach (see the module docstring).
    run = Run(ExecRunner(ExecOptions(drain_timeout=0.2)))
    run.submit(task(sh("setsid sleep 3 & echo started")))
    started = time.monotonic()
    assert await run.finish() is JobState.SUCCEEDED
    assert time.monotonic() - started < 2.5
    assert run.output() == ["started"]


@on_both_loops
async def test_kill_all_stops_every_group_and_refuses_new_attempts() -> None:
    run = Run(ExecRunner(ExecOptions(kill_grace=5)))
    run.submit(task(sh("sleep 30"), "a"), task(sh("sleep 30 & sleep 30 & wait"), "b"))
    await wait_for(lambda: len(run.runner.live_groups) == 2, within=10)
    groups = run.runner.live_groups
    assert await run.runner.kill_all(grace=0.2) == 2
    assert not any(alive(pgid) for pgid in groups)
    assert await run.finish() is JobState.FAILED
    for task_id in "ab":
        error = run.result(task_id).error
        assert isinstance(error, TaskInterruptedError), error
        assert error.cause == "executor_stopped"
    later = Run(run.runner)
    later.submit(task(sh("echo too late")))
    assert await later.finish() is JobState.FAILED
    assert isinstance(later.result().error, TaskInterruptedError)
    assert later.output() == []


@on_both_loops
async def test_kill_all_during_a_long_grace_brings_the_sigkill_forward() -> None:
    run = Run(ExecRunner(ExecOptions(kill_grace=20)))
    run.submit(task(sh("trap '' TERM; echo ready; sleep 30")))
    await wait_for(lambda: run.output() == ["ready"], within=10)
    pgid, members = await tree_of(run, 2)
    run.scheduler.cancel(run.job_id)  # SIGTERM, ignored: 20 s of grace begin
    started = time.monotonic()
    assert await run.runner.kill_all(grace=0.2) == 1
    assert time.monotonic() - started < 10
    assert await run.finish() is JobState.CANCELLED
    await all_dead([pgid, *members])


@on_both_loops
async def test_kill_all_now_kills_without_waiting() -> None:
    run = Run()
    run.submit(task(sh("trap '' TERM; sleep 30")))
    pgid, _ = await tree_of(run, 2)
    assert run.runner.kill_all_now() == 1
    assert await run.finish() is JobState.FAILED
    assert isinstance(run.result().error, TaskInterruptedError)
    await wait_for(lambda: group_members(pgid) == [], within=2)


@on_both_loops
async def test_many_tasks_leave_no_zombie_and_no_descriptor() -> None:
    # A set, not a count: what earlier tests left behind (grpc closes a channel's sockets
    # from its own threads, later) may close during this one; what must not be is a new one.
    fds_before = set(os.listdir("/proc/self/fd"))
    run = Run(max_concurrency=8)
    run.submit(*(task(sh(f"echo $$; exit {i % 2}"), f"t{i}") for i in range(200)))
    assert await run.finish() is JobState.FAILED
    states = [r.state for r in run.scheduler.results(run.job_id).values()]
    assert states == [TaskState.SUCCEEDED, TaskState.FAILED] * 100
    assert [(pid, st) for pid, st in my_children() if st == "Z"] == []
    assert set(os.listdir("/proc/self/fd")) <= fds_before


@on_both_loops
async def test_retries_run_a_new_process_per_attempt(tmp_path: Path) -> None:
    marker = tmp_path / "tried"
    script = f"echo $DUKAT_ATTEMPT; test -e {marker} && exit 0; touch {marker}; exit 1"
    run = Run()
    run.submit(task(sh(script), retry=RetryPolicy(max_attempts=2, initial_backoff=0)))
    assert await run.finish() is JobState.SUCCEEDED
    assert run.output() == ["1", "2"]
    assert run.result().attempts == 2


# -- without pidfds -------------------------------------------------------------------------


@pytest.fixture
def no_pidfd(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a kernel or sandbox without pidfd_open: a thread waits for each process."""
    monkeypatch.setattr(exec_process._Features, "pidfd", False)


@on_both_loops
async def test_without_pidfds_processes_are_still_reaped_and_stopped(no_pidfd: None) -> None:
    run = Run()
    run.submit(
        task(sh("echo done; exit 4"), "exit"), task(sh("sleep 30 & sleep 30 & wait"), "slow")
    )
    await wait_for(lambda: run.result("exit").state is TaskState.FAILED, within=10)
    pgid, members = await tree_of(run, 3)
    run.scheduler.cancel(run.job_id, ["slow"])
    assert await run.finish() is JobState.FAILED
    assert run.result("exit").error.exit_code == 4
    assert run.result("slow").state is TaskState.CANCELLED
    await all_dead([pgid, *members])


# -- the ledger -----------------------------------------------------------------------------


def records(directory: Path) -> list[int]:
    """The process group ids a ledger directory holds as live."""
    return [pgid for pgid, _ in recorded(directory)]


@on_both_loops
async def test_the_runner_records_live_groups_in_its_ledger(tmp_path: Path) -> None:
    ledger = GroupLedger.open(tmp_path)
    run = Run(ExecRunner(ledger=ledger))
    run.submit(task(sh("sleep 30")))
    pgid, _ = await tree_of(run, 2)
    assert records(tmp_path) == [pgid]
    run.scheduler.cancel(run.job_id)
    assert await run.finish() is JobState.CANCELLED
    assert records(tmp_path) == []
    assert len(ledger) == 0


@on_both_loops
async def test_a_ledger_that_cannot_record_fails_the_attempt_and_stops_the_process(
    tmp_path: Path,
) -> None:
    ledger = GroupLedger.open(tmp_path / "groups")
    os.close(ledger._fd)
    ledger._fd = os.open("/dev/full", os.O_WRONLY)  # every write: ENOSPC, a full disk
    run = Run(ExecRunner(ledger=ledger))
    run.submit(task(sh("sleep 30")))
    assert await run.finish() is JobState.FAILED
    assert isinstance(run.result().error, OSError)
    assert run.result().error.errno == errno.ENOSPC
    assert run.runner.live_groups == frozenset()


# -- the action and the options -------------------------------------------------------------


def test_exec_action_is_frozen_and_copies_what_it_is_given() -> None:
    argv, env = ["echo", "hi"], {"A": "1"}
    action = ExecAction(argv, env=env, stdin=bytearray(b"x"))  # type: ignore[arg-type]
    argv.append("changed")
    env["A"] = "2"
    assert action.argv == ("echo", "hi")
    assert dict(action.env) == {"A": "1"}
    assert action.stdin == b"x"
    assert action.program == "echo"
    with pytest.raises(AttributeError):
        action.cwd = "/"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"argv": ()}, "ExecAction argv: must name a program: argv is empty"),
        ({"argv": "ls -l"}, "ExecAction argv: must be a sequence of strings, not 'ls -l'"),
        ({"argv": ("ls", 3)}, "ExecAction argv[1]: not a string without NUL: 3"),
        ({"argv": ("",)}, "ExecAction argv[0]: the program name is empty"),
        ({"argv": ("a\0b",)}, "ExecAction argv[0]: not a string without NUL: 'a\\x00b'"),
        ({"argv": ("ls",), "env": {"A=B": "1"}}, "ExecAction env: bad variable name 'A=B'"),
        ({"argv": ("ls",), "env": {"A": 1}}, "ExecAction env['A']: not a string without NUL: 1"),
        ({"argv": ("ls",), "cwd": ""}, "ExecAction cwd: must be a directory path or None, not ''"),
        ({"argv": ("ls",), "stdin": "text"}, "ExecAction stdin: must be bytes, not str"),
    ],
)
def test_exec_action_names_the_bad_field(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ExecAction(**kwargs)
    assert str(caught.value) == message
    assert caught.value.violations[0].field == message.split()[1].rstrip(":")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"kill_grace": -1}, "kill_grace"),
        ({"lines_per_second": 0}, "lines_per_second"),
        ({"lines_per_second": float("nan")}, "lines_per_second"),
        ({"line_burst": 0}, "line_burst"),
        ({"max_line_bytes": 1.5}, "max_line_bytes"),
        ({"output_tail_bytes": True}, "output_tail_bytes"),
        ({"drain_timeout": float("inf")}, "drain_timeout"),
    ],
)
def test_exec_options_are_checked(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError, match=f"ExecOptions.{field} must be") as caught:
        ExecOptions(**kwargs)
    assert caught.value.violations[0].field == field


def test_repr_shows_live_state() -> None:
    assert repr(ExecRunner()) == "<ExecRunner live:0>"
    runner = ExecRunner()
    assert runner.kill_all_now() == 0
    assert repr(runner) == "<ExecRunner live:0 closed>"


def test_the_benchmark_runs() -> None:
    # A smoke test of bench/exec.py's contenders, tiny, so that the script does not rot.
    root = Path(__file__).resolve().parents[2]
    completed = subprocess.run(
        [sys.executable, "bench/exec.py", "--tasks", "20", "--rounds", "1"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert "dukat/uvloop vs bare/asyncio" in completed.stdout
