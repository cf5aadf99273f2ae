"""systemd's notify protocol with the standard library: READY, STOPPING, STATUS, WATCHDOG.

The protocol (sd_notify(3)) is one datagram of newline-separated `NAME=value` assignments sent
to the AF_UNIX socket named by `$NOTIFY_SOCKET`: a path, or `@name` for the abstract namespace.
When the variable is unset (not under systemd, or not Type=notify) every call is a no-op, so the
daemon calls these unconditionally.

The watchdog: with `WatchdogSec=` systemd sets `$WATCHDOG_USEC` (and `$WATCHDOG_PID`, the
process meant) and kills the service when no `WATCHDOG=1` arrives for that long.
`Notifier.start_watchdog()` pings from a task on the daemon's event loop at half the interval,
so a loop that is stuck (a blocking call, a runaway callback) stops the pings and gets the
daemon restarted, which is the point: a thread would keep pinging for a dead daemon.

Sending never blocks and never raises: the socket is non-blocking, and a failed send is logged
and reported as False. A supervisor that went away must not take the daemon down with it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, MutableMapping

__all__ = ["Notifier", "watchdog_timeout"]

_log = logging.getLogger(__name__)

_NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def watchdog_timeout(
    environ: MutableMapping[str, str] | None = None, *, pid: int | None = None
) -> float | None:
    """Seconds systemd waits for a watchdog ping, or None when there is no watchdog for us.

    None when `$WATCHDOG_USEC` is unset, not a positive integer, or when `$WATCHDOG_PID` names
    another process (the variables were inherited from a parent that systemd watches).
    """
    environ = os.environ if environ is None else environ
    usec = environ.get("WATCHDOG_USEC", "").strip()
    if not usec:
        return None
    if not usec.isdigit() or int(usec) == 0:
        _log.warning("ignoring WATCHDOG_USEC=%r: not a positive number of microseconds", usec)
        return None
    meant_for = environ.get("WATCHDOG_PID", "").strip()
    if meant_for and meant_for != str(os.getpid() if pid is None else pid):
        return None
    return int(usec) / 1_000_000


class Notifier:
    """Sends notify datagrams to one socket; does nothing when there is none."""

    def __init__(self, address: str | None, *, watchdog_timeout: float | None = None) -> None:
        """`address` is `$NOTIFY_SOCKET`'s value: `/path`, `@abstract`, or None for no-op."""
        self.address = address or None
        self.watchdog_timeout = watchdog_timeout
        self._target: str | None = None
        if self.address is not None:
            if self.address.startswith("@"):
                # The abstract namespace: a leading NUL instead of the '@', no file involved.
                self._target = "\0" + self.address[1:]
            elif self.address.startswith("/"):
                self._target = self.address
            else:
                # vsock: and other forms of newer systemd, which the stdlib cannot all reach.
                _log.warning("NOTIFY_SOCKET=%r is not a unix socket path; not notifying", address)
        self._socket: socket.socket | None = None
        self._failing = False

    @classmethod
    def from_environ(
        cls, environ: MutableMapping[str, str] | None = None, *, unset: bool = False
    ) -> Notifier:
        """A Notifier for `$NOTIFY_SOCKET` and the watchdog variables.

        `unset=True` removes those variables from `environ` (like sd_notify's
        unset_environment), so that task subprocesses do not inherit them and talk to systemd
        on the daemon's behalf.
        """
        environ = os.environ if environ is None else environ
        notifier = cls(environ.get("NOTIFY_SOCKET"), watchdog_timeout=watchdog_timeout(environ))
        if unset:
            for name in _NOTIFY_VARIABLES:
                environ.pop(name, None)
        return notifier

    @property
    def enabled(self) -> bool:
        return self._target is not None

    def notify(self, *assignments: str) -> bool:
        """Send `NAME=value` assignments in one datagram; True if it was sent."""
        for assignment in assignments:
            if "=" not in assignment or "\n" in assignment:
                raise ValueError(f"expected one NAME=value without newlines, not {assignment!r}")
        if self._target is None or not assignments:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                # A full receive queue must drop a ping, not stall the event loop.
                self._socket.setblocking(False)
            self._socket.sendto("\n".join(assignments).encode(), self._target)
        except OSError as error:
            # Warn once per run of failures: a watchdog ping every few seconds would flood.
            level = logging.DEBUG if self._failing else logging.WARNING
            _log.log(level, "cannot notify %s: %s", self.address, error)
            self._failing = True
            return False
        if self._failing:
            _log.info("notifying %s works again", self.address)
            self._failing = False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Start-up is done: systemd considers the service started (Type=notify)."""
        return self.notify("READY=1", *_status(status))

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown has begun: `systemctl status` shows the unit deactivating."""
        return self.notify("STOPPING=1", *_status(status))

    def reloading(self) -> bool:
        """A reload (SIGHUP) has begun; send `ready()` when it is done.

        MONOTONIC_USEC is what Type=notify-reload requires with RELOADING=1.
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def status(self, text: str) -> bool:
        """A one-line status shown by `systemctl status`."""
        return self.notify(*_status(text))

    def watchdog(self) -> bool:
        """One keep-alive ping."""
        return self.notify("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for more time to start or stop (a long journal recovery, say)."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={max(0, round(seconds * 1_000_000))}")

    def start_watchdog(
        self,
        *,
        healthy: Callable[[], bool] | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> asyncio.Task[None] | None:
        """Ping at half the watchdog timeout from the running loop; None when there is no
        watchdog. Cancel the task to stop. `healthy`, when given, is asked before each ping:
        False skips it, so a daemon that is alive but wedged gets restarted too.
        """
        if self.watchdog_timeout is None or not self.enabled:
            return None
        return asyncio.get_running_loop().create_task(
            self._feed_watchdog(self.watchdog_timeout / 2, healthy, sleep),
            name="dukatd-watchdog",
        )

    async def _feed_watchdog(
        self,
        interval: float,
        healthy: Callable[[], bool] | None,
        sleep: Callable[[float], Awaitable[object]],
    ) -> None:
        while True:
            if healthy is None or healthy():
                self.watchdog()
            else:
                _log.warning("not pinging the watchdog: the daemon reports itself unhealthy")
            await sleep(interval)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __repr__(self) -> str:
        watchdog = f" watchdog:{self.watchdog_timeout:g}s" if self.watchdog_timeout else ""
        return f"<Notifier {self.address or 'off'}{watchdog}>"


def _status(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    # STATUS is one line: a newline would start a new (bogus) assignment.
    return ("STATUS=" + " ".join(text.splitlines()),)
