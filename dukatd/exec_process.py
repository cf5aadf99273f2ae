"""One task's process: spawned in a session of its own, watched through a pidfd, reaped.

Everything here is driven by event-loop callbacks (readable pipes, a readable pidfd), not
by the coroutine that awaits the process: the process is read and reaped even while that
coroutine is being cancelled, or if it is gone.

Invariants:
- The process leads a new session, so its process group id is its pid, and every process
  it starts without leaving the session can be signalled at once with `killpg`.
- The group is signalled only while the leader is unreaped. A reaped pid may be reused, and
  with it the group id; an unreaped one (a zombie) still pins the number.
- When the leader exits, whatever is left of its group is killed before the leader is
  reaped: a task's processes end with the task (see `dukatd.exec_runner`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence

from dukatd.exec_output import OutputPump

__all__ = ["LEADERS", "Child"]

_READ_SIZE = 65536

LEADERS: set[int] = set()
"""Pids of the task leaders spawned and not reaped yet: theirs to reap (dukatd.orphans)."""


class _Features:
    # pidfd_open needs Linux 5.3 and may be refused by a seccomp filter (some sandboxes);
    # the first refusal switches this process to a thread per child (see _watch_in_thread).
    pidfd = hasattr(os, "pidfd_open")


class Child:
    """A spawned task process, its output pipes and its exit.

    `returncode` is set when the leader has been reaped (negative: killed by that signal);
    `finished` once it is reaped and its pipes are closed.
    """

    __slots__ = (
        "_drain_timeout",
        "_drain_timer",
        "_kill_at",
        "_loop",
        "_pipes",
        "_popen",
        "_pump",
        "_stdin",
        "_stdin_fd",
        "_waiters",
        "pid",
        "returncode",
        "stopped",
    )

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: str | None,
        stdin: bytes,
        pump: OutputPump,
        drain_timeout: float,
    ) -> None:
        """Start the process. Raises OSError (or ValueError) if it cannot be started."""
        self._loop = asyncio.get_running_loop()
        self._pump = pump
        self._drain_timeout = drain_timeout
        self._drain_timer: asyncio.TimerHandle | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._kill_at: float | None = None  # when a stop escalates to SIGKILL
        self.returncode: int | None = None
        self.stopped = False  # a stop was asked for (timeout, cancel, shutdown)
        self._stdin = memoryview(stdin)
        self._popen, self._pipes, self._stdin_fd = _spawn(argv, env, cwd, bool(stdin))
        self.pid: int = self._popen.pid
        LEADERS.add(self.pid)
        loop = self._loop
        loop.add_reader(self._pipes[0], self._read, 0)
        loop.add_reader(self._pipes[1], self._read, 1)
        if self._stdin_fd >= 0:
            self._write_stdin()
        self._watch_exit()

    @property
    def finished(self) -> bool:
        return self.returncode is not None and self._pipes[0] < 0 and self._pipes[1] < 0

    async def wait(self) -> int:
        """Wait until the process is reaped and its pipes are closed; its exit code."""
        while not self.finished:
            await self._changed()
        return self.returncode  # type: ignore[return-value]  # set when finished

    async def stop(self, grace: float) -> None:
        """SIGTERM the group, SIGKILL it after `grace` seconds; return once it is reaped.

        Idempotent, and shared: SIGTERM goes once, and a second stop (a shutdown during a
        timeout) can only bring the SIGKILL deadline forward. A cancel while waiting goes to
        SIGKILL at once, and the cancel is re-raised only after the process is reaped, so
        no caller leaves a zombie behind.
        """
        interrupted = False
        loop = self._loop
        deadline = loop.time() + grace
        if self._kill_at is None:
            self.stopped = True
            self._kill_at = deadline
            self.signal_group(signal.SIGTERM)
        elif deadline < self._kill_at:
            self._kill_at = deadline
        while self.returncode is None and loop.time() < self._kill_at:
            try:
                await self._changed(self._kill_at - loop.time())
            except asyncio.CancelledError:
                interrupted = True
                break
        self.signal_group(signal.SIGKILL)
        while not self.finished:
            try:
                await self._changed()
            except asyncio.CancelledError:
                interrupted = True
        if interrupted:
            raise asyncio.CancelledError

    def signal_group(self, signum: int) -> None:
        """Send `signum` to the process group, unless the leader is already reaped."""
        if self.returncode is None:
            _killpg(self.pid, signum)

    # -- callbacks --------------------------------------------------------------------------

    def _changed(self, timeout: float | None = None) -> asyncio.Future[None]:
        """A future resolved at the next change (exit, pipe closed) or after `timeout`."""
        future = self._loop.create_future()
        self._waiters.append(future)
        if timeout is not None:
            timer = self._loop.call_later(timeout, _resolve, future)
            future.add_done_callback(lambda _: timer.cancel())
        return future

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for future in waiters:
            _resolve(future)

    def _read(self, stream: int) -> None:
        fd = self._pipes[stream]
        try:
            data = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""  # treat a broken pipe like its end
        if data:
            self._pump.feed(stream, data)
        else:
            self._close_pipe(stream)

    def _close_pipe(self, stream: int) -> None:
        fd = self._pipes[stream]
        self._loop.remove_reader(fd)
        os.close(fd)
        self._pipes[stream] = -1
        if self._pipes[0] < 0 and self._pipes[1] < 0:
            if self._drain_timer is not None:
                self._drain_timer.cancel()
                self._drain_timer = None
            if self.returncode is not None:
                self._notify()

    def _write_stdin(self, registered: bool = False) -> None:
        fd = self._stdin_fd
        try:
            written = os.write(fd, self._stdin)
        except BlockingIOError:
            written = 0
        except OSError:  # EPIPE: the process closed its stdin or is gone; it had its chance
            self._close_stdin()
            return
        self._stdin = self._stdin[written:]
        if not self._stdin:
            self._close_stdin()
        elif not registered:  # more than the pipe holds: go on when the process reads
            self._loop.add_writer(fd, self._write_stdin, True)

    def _close_stdin(self) -> None:
        if self._stdin_fd >= 0:
            self._loop.remove_writer(self._stdin_fd)
            os.close(self._stdin_fd)
            self._stdin_fd = -1
            self._stdin = memoryview(b"")

    def _watch_exit(self) -> None:
        if _Features.pidfd:
            try:
                pidfd = os.pidfd_open(self.pid)
            except OSError:
                _Features.pidfd = False
            else:
                self._loop.add_reader(pidfd, self._on_pidfd, pidfd)
                return
        self._watch_in_thread()

    def _on_pidfd(self, pidfd: int) -> None:
        self._loop.remove_reader(pidfd)
        os.close(pidfd)
        self._exited()

    def _watch_in_thread(self) -> None:
        # WNOWAIT: wait for the exit without reaping, so the group id stays pinned until
        # _exited has killed the rest of the group on the loop's thread.
        loop, pid = self._loop, self.pid

        def watch() -> None:
            with contextlib.suppress(ChildProcessError):
                os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is left to reap it
                loop.call_soon_threadsafe(self._exited)

        threading.Thread(target=watch, name=f"dukatd-wait-{pid}", daemon=True).start()

    def _exited(self) -> None:
        """The leader has exited and is not reaped yet: end its group, then reap it."""
        _killpg(self.pid, signal.SIGKILL)  # what it left running ends with it
        try:
            _, status = os.waitpid(self.pid, 0)  # it has exited: this does not block
            code = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            # Reaped behind our back (SIGCHLD set to SIG_IGN by someone): the status is lost.
            code = 255
        LEADERS.discard(self.pid)
        self.returncode = self._popen.returncode = code  # Popen would warn if it never knew
        self._close_stdin()
        if self._pipes[0] >= 0 or self._pipes[1] >= 0:
            # Something outside the group (it left the session) may hold the pipes open.
            self._drain_timer = self._loop.call_later(self._drain_timeout, self._drain)
        self._notify()

    def _drain(self) -> None:
        """Read what is buffered in the pipes still open, then close them."""
        self._drain_timer = None
        for stream in (0, 1):
            while self._pipes[stream] >= 0:
                try:
                    data = os.read(self._pipes[stream], _READ_SIZE)
                except OSError:
                    data = b""
                if not data:
                    self._close_pipe(stream)
                else:
                    self._pump.feed(stream, data)

    def __repr__(self) -> str:
        state = "running" if self.returncode is None else f"exited {self.returncode}"
        return f"<Child pid {self.pid} {state}{' stopping' if self.stopped else ''}>"


def _killpg(pgid: int, signum: int) -> bool:
    """Signal a process group; False if nothing of it was left to signal."""
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _spawn(
    argv: Sequence[str], env: Mapping[str, str], cwd: str | None, with_stdin: bool
) -> tuple[subprocess.Popen[bytes], list[int], int]:
    """Start `argv` in a new session: (its Popen, [stdout, stderr] read ends, stdin write end).

    Popen rather than posix_spawn: it does the same vfork+exec (no copy of the daemon's page
    tables, no fork handlers run) at the same speed, and also closes inherited descriptors,
    changes directory, and reports a failed exec as an OSError here.
    """
    stdout_r, stdout_w = os.pipe2(os.O_CLOEXEC)
    stderr_r, stderr_w = os.pipe2(os.O_CLOEXEC)
    stdin_r, stdin_w = os.pipe2(os.O_CLOEXEC) if with_stdin else (-1, -1)
    try:
        popen = subprocess.Popen(
            argv,
            stdin=stdin_r if with_stdin else subprocess.DEVNULL,
            stdout=stdout_w,
            stderr=stderr_w,
            cwd=cwd,
            env=env,
            close_fds=True,
            start_new_session=True,  # setsid: own group, and no controlling terminal
        )
    except BaseException:
        for fd in (stdout_r, stderr_r, stdin_w):
            if fd >= 0:
                os.close(fd)
        raise
    finally:
        for fd in (stdout_w, stderr_w, stdin_r):  # the child has its own copies now
            if fd >= 0:
                os.close(fd)
    # Only our ends are non-blocking: O_NONBLOCK lives on the open file description, and
    # the child's ends must stay blocking for the programs that write to them.
    os.set_blocking(stdout_r, False)
    os.set_blocking(stderr_r, False)
    if stdin_w >= 0:
        os.set_blocking(stdin_w, False)
    return popen, [stdout_r, stderr_r], stdin_w
