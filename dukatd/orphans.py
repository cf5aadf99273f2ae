"""Reaping orphans when dukatd is PID 1: a container started without an init.

A process whose parent exits is handed to PID 1, whose job it is to reap it when it exits.
An exec task that leaves background children behind (`sh -c 'worker & exit 0'`) does that:
its group is killed with it (`dukatd.exec_process`), and the corpses of its children go to
PID 1. Under an init (`docker run --init`, tini, systemd) that is the init; when dukatd itself
is PID 1, nobody else will reap them, and each stays a `<defunct>` entry in the process table
until the container ends.

So dukatd, as PID 1, reaps every exited child that is not a task's leader: those it leaves
to their `Child`, which reaps them itself, since their exit status is the task's outcome.
The corpses are found in /proc (state Z, parent us), so a leader is never taken by mistake.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Container

__all__ = ["OrphanReaper"]

_log = logging.getLogger(__name__)


class OrphanReaper:
    """Reaps, every `interval` seconds, the exited children that `leaders` does not hold."""

    def __init__(self, leaders: Container[int], *, interval: float = 1.0) -> None:
        self.leaders = leaders
        self.interval = interval
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    def needed(cls) -> bool:
        """True when this process is PID 1 of its namespace: nobody reaps for it."""
        return os.getpid() == 1

    def start(self) -> None:
        _log.info("dukatd is PID 1: it reaps the orphaned processes of tasks itself")
        self._schedule()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def reap(self) -> int:
        """Reap the exited children that are not task leaders; how many."""
        reaped = 0
        for pid in _exited_children():
            if pid in self.leaders:
                continue  # its Child reaps it: the exit status is the task's outcome
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    reaped += 1
        return reaped

    def _schedule(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self.interval, self._tick)

    def _tick(self) -> None:
        self.reap()
        self._schedule()


def _exited_children() -> list[int]:
    """Pids of this process's children that have exited and wait to be reaped (zombies),
    from /proc: `waitid` would name one at a time, and stop at a leader."""
    me = os.getpid()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if fields[0] == b"Z" and int(fields[1]) == me:
            found.append(int(entry.name))
    return found
