"""What runs on a Ray worker: one attempt of an exec task, as a Ray task.

The bridge (`dukatd.ray_bridge`) submits `ray_task` with the task's resources; Ray places it
on a node that has them and runs it in one of that node's worker processes. There
`run_attempt` does what the local runner does (`dukatd.exec_runner`), with the same parts:

- the process is spawned, read, reaped and, when it stops, killed with its whole group by a
  `dukatd.exec_process.Child`, on an event loop the worker process keeps from task to task,
  which the task runs while it waits;
- its output goes through a `dukatd.exec_output.OutputPump` here, on the node, so only what
  the rate limit lets through crosses the network: lines and progress reports are
  `("events", [...])` items, one every `FLUSH_INTERVAL` at most while the process runs,
  which `ray_task` sends to the bridge's `EventSink` actor as they come;
- the last item, which the task returns, is `("exit", code, stdout_tail, stderr_tail,
  events)` or `("spawn_error", why)`.

Environment: the base is the node's (`default_base_env` of the Ray worker's environment: a
PATH that is right on that node), then the action's env, then `DUKAT_JOB_ID`,
`DUKAT_TASK_ID`, `DUKAT_ATTEMPT` and `DUKAT_RAY_NODE_ID` (the Ray node it runs on). `cwd`
must exist on the node; None is the Ray worker's own directory.

Stopping: the bridge stops an attempt with `ray.cancel(force=False)`, which the task sees
between batches (`RuntimeContext.is_canceled`, asked every `FLUSH_INTERVAL`): it then stops
the group as the local runner does (SIGTERM, SIGKILL after `kill_grace`, reaped) and ends.
Whatever else ends the task's code (the worker told to exit) stops the group on its way.

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
import contextlib
import pickle
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from dukatd.exec_output import OutputPump
from dukatd.exec_process import Child
from dukatd.exec_runner import ExecOptions, attempt_env, default_base_env, describe_spawn_error

__all__ = [
    "FLUSH_INTERVAL",
    "SINK_NAMESPACE",
    "EventSink",
    "RemoteAttempt",
    "ray_task",
    "run_attempt",
]

SINK_NAMESPACE = "dukat"
"""The Ray namespace of the bridges' event sinks."""
FLUSH_INTERVAL = 0.1
"""Seconds between two batches of events from a running process, at most."""
STOP_BOUND = 10.0
"""Seconds past `kill_grace` a stop may take before the group is killed outright."""


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
    key: int = 0
    """The bridge's number for the attempt: what its events are filed under."""


class _Batch:
    """The pump's sink: the events of the process since the last batch was taken."""

    __slots__ = ("events",)

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def output(self, stream: str, text: str) -> None:
        self.events.append(("output", stream, text))

    def report_progress(self, fraction: float | None = None, message: str = "") -> None:
        self.events.append(("progress", fraction, message))

    def take(self) -> list[tuple[Any, ...]]:
        events, self.events = self.events, []
        return events


def run_attempt(
    attempt: RemoteAttempt, node_id: str = "", cancelled: Callable[[], bool] = lambda: False
) -> Iterator[tuple[Any, ...]]:
    """Run the attempt's process on this node; yield its events, then how it ended.

    `cancelled` is asked between batches: once it says yes, the process is stopped and the
    generator ends without an outcome (its owner stopped it, and knows).
    """
    options = attempt.options
    batch = _Batch()
    pump = options.output_pump(batch)
    env = attempt_env(_base_env(), attempt.env, attempt.job_id, attempt.task_id, attempt.attempt)
    env["DUKAT_RAY_NODE_ID"] = node_id
    loop = _loop()
    try:
        child = loop.run_until_complete(_spawn(attempt, env, pump))
    except (OSError, ValueError) as error:
        yield ("spawn_error", describe_spawn_error(error))
        return
    warden = _warden()
    warden.watch(child.pid)
    try:
        while not loop.run_until_complete(_finished_within(child, FLUSH_INTERVAL)):
            if cancelled():
                loop.run_until_complete(_stop(child, options.kill_grace))
                return
            events = batch.take()
            if events:
                yield ("events", events)
    except BaseException:  # GeneratorExit, the worker told to exit (SystemExit)
        loop.run_until_complete(_stop(child, options.kill_grace))
        raise
    finally:
        warden.forget(child.pid)
    pump.finish()  # the process is reaped and its pipes closed: nothing feeds it now
    yield ("exit", child.returncode, pump.tail(0), pump.tail(1), batch.take())


