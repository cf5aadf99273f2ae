"""The exec runner: tasks whose action is a subprocess (`ExecAction`), run by the daemon.

    scheduler = Scheduler(runners={ExecAction: ExecRunner()})
    scheduler.submit(JobSpec((TaskSpec("build", ExecAction(("make", "-j4"), cwd="/src")),)))

One attempt is one process, the leader of a session of its own (so also of a process group)
with its `env`, `cwd` and `stdin`. Its stdout and stderr become output events line by line,
bounded in line length and rate, and the last `output_tail_bytes` of each are kept
(`dukatd.exec_output`); a stdout line `::progress 0.4 message` is a progress report. Exit 0
is success and gives an `ExecResult`; anything else raises `TaskProcessError` (exit code or
signal, and the tails of both streams: the failed task's evidence). A process that cannot
start (no such program, no such cwd) is a `TaskProcessError` too, not a crash of the daemon.

Stopping: a timeout or a cancel reaches the attempt as `CancelledError`. The runner sends
SIGTERM to the whole group, SIGKILL after `kill_grace` seconds, waits until the leader is
reaped and only then lets the `CancelledError` go on. When the leader exits, on its own or
not, what is left of its group is killed before it is reaped: a task's processes end with
the task (a task that wants a process to outlive it is asking for a service, not a task).

Speed: the daemon runs on uvloop, whose subprocess support spawns and reaps about 5x slower
than stdlib asyncio with a pidfd watcher. So nothing here uses `loop.subprocess_exec`:
`subprocess.Popen` spawns (vfork + exec), a pidfd in the loop says when the leader exited,
`os.waitpid` reaps it, and the pipes are read with `add_reader`. The same code runs on the
default asyncio loop (`bench/exec.py` measures it against a bare `create_subprocess_exec`).
Popen's vfork path runs no `pthread_atfork` handlers, so gRPC's fork support is not involved
(the daemon still sets `GRPC_ENABLE_FORK_SUPPORT=0`, as ARCHITECTURE says).

Environment: a task's env is laid over a small clean base, not over the daemon's own
environment. The daemon's environment holds things that are the daemon's alone —
`NOTIFY_SOCKET` (a task could tell systemd the daemon is ready or stopping), `DUKATD_*`
configuration, token paths, `LISTEN_FDS`, gRPC tuning — and clients in any language submit
tasks that should run the same whichever way the daemon happened to be started. The base
passes on only `BASE_ENV_NAMES` from the daemon's environment (PATH falls back to a standard
one), then the action's `env` goes over it, then `DUKAT_JOB_ID`, `DUKAT_TASK_ID` and
`DUKAT_ATTEMPT`, so a task knows which attempt it is. `ExecOptions.base_env` replaces the
base. argv[0] is looked up in the resulting PATH.

A task's processes must never outlive the daemon. What each way of ensuring it costs and
covers (`bench/exec.py`: 2,000 `/bin/true`, concurrency 8, uvloop, this 2-core machine):

- PR_SET_PDEATHSIG set in the child needs `preexec_fn`: that turns off vfork (a full fork
  of a daemon that may hold a large heap) and is documented as unsafe with threads, which
  gRPC has. Not used.
- `setpriv --pdeathsig KILL -- argv` (util-linux) sets it without preexec_fn, at the price
  of a second exec per task: about half the throughput (920/s against 1,790/s). And it
  covers only the leader: `sh -c 'a & b'` loses sh and keeps a and b; the signal also
  follows the death of the spawning thread, not of the process. Not used.
- `kill_all(grace)` at shutdown (SIGTERM to every live group, SIGKILL after the grace) and
  `kill_all_now()` as the last word: cover every clean stop. Always there.
- A `GroupLedger` (`dukatd.exec_groups`, optional) records every live group in the state
  dir, and the next daemon kills what a SIGKILLed or crashed one left behind: the whole
  session, not just the leader. About 15 µs per task: a line appended at the start (its
  start time the boot clock read before the spawn) and one at the end.
- Under systemd (KillMode=control-group, the default) or as a container's main process, the
  service manager or the kernel ends the whole tree with the daemon anyway.

Limits: a process that leaves the task's session (`setsid`, a double-forking daemon) is out
of reach of `killpg`; only a cgroup per task would catch it. Its hold on the task's pipes
lasts at most `drain_timeout` after the leader exits.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from dukat.actions import ExecAction, ExecResult  # ExecResult re-exported: its old home
from dukat.core.context import TaskContext
from dukat.errors import FieldViolation, TaskInterruptedError, TaskProcessError, ValidationError
from dukatd.exec_groups import GroupLedger, boot_ticks
from dukatd.exec_output import OutputPump, ProgressSink
from dukatd.exec_process import Child

__all__ = [
    "BASE_ENV_NAMES",
    "ExecOptions",
    "ExecResult",
    "ExecRunner",
    "attempt_env",
    "default_base_env",
    "describe_spawn_error",
    "exit_result",
    "stopped_error",
]

BASE_ENV_NAMES = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
"""The daemon's own variables a task inherits (when the daemon has them)."""
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def default_base_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The base env of every task: `BASE_ENV_NAMES` taken from `environ` (the daemon's)."""
    environ = os.environ if environ is None else environ
    base = {name: environ[name] for name in BASE_ENV_NAMES if name in environ}
    base.setdefault("PATH", DEFAULT_PATH)
    return base


@dataclass(frozen=True, slots=True)
class ExecOptions:
    """How the exec runner treats processes; the defaults suit a daemon on a small host."""

    kill_grace: float = 3.0
    """Seconds from SIGTERM to SIGKILL when an attempt is stopped (timeout, cancel)."""
    lines_per_second: float = 100.0
    """Output lines (and progress reports) per second and task that become events."""
    line_burst: int = 1000
    """How many lines a task may write at once before `lines_per_second` applies."""
    max_line_bytes: int = 8192
    """Longer lines are cut, with a note of how much was cut."""
    output_tail_bytes: int = 64 * 1024
    """How much of the end of each stream is kept for the result or the error."""
    drain_timeout: float = 1.0
    """After the leader exits, how long its pipes may stay open (held by an escaped process)."""
    base_env: Mapping[str, str] | None = None
    """The env every task starts from; None: `default_base_env()` at the runner's creation."""

    def __post_init__(self) -> None:
        def positive(name: str, value: object, *, zero: bool = False) -> None:
            if not (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and math.isfinite(value)
                and (value >= 0 if zero else value > 0)
            ):
                what = "0 or more" if zero else "more than 0"
                raise ValidationError(
                    f"ExecOptions.{name} must be a number {what}, not {value!r}",
                    violations=[FieldViolation(name, f"must be {what}")],
                )

        positive("kill_grace", self.kill_grace, zero=True)
        positive("lines_per_second", self.lines_per_second)
        positive("drain_timeout", self.drain_timeout, zero=True)
        for name in ("line_burst", "max_line_bytes", "output_tail_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValidationError(
                    f"ExecOptions.{name} must be a whole number of at least 1, not {value!r}",
                    violations=[FieldViolation(name, "must be at least 1")],
                )

    def output_pump(
        self, sink: ProgressSink, monotonic: Callable[[], float] = time.monotonic
    ) -> OutputPump:
        """The pump of one attempt's output, bounded as these options say (here and on a
        Ray node alike)."""
        return OutputPump(
            sink,
            lines_per_second=self.lines_per_second,
            burst=self.line_burst,
            max_line_bytes=self.max_line_bytes,
            output_tail_bytes=self.output_tail_bytes,
            monotonic=monotonic,
        )


def attempt_env(
    base: Mapping[str, str], env: Mapping[str, str], job_id: str, task_id: str, attempt: int
) -> dict[str, str]:
    """An attempt's env: the action's `env` over `base`, then which attempt it is."""
    return {
        **base,
        **env,
        "DUKAT_JOB_ID": job_id,
        "DUKAT_TASK_ID": task_id,
        "DUKAT_ATTEMPT": str(attempt),
    }


def stopped_error(program: str) -> TaskInterruptedError:
    """An attempt `kill_all` stopped: interrupted, not failed."""
    return TaskInterruptedError(
        f"{program!r} was stopped: the daemon is stopping", cause="executor_stopped"
    )


def exit_result(
    program: str, code: int, stdout_tail: bytes, stderr_tail: bytes, *, stopped: bool
) -> ExecResult:
    """What an attempt's exit makes of it, here or on a Ray node: exit 0 its result; else,
    if `kill_all` stopped it, an interruption (it runs again after the restart), or a
    `TaskProcessError` with the exit code or signal and both tails."""
    if code == 0:
        return ExecResult(0, stdout_tail, stderr_tail)
    if stopped:
        raise stopped_error(program)
    tails = {"stdout_tail": stdout_tail, "stderr_tail": stderr_tail}
    if code < 0:
        raise TaskProcessError(program, signal=-code, **tails)
    raise TaskProcessError(program, exit_code=code, **tails)


class ExecRunner:
    """Runs `ExecAction`s as subprocesses; register it with `Scheduler(runners=...)`.

    Tracks every live process group: `kill_all` ends them at shutdown, and a `ledger`
    (optional) records them so that the next daemon can end them after a crash.
    `before_spawn` (optional) is awaited before each attempt's process starts: a journal's
    `settled`, so that no process runs whose attempt a crash could take back (the restarted
    daemon would run that attempt again, under the same number, even with no retry left).
    """

    def __init__(
        self,
        options: ExecOptions | None = None,
        *,
        ledger: GroupLedger | None = None,
        before_spawn: Callable[[], Awaitable[object]] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`monotonic`: seconds, for the output rate limit (a bare function, not a `Clock`)."""
        self.options = options = options or ExecOptions()
        base = default_base_env() if options.base_env is None else dict(options.base_env)
        self._base_env: dict[str, str] = base
        self._ledger = ledger
        self._before_spawn = before_spawn
        self._monotonic = monotonic
        self._live: dict[int, Child] = {}  # pgid -> its leader; reaped ones leave at once
        self._closed = False

    @property
    def live_groups(self) -> frozenset[int]:
        """Process group ids of the attempts running now."""
        return frozenset(self._live)

    def run(self, context: TaskContext) -> Awaitable[ExecResult]:
        """One attempt of the task whose action is an `ExecAction` (the `Runner` protocol)."""
        return self._run(context)

    async def _run(self, context: TaskContext) -> ExecResult:
        action: ExecAction = context.action
        if self._before_spawn is not None:
            await self._before_spawn()
        if self._closed:
            raise TaskInterruptedError(
                "the exec runner is shut down (the daemon is stopping)", cause="executor_stopped"
            )
        options = self.options
        pump = options.output_pump(context, self._monotonic)
        env = attempt_env(
            self._base_env, action.env, context.job_id, context.task_id, context.attempt
        )
        started_after = boot_ticks()  # for the ledger: /proc costs more once it runs
        try:
            child = Child(
                action.argv,
                env=env,
                cwd=action.cwd,
                stdin=action.stdin,
                pump=pump,
                drain_timeout=options.drain_timeout,
            )
        except (OSError, ValueError) as error:
            raise TaskProcessError(
                action.argv[0], spawn_error=describe_spawn_error(error)
            ) from None
        pgid = child.pid
        self._live[pgid] = child
        ledger = self._ledger
        try:
            if ledger is not None:
                ledger.add(pgid, started_after)
            code = await child.wait()
        except asyncio.CancelledError:
            await child.stop(options.kill_grace)
            raise
        except BaseException:
            # The ledger could not record it (a full disk): a process nobody could find
            # after a crash is worse than a failed attempt.
            await child.stop(0)
            raise
        finally:
            del self._live[pgid]
            if ledger is not None:
                ledger.discard(pgid)
        pump.finish()
        # child.stopped: by kill_all, not by this attempt's own cancel
        return exit_result(action.argv[0], code, pump.tail(0), pump.tail(1), stopped=child.stopped)

    async def kill_all(self, grace: float | None = None) -> int:
        """Refuse new attempts; SIGTERM every live group, SIGKILL after `grace`; wait for all.

        `grace` defaults to `options.kill_grace`. Returns how many groups there were. The
        attempts end with `TaskInterruptedError`: interrupted, not failed, they run again
        (after the restart: the drain has stopped the journal by then).
        """
        self._closed = True
        children = list(self._live.values())
        if children:
            grace = self.options.kill_grace if grace is None else grace
            await asyncio.gather(*(child.stop(grace) for child in children))
        return len(children)

    def kill_all_now(self) -> int:
        """SIGKILL every live group without waiting: the last thing a dying daemon does."""
        self._closed = True
        for child in self._live.values():
            child.stopped = True
            child.signal_group(signal.SIGKILL)
        return len(self._live)

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<ExecRunner live:{len(self._live)}{state}>"


def describe_spawn_error(error: BaseException) -> str:
    """An OSError as 'No such file or directory: '/nope'' (the file may be the cwd)."""
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror}: {error.filename!r}" if error.filename else error.strerror
    return str(error)
