"""The Ray executor: exec tasks run on a Ray cluster's nodes instead of this host.

    dukatd --allow-exec --executor ray --ray-address auto

dukat keeps what is its own — the DAG, retries, breakers, progress, the journal, the API —
and hands each attempt's process to Ray, which places it on a node that has its resources.
`RayExecutor` is the runner of `ExecAction`s then, in place of `dukatd.exec_runner`'s; both
are an `ExecExecutor` (`dukatd.executor`).

The Ray driver is not this process but a bridge (`dukatd.ray_bridge`), a child spawned and
watched here, linked by a socket pair (`dukatd.ray_link`): Ray ends a driver whose cluster
head is gone too long, and that must not end the daemon. While no bridge is connected —
starting, or the cluster unreachable — Submit of exec tasks is UNAVAILABLE naming the Ray
address, exec tasks accepted before wait READY (holding no slot) until it is back, and
everything else is served as usual; a lost bridge is replaced, after a backoff from
`RECONNECT_MIN` to `RECONNECT_MAX`.

Resources: Ray counts in absolute units, and so does the pool with this executor
(`dukatd.ray_resources` says how its names and capacities follow the cluster).

Attempts. Each is one Ray task (`max_retries=0`: retries are dukat's) running the process on
its node (`dukatd.ray_remote`), its output and progress coming back while it runs. Exit codes,
tails, `TaskProcessError`, timeouts and cancels behave as locally: a stop cancels the Ray
task, which stops the process group with the same SIGTERM-then-SIGKILL grace, and the
attempt ends only once it is stopped. A node or worker lost under an attempt is an
interruption (`TaskInterruptedError`, cause `node_lost`); a bridge lost with attempts running
is one too (cause `cluster_lost`: Ray ends the tasks of a driver that is gone). Other errors
of Ray (a runtime env that cannot be set up, the node out of memory) fail the attempt as a
`TaskFailedRemotely` whose type is Ray's exception's name; the retry policy decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import pickle
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from dukat.actions import ExecAction, ExecResult
from dukat.core.context import TaskContext
from dukat.core.resources import ResourcePool
from dukat.core.spec import JobSpec, TaskSpec
from dukat.daemon_status import RayClusterStatus
from dukat.errors import (
    FieldViolation,
    Refused,
    TaskFailedRemotely,
    TaskInterruptedError,
    TaskProcessError,
    ValidationError,
)
from dukatd.exec_runner import ExecOptions, exit_result, stopped_error
from dukatd.private_files import open_private
from dukatd.ray_link import read_message, write_message
from dukatd.ray_remote import RemoteAttempt
from dukatd.ray_resources import ClusterView, ray_need, ray_options_for

__all__ = ["RayExecutor"]

_log = logging.getLogger("dukatd.ray")

RECONNECT_MIN = 0.5
RECONNECT_MAX = 30.0


class _Attempt:
    __slots__ = ("context", "outcome", "stopped")

    def __init__(self, context: TaskContext, outcome: asyncio.Future[tuple[Any, ...]]) -> None:
        self.context = context
        self.outcome = outcome
        self.stopped = False  # by kill_all, not by the attempt's own cancel


class _Link:
    """One bridge process and the socket to it."""

    def __init__(self, process: subprocess.Popen[bytes], writer: asyncio.StreamWriter) -> None:
        self.process = process
        self.writer = writer

    def send(self, message: tuple[Any, ...]) -> None:
        write_message(self.writer, message)

    def close(self) -> None:
        self.writer.close()
        if self.process.poll() is None:
            self.process.kill()


class RayExecutor:
    """Runs `ExecAction`s on a Ray cluster; register it with `Scheduler(runners=...)` and
    `await start()` before the scheduler runs anything.

    `pool` is the scheduler's: its capacities follow the cluster's (see the module
    docstring), `pinned` being the capacities given with `--resource`; `task_spec` is the
    scheduler's too (`Scheduler.task_spec`): a task's resources are asked of Ray as well.
    `before_spawn` as for `ExecRunner`: awaited before each attempt is sent (the journal's
    `settled`).

    `job_file` (in the state directory) keeps the Ray job of the last bridge that connected:
    a bridge started after a crash, or after the one before was lost, waits until Ray has
    that job for dead before it says hello, since Ray ends a dead driver's tasks then (and
    their wardens their processes): no attempt runs again while the one it replaces may
    still run.
    """

    def __init__(
        self,
        address: str,
        pool: ResourcePool,
        options: ExecOptions | None = None,
        *,
        task_spec: Callable[[str, str], TaskSpec],
        pinned: Mapping[str, float] | None = None,
        refresh_interval: float = 10.0,
        connect_timeout: float = 30.0,
        before_spawn: Callable[[], Awaitable[object]] | None = None,
        job_file: Path | None = None,
        python: str = sys.executable,
    ) -> None:
        self.address = address
        self.options = options or ExecOptions()
        self.pool = pool
        self._task_spec = task_spec
        self.cluster = ClusterView(pinned=dict(pinned or {}))
        self.refresh_interval = refresh_interval
        self.connect_timeout = connect_timeout
        self._before_spawn = before_spawn
        self._python = python
        self._job_file = job_file
        self._previous_job = _read_job(job_file)
        self._keys = itertools.count(1)
        self._live: dict[int, _Attempt] = {}
        self._link: _Link | None = None
        self._connected = asyncio.Event()
        self._admissions: list[asyncio.Future[None]] = []
        self._supervisor: asyncio.Task[None] | None = None
        self._closed = False
        self.why_unavailable = "not connected yet"
        self.info: dict[str, Any] = {}
        """What the bridge said when it connected: ray_version, job_id, address."""
        self._ray_names = self.cluster.names
        self._followed: set[str] = set()  # the pool's resources that follow the cluster

    # -- the connection ---------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._link is not None and self._connected.is_set()

    async def start(self) -> bool:
        """Start the bridge, and wait up to `connect_timeout` for it to connect; whether it
        did (if not, it goes on trying in the background)."""
        self._supervisor = asyncio.create_task(self._supervise(), name="dukatd-ray-bridge")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), self.connect_timeout)
        return self.connected

    async def _supervise(self) -> None:
        delay = RECONNECT_MIN
        while not self._closed:
            try:
                connected = await self._session()
            except Exception as error:
                connected = False
                self._lose(f"the Ray bridge failed: {error}")
                _log.exception("the Ray bridge failed")
            if self._closed:
                return
            delay = RECONNECT_MIN if connected else min(delay * 2, RECONNECT_MAX)
            await asyncio.sleep(delay)

    async def _session(self) -> bool:
        """One bridge, from its start to its end; whether it connected."""
        ours, theirs = socket.socketpair()
        with theirs:
            process = self._spawn_bridge(theirs.fileno())
        reader, writer = await asyncio.open_connection(sock=ours)
        link = _Link(process, writer)
        connected = False
        try:
            hello = await asyncio.wait_for(read_message(reader), self.connect_timeout)
        except TimeoutError:
            hello = ("failed", f"no answer within {self.connect_timeout:g}s")
        try:
            if hello is None or hello[0] != "hello":
                why = hello[1] if hello else "the Ray bridge exited while connecting"
                self._lose(f"cannot connect: {why}")
                _log.warning("Ray cluster at %s: cannot connect: %s", self.address, why)
                return False
            connected = True
            self._on_hello(link, hello[1])
            while (message := await read_message(reader)) is not None:
                self._on_message(message)
            if not self._closed:
                _log.warning("Ray cluster at %s: the bridge exited; reconnecting", self.address)
            self._lose("the Ray bridge exited (the cluster's head may be down)")
            return connected
        finally:
            link.close()
            await asyncio.to_thread(process.wait)

    def _spawn_bridge(self, fd: int) -> subprocess.Popen[bytes]:
        argv = [self._python, "-m", "dukatd.ray_bridge", "--fd", str(fd)]
        argv += ["--address", self.address, "--refresh-interval", str(self.refresh_interval)]
        if self._previous_job:  # its attempts run again only once Ray has ended them
            argv += ["--after-job", self._previous_job]
        env = None
        if self.address == "local":
            # A Ray of its own listens on loopback only: Ray would take this host's outside
            # address (and listen on every interface) unless told it is not a cluster.
            env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
        return subprocess.Popen(argv, pass_fds=(fd,), stdin=subprocess.DEVNULL, env=env)

    def _on_hello(self, link: _Link, info: dict[str, Any]) -> None:
        self.info = info
        self._previous_job = info["job_id"]
        if self._job_file is not None:
            _write_job(self._job_file, info["job_id"])
        self._link = link
        self._on_nodes(info["nodes"])
        self._connected.set()
        admissions, self._admissions = self._admissions, []
        for future in admissions:
            if not future.done():
                future.set_result(None)
        _log.info(
            "Ray cluster at %s connected (Ray %s, driver job %s): %d node(s), %s",
            info.get("address") or self.address,
            info.get("ray_version"),
            info.get("job_id"),
            len(self.cluster.nodes),
            ", ".join(f"{n} {c:g}" for n, c in sorted(self.cluster.capacities().items())),
        )

    def _on_nodes(self, nodes: list[tuple[str, dict[str, float]]]) -> None:
        self.cluster.update(nodes)
        self._ray_names = self.cluster.names
        capacities = self.cluster.capacities()
        for name in self._followed - capacities.keys():  # no node has it any more
            capacities[name] = 0.0
        self._followed |= capacities.keys()
        for name, capacity in capacities.items():
            self.pool.set_capacity(name, capacity)

    def _on_message(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "events":
            attempt = self._live.get(message[1])
            if attempt is not None:
                _replay(attempt.context, message[2])
        elif kind == "done":
            attempt = self._live.get(message[1])
            if attempt is not None and not attempt.outcome.done():
                outcome = message[2]
                if outcome[0] == "exit":  # the process's last lines, before it ends
                    _replay(attempt.context, outcome[4])
                attempt.outcome.set_result(outcome)
        elif kind == "nodes":
            self._on_nodes(message[1])

    def _lose(self, why: str) -> None:
        """No bridge any more: the attempts it had are interrupted."""
        self._link = None
        self._connected.clear()
        self.why_unavailable = why
        for attempt in self._live.values():
            if not attempt.outcome.done():
                attempt.outcome.set_result(("interrupted", "cluster_lost", why))

    # -- what Submit checks -----------------------------------------------------------------

    def check_job(self, spec: JobSpec) -> None:
        """Refuse a job with exec tasks while the cluster cannot take them (UNAVAILABLE), or
        with a task whose Ray resources no single node has (ValidationError)."""
        exec_tasks = [task for task in spec.tasks if isinstance(task.action, ExecAction)]
        if not exec_tasks:
            return
        if not self.connected:
            raise Refused(
                "UNAVAILABLE",
                f"exec tasks run on the Ray cluster at {self.address}, which is unavailable "
                f"({self.why_unavailable}); submit again once it is back",
            )
        for index, task in enumerate(spec.tasks):
            if not isinstance(task.action, ExecAction):
                continue
            need = ray_need(task.resources, self._ray_names)
            if not self.cluster.fits_one_node(need):
                wanted = ", ".join(f"{name} {amount:g}" for name, amount in sorted(need.items()))
                raise ValidationError(
                    f"task {task.id!r} needs {wanted} on one node, and no node of the Ray "
                    f"cluster at {self.address} has that",
                    task_id=task.id,
                    violations=[
                        FieldViolation(f"tasks[{index}].resources", "fits no single Ray node")
                    ],
                )

    # -- the runner -------------------------------------------------------------------------

    def admit(self, context: TaskContext) -> asyncio.Future[None] | None:
        """Go now while connected; else wait READY, holding no slot, until the bridge is."""
        if self.connected or self._closed:
            return None
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._admissions.append(future)
        context.report_waiting(f"the Ray cluster at {self.address} ({self.why_unavailable})")
        return future

    def run(self, context: TaskContext) -> Awaitable[ExecResult]:
        return self._run(context)

    async def _run(self, context: TaskContext) -> ExecResult:
        action: ExecAction = context.action
        if self._before_spawn is not None:
            await self._before_spawn()
        if self._closed:
            raise TaskInterruptedError(
                "the Ray executor is shut down (the daemon is stopping)", cause="executor_stopped"
            )
        link = self._link
        if link is None or not self._connected.is_set():
            raise TaskInterruptedError(
                f"the Ray cluster at {self.address} is unavailable ({self.why_unavailable})",
                cause="cluster_lost",
            )
        key = next(self._keys)
        outcome: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()
        attempt = _Attempt(context, outcome)
        self._live[key] = attempt
        options = self.options
        remote = RemoteAttempt(
            argv=action.argv,
            env=dict(action.env),
            cwd=action.cwd,
            stdin=action.stdin,
            job_id=context.job_id,
            task_id=context.task_id,
            attempt=context.attempt,
            options=options,
            key=key,
        )
        resources = self._task_spec(context.job_id, context.task_id).resources
        ray_options = ray_options_for(resources, self._ray_names)
        ray_options["name"] = f"dukat {context.job_id}/{context.task_id} #{context.attempt}"
        try:
            link.send(("start", key, pickle.dumps(remote, pickle.HIGHEST_PROTOCOL), ray_options))
            try:
                ended = await asyncio.shield(outcome)
            except asyncio.CancelledError:
                await self._stop(key, link, outcome)
                raise
        finally:
            del self._live[key]
        return _result_of(action, ended, attempt.stopped)

    async def _stop(self, key: int, link: _Link, outcome: asyncio.Future[Any]) -> None:
        """Stop the attempt and wait until it has stopped (or its bridge is gone); a cancel
        meanwhile is kept for after, so that no process outlives its attempt unknown."""
        link.send(("stop", key, self.options.kill_grace))
        interrupted = False
        while not outcome.done():
            try:
                await asyncio.shield(outcome)
            except asyncio.CancelledError:
                interrupted = True
        if interrupted:
            raise asyncio.CancelledError

    async def kill_all(self, grace: float | None = None) -> int:
        """Refuse new attempts, stop every live one (SIGTERM, SIGKILL after `grace`), wait for
        them; then end the bridge. Returns how many there were. They end interrupted."""
        self._closed = True
        attempts = dict(self._live)
        link = self._link
        if link is not None:
            grace = self.options.kill_grace if grace is None else grace
            for key, attempt in attempts.items():
                attempt.stopped = True
                link.send(("stop", key, grace))
            await asyncio.gather(
                *(asyncio.shield(a.outcome) for a in attempts.values()), return_exceptions=True
            )
        await self.close()
        return len(attempts)

    def kill_all_now(self) -> int:
        """End the bridge without waiting: Ray ends the tasks of a driver that is gone, and
        each one's warden kills its process group."""
        self._closed = True
        for attempt in self._live.values():
            attempt.stopped = True
        admissions, self._admissions = self._admissions, []
        for future in admissions:  # they go on to `run`, which says the executor is shut
            if not future.done():
                future.set_result(None)
        if self._link is not None:
            self._link.close()
        if self._supervisor is not None:
            self._supervisor.cancel()
        return len(self._live)

    async def close(self) -> None:
        self.kill_all_now()
        if self._supervisor is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._supervisor

    def status(self) -> RayClusterStatus:
        """The cluster as `dukat status` shows it."""
        connected = self.connected
        return RayClusterStatus(
            address=self.address,
            connected=connected,
            unavailable_reason="" if connected else self.why_unavailable,
            nodes=len(self.cluster.nodes),
        )

    @property
    def live(self) -> int:
        """Attempts running now."""
        return len(self._live)

    def __repr__(self) -> str:
        state = "connected" if self.connected else f"unavailable ({self.why_unavailable})"
        return f"<RayExecutor {self.address} {state} live:{len(self._live)}>"