async def _spawn(attempt: RemoteAttempt, env: dict[str, str], pump: OutputPump) -> Child:
    return Child(
        attempt.argv,
        env=env,
        cwd=attempt.cwd,
        stdin=attempt.stdin,
        pump=pump,
        drain_timeout=attempt.options.drain_timeout,
    )


async def _finished_within(child: Child, seconds: float) -> bool:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(child.wait(), seconds)
    return child.finished


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
_the_loop: asyncio.AbstractEventLoop | None = None
_the_base_env: dict[str, str] | None = None
_lock = threading.Lock()


def _warden() -> _Warden:
    """This worker process's warden, started by its first attempt."""
    global _the_warden
    with _lock:
        if _the_warden is None:
            _the_warden = _Warden()
        return _the_warden


def _loop() -> asyncio.AbstractEventLoop:
    """This worker process's event loop, made by its first attempt and kept (a Ray worker
    runs task after task), run by each attempt in the task's thread while it waits."""
    global _the_loop
    with _lock:
        if _the_loop is None:
            _the_loop = asyncio.new_event_loop()
        return _the_loop


def _base_env() -> dict[str, str]:
    """The node's base env of every task (`default_base_env` of this worker's), once."""
    global _the_base_env
    if _the_base_env is None:
        _the_base_env = default_base_env()
    return _the_base_env


def ray_task(pickled: bytes, sink_name: str) -> tuple[tuple[Any, ...], int]:
    """The function the bridge makes a Ray task of: `run_attempt` where Ray placed it.

    A plain task, not a streaming one: most attempts of most jobs are short and say little,
    and a plain task costs Ray about 2 ms less (bench/ray_executor.py). What a running process says
    goes to the bridge's `EventSink` (named `sink_name`), batch by batch, as it comes; the
    task returns how the attempt ended and how many batches it sent, once the sink has them
    all, so that the bridge passes on the last line before the end.

    The attempt comes pickled by the daemon, passed through the bridge untouched: Ray's own
    serialization of a dataclass costs it a tenth of a millisecond more a task.
    """
    import ray

    attempt: RemoteAttempt = pickle.loads(pickled)
    context = ray.get_runtime_context()
    outcome: tuple[Any, ...] = ("stopped",)
    sent, last = 0, None
    for item in run_attempt(attempt, context.get_node_id(), context.is_canceled):
        if item[0] == "events":
            last = _sink(sink_name).put.remote(attempt.key, item[1])
            sent += 1
        else:
            outcome = item
    if last is not None:
        ray.get(last)  # the sink runs them in order: it has every batch now
    return outcome, sent


class EventSink:
    """The bridge's mailbox for the events of running attempts: a Ray actor on the bridge's
    node (it dies with it), named so that every worker finds it. Tasks `put` batches; the
    bridge `take`s them all, waiting up to `wait` seconds for some."""

    def __init__(self) -> None:
        self._batches: list[tuple[int, list[tuple[Any, ...]]]] = []
        self._arrived = asyncio.Event()

    async def put(self, key: int, events: list[tuple[Any, ...]]) -> None:
        self._batches.append((key, events))
        self._arrived.set()

    async def take(self, wait: float) -> list[tuple[int, list[tuple[Any, ...]]]]:
        if not self._batches:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), wait)
        self._arrived.clear()
        batches, self._batches = self._batches, []
        return batches


_sinks: dict[str, Any] = {}


def _sink(name: str) -> Any:
    """The handle of the sink `name`, looked up once per worker process."""
    handle = _sinks.get(name)
    if handle is None:
        import ray

        handle = _sinks[name] = ray.get_actor(name, namespace=SINK_NAMESPACE)
    return handle
