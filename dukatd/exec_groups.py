"""A ledger of the process groups of running tasks, so a restarted daemon can kill leftovers.

A daemon that stops cleanly kills its tasks' groups itself (`ExecRunner.kill_all`). One that
is killed with SIGKILL, or crashes, cannot: its tasks' sessions live on, re-parented to init,
while the restarted daemon runs the same tasks again. So every live group is recorded as an
empty file `<pgid>-<start time>` in a directory of the state dir, made when the process
starts and removed when it is reaped; `GroupLedger.open` kills what the files name.

Why the start time, and why that is enough: pid numbers are reused (pid_max can be 32768),
so a recorded number alone could name a stranger. The start time of the session leader (in
clock ticks since boot, from /proc/<pid>/stat) tells ours from a reuse, and a session that
outlived its leader is still ours: Linux does not hand out a pid while it is in use as a
process group or session id, so the number cannot have been reused while any of our
processes still carry it (the one gap: our session ended, the number went round to a
stranger's session, and its leader died too — all while the daemon was down). Processes
are killed through a pidfd opened before the check, so one that exits between the check and
the signal cannot be replaced by another.

No fsync: only a reboot loses the page cache, and a reboot has ended the tasks too (the
ledger remembers the boot id and throws away the files of an earlier boot).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

__all__ = ["GroupLedger"]

_BOOT_ID = "/proc/sys/kernel/random/boot_id"
_BOOT_FILE = "boot_id"


class _Stat(NamedTuple):
    session: int
    start: int  # clock ticks after boot


class GroupLedger:
    """Records live task process groups in `directory`; see the module docstring.

    Make it with `GroupLedger.open(directory)` when the daemon starts, before any task runs;
    `killed` then lists the pids of the leftovers it killed.
    """

    def __init__(self, directory: Path, *, killed: list[int]) -> None:
        self.directory = directory
        self.killed = killed
        self._names: dict[int, str] = {}  # pgid -> its file's name

    @classmethod
    def open(cls, directory: str | os.PathLike[str]) -> GroupLedger:
        """Kill the leftovers recorded in `directory` by an earlier daemon; start afresh."""
        path = Path(directory)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        boot_id = _read(_BOOT_ID).strip()
        killed: list[int] = []
        records = _records(path)
        if records and _read(path / _BOOT_FILE).strip() == boot_id:
            killed = _kill_sessions(records.values())
        for name in records:
            with contextlib.suppress(FileNotFoundError):
                (path / name).unlink()
        (path / _BOOT_FILE).write_text(boot_id + "\n")
        return cls(path, killed=killed)

    def add(self, pgid: int) -> None:
        """Record the group of a process just started (in a session of its own)."""
        stat = _stat(pgid)
        if stat is None:
            return  # gone already: nothing to leave behind
        name = f"{pgid}-{stat.start}"
        fd = os.open(self.directory / name, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600)
        os.close(fd)
        self._names[pgid] = name

    def discard(self, pgid: int) -> None:
        """Forget a group whose leader has been reaped (and the rest of it killed)."""
        name = self._names.pop(pgid, None)
        if name is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.directory / name)

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return f"<GroupLedger {str(self.directory)!r} live:{len(self._names)}>"


def _records(directory: Path) -> dict[str, _Stat]:
    """The recorded groups, by file name, as (session id, leader start time)."""
    records = {}
    for entry in os.scandir(directory):
        pgid, dash, start = entry.name.partition("-")
        if dash and pgid.isdigit() and start.isdigit():
            records[entry.name] = _Stat(int(pgid), int(start))
    return records


def _kill_sessions(records: Iterable[_Stat]) -> list[int]:
    """SIGKILL every process of the recorded sessions that is still there; their pids."""
    wanted = {record.session: record.start for record in records}
    by_session: dict[int, list[tuple[int, int]]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is not None and stat.session in wanted:
            by_session.setdefault(stat.session, []).append((int(entry.name), stat.start))
    killed = []
    for session, start in wanted.items():
        members = by_session.get(session, [])
        leader = next((s for pid, s in members if pid == session), None)
        if leader is None:
            leader_now = _stat(session)
            if leader_now is not None and leader_now.start != start:
                continue  # the number leads someone else's session now: ours is over
        elif leader != start:
            continue
        for pid, pid_start in members:
            # Every process of our session started after its leader did.
            if pid_start >= start and _kill(pid, session, pid_start):
                killed.append(pid)
    return sorted(killed)


def _kill(pid: int, session: int, start: int) -> bool:
    """SIGKILL `pid` if it is still the process that was seen (same session, same start)."""
    try:
        pidfd = os.pidfd_open(pid)
    except (ProcessLookupError, AttributeError, OSError):
        pidfd = -1
    try:
        if _stat(pid) != (session, start):  # checked after pinning it with the pidfd
            return False
        if pidfd >= 0:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)  # no pidfds here: a tiny window for reuse remains
        return True
    except ProcessLookupError:
        return False
    finally:
        if pidfd >= 0:
            os.close(pidfd)


def _stat(pid: int) -> _Stat | None:
    """Session id and start time of `pid`, from /proc; None if it is gone."""
    text = _read(f"/proc/{pid}/stat")
    if not text:
        return None
    # The command name (field 2) is in parentheses and may hold anything, spaces included.
    fields = text[text.rindex(")") + 2 :].split()
    return _Stat(int(fields[3]), int(fields[19]))


def _read(path: str | os.PathLike[str]) -> str:
    # os.read rather than open(): add() reads a stat file for every task started.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return ""
    try:
        return os.read(fd, 4096).decode("ascii", "replace")
    except ProcessLookupError:  # exited between open and read
        return ""
    finally:
        os.close(fd)