def _read_job(path: Path | None) -> str:
    try:
        return path.read_text().strip() if path is not None else ""
    except FileNotFoundError:
        return ""


def _write_job(path: Path, job_id: str) -> None:
    """Remember the bridge's Ray job for the daemon after this one (see `RayExecutor`)."""
    temporary = path.with_name(path.name + ".new")
    fd = open_private(temporary, os.O_WRONLY | os.O_TRUNC)
    with os.fdopen(fd, "w") as file:
        file.write(job_id)
    os.replace(temporary, path)


def _replay(context: TaskContext, events: list[tuple[Any, ...]]) -> None:
    for kind, first, second in events:
        if kind == "output":
            context.output(first, second)
        else:
            context.report_progress(first, second)


def _result_of(action: ExecAction, outcome: tuple[Any, ...], stopped: bool) -> ExecResult:
    """What an attempt's outcome makes of it: its result, or the error it raises."""
    kind = outcome[0]
    program = action.argv[0]
    if kind == "exit":
        _, code, stdout_tail, stderr_tail, _events = outcome
        return exit_result(program, code, stdout_tail, stderr_tail, stopped=stopped)
    if kind == "spawn_error":
        raise TaskProcessError(program, spawn_error=outcome[1])
    if kind == "interrupted":
        raise TaskInterruptedError(outcome[2], cause=outcome[1])
    if kind == "failed":
        raise TaskFailedRemotely(outcome[2], type=outcome[1])
    raise stopped_error(program)
