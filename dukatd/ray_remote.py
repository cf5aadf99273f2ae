"""What runs on a Ray worker: one attempt of an exec task, as a streaming generator task.

The bridge (`dukatd.ray_bridge`) submits `run_attempt` with the task's resources; Ray places
it on a node that has them and runs it in one of that node's worker processes. There it does
what the local runner does (`dukatd.exec_runner`), with the same parts:

- the process is spawned, read, reaped and, when it stops, killed with its whole group by a
  `dukatd.exec_process.Child`, on an event loop of its own on a thread of the task;
- its output goes through a `dukatd.exec_output.OutputPump` here, on the node, so only what
  the rate limit lets through crosses the network: lines and progress reports come back as
  `("events", [...])` items, one every `FLUSH_INTERVAL` at most while the process runs;
- the last item is `("exit", code, stdout_tail, stderr_tail, events)` or
  `("spawn_error", why)`.

Environment: the base is the node's (`default_base_env` of the Ray worker's environment: a
PATH that is right on that node), then the action's env, then `DUKAT_JOB_ID`,
`DUKAT_TASK_ID`, `DUKAT_ATTEMPT` and `DUKAT_RAY_NODE_ID` (the Ray node it runs on). `cwd`
must exist on the node; None is the Ray worker's own directory.

Stopping: the bridge stops an attempt with `ray.cancel(force=False)`, which the task sees
between batches (`RuntimeContext.is_canceled`, asked every `FLUSH_INTERVAL`; Ray interrupts a
running generator only where it yields): it then stops the group as the local runner does
(SIGTERM, SIGKILL after `term_grace`, reaped) and ends. The loop lives on a thread of its own
so that whatever Ray raises in the task's thread (GeneratorExit at a yield, SystemExit when
the worker is told to exit) lands in plain code, which stops the group before it goes on.

A Ray worker can also die under the task: force-cancelled, its node lost, or killed by Ray
because the task's owner (the bridge, so dukatd) died. The task's group is in a session of
its own, out of reach of Ray's clean-up, so each worker process that runs attempts starts one
warden (`dukatd.ray_warden`) that holds the read end of a pipe: the worker writes `+PGID`
when a group starts and `-PGID` when it is gone, and when the worker dies the pipe ends and
the warden SIGKILLs every group still listed. A group started in the microseconds between
the spawn and its `+PGID` line is not covered.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, TypeVar

from dukatd.exec_output import OutputPump
from dukatd.exec_process import Child
from dukatd.exec_runner import ExecOptions, default_base_env, describe_spawn_error

__all__ = ["FLUSH_INTERVAL", "RemoteAttempt", "ray_task", "run_attempt"]

T = TypeVar("T")

FLUSH_INTERVAL = 0.1
"""Seconds between two batches of events from a running process, at most."""
STOP_BOUND = 10.0
"""Seconds past `term_grace` a stop may take before the group is killed outright."""


@dataclass(frozen=True, slots=True)
class RemoteAttempt:
    """One attempt, as the bridge sends it to the node."""

    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: str | None
    stdin: bytes
    job_id: str
    task_id: str
    attempt: int
    options: ExecOptions = field(default_factory=ExecOptions)


class _Batch:
    """The pump's sink: the events of the process since the last batch was taken. Filled on
    the loop's thread, taken on the task's."""

    __slots__ = ("_events", "_lock")

    def __init__(self) -> None:
        self._events: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()

    def output(self, stream: str, text: str) -> None:
        with self._lock:
            self._events.append(("output", stream, text))

    def report_progress(self, fraction: float | None = None, message: str = "") -> None:
        with self._lock:
            self._events.append(("progress", fraction, message))

    def take(self) -> list[tuple[Any, ...]]:
        with self._lock:
            events, self._events = self._events, []
        return events


class _LoopThread:
    """An event loop on a thread of its own, where the process's `Child` lives.

    Not on the task's thread: an exception Ray raises there inside an event loop's callback
    would be swallowed by the loop. The task's thread only waits, asks and yields.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="dukat-exec-loop", daemon=True
        )
        self._thread.start()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.submit(coroutine).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


def run_attempt(
    attempt: RemoteAttempt, node_id: str = "", cancelled: Callable[[], bool] = lambda: False
) -> Iterator[tuple[Any, ...]]:
    """Run the attempt's process on this node; yield its events, then how it ended.

    `cancelled` is asked between batches: once it says yes, the process is stopped and the
    generator ends without an outcome (its owner stopped it, and knows).
    """
    options = attempt.options
    batch = _Batch()
    pump = OutputPump(
        batch,
        lines_per_second=options.lines_per_second,
        burst=options.line_burst,
        max_line_bytes=options.max_line_bytes,
        tail_bytes=options.tail_bytes,
        clock=time.monotonic,
    )
    env = {**default_base_env(), **attempt.env}
    env["DUKAT_JOB_ID"] = attempt.job_id
    env["DUKAT_TASK_ID"] = attempt.task_id
    env["DUKAT_ATTEMPT"] = str(attempt.attempt)
    env["DUKAT_RAY_NODE_ID"] = node_id
    thread = _LoopThread()
    try:
        try:
            child = thread.call(_spawn(attempt, env, pump))
        except (OSError, ValueError) as error:
            yield ("spawn_error", describe_spawn_error(error))
            return
        warden = _warden()
        warden.watch(child.pid)
        try:
            exited = thread.submit(child.wait())
            while not _done_within(exited, FLUSH_INTERVAL):
                if cancelled():
                    thread.call(_stop(child, options.term_grace))
                    return
                events = batch.take()
                if events:
                    yield ("events", events)
        except BaseException:  # GeneratorExit (cancelled at a yield), the worker exiting
            thread.call(_stop(child, options.term_grace))
            raise
        finally:
            warden.forget(child.pid)
        pump.finish()  # the process is reaped and its pipes closed: nothing feeds it now
        yield ("exit", child.returncode, pump.tail(0), pump.tail(1), batch.take())
    finally:
        thread.close()


async def _spawn(attempt: RemoteAttempt, env: dict[str, str], pump: OutputPump) -> Child:
    return Child(
        attempt.argv,
        env=env,
        cwd=attempt.cwd,
        stdin=attempt.stdin,
        pump=pump,
        drain_timeout=attempt.options.drain_timeout,
    )


def _done_within(future: concurrent.futures.Future[Any], seconds: float) -> bool:
    try:
        future.result(timeout=seconds)
    except concurrent.futures.TimeoutError:
        return False
    return True


async def _stop(child: Child, grace: float) -> None:
    """Stop the group as the local runner does, bounded all the same."""
    try:
        await asyncio.wait_for(child.stop(grace), grace + STOP_BOUND)
    except TimeoutError:
        child.signal_group(signal.SIGKILL)


class _Warden:
    """This worker's warden process and the pipe to it (see the module docstring)."""

    def __init__(self) -> None:
        popen = subprocess.Popen(
            [sys.executable, "-m", "dukatd.ray_warden"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            close_fds=True,
            start_new_session=True,
        )
        popen.wait()  # the warden forks and its first process exits: it is nobody's child
        assert popen.stdin is not None
        self._pipe: IO[bytes] = popen.stdin  # close-on-exec: no task inherits it
        self._lock = threading.Lock()

    def watch(self, pgid: int) -> None:
        self._say(b"+%d\n" % pgid)

    def forget(self, pgid: int) -> None:
        self._say(b"-%d\n" % pgid)

    def _say(self, line: bytes) -> None:
        with self._lock:
            self._pipe.write(line)
            self._pipe.flush()


_the_warden: _Warden | None = None
_warden_lock = threading.Lock()


def _warden() -> _Warden:
    """This worker process's warden, started by its first attempt."""
    global _the_warden
    with _warden_lock:
        if _the_warden is None:
            _the_warden = _Warden()
        return _the_warden


def ray_task(attempt: RemoteAttempt) -> Iterator[tuple[Any, ...]]:
    """The function the bridge makes a Ray task of: `run_attempt` where Ray placed it."""
    import ray

    context = ray.get_runtime_context()
    yield from run_attempt(attempt, context.get_node_id(), context.is_canceled)
