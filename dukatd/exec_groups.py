"""A ledger of the process groups of running tasks, so a restarted daemon can kill leftovers.

A daemon that stops cleanly kills its tasks' groups itself (`ExecRunner.kill_all`). One that
is killed with SIGKILL, or crashes, cannot: its tasks' sessions live on, re-parented to init,
while the restarted daemon runs the same tasks again. So every live group is recorded in a
log in a directory of the state dir: a line `+<pgid> <start time>` appended when the process
starts, `-<pgid>` when it is reaped; `GroupLedger.open` kills what the log leaves live. One
`write` per start and per end of an appended, always-open file: a file made and removed per
task cost several times that (directory entries, inodes), on every exec task. The log is
rewritten with only the live groups when it has grown long (`_compact`).

Why the start time, and why that is enough: pid numbers are reused (pid_max can be 32768),
so a recorded number alone could name a stranger. The start time of the session leader (in
clock ticks since boot, from /proc/<pid>/stat) tells ours from a reuse, and a session that
outlived its leader is still ours: Linux does not hand out a pid while it is in use as a
process group or session id, so the number cannot have been reused while any of our
processes still carry it (the one gap: our session ended, the number went round to a
stranger's session, and its leader died too — all while the daemon was down). The start
recorded is read just before the spawn (`boot_ticks`, the clock /proc counts in), not from
/proc after it, which costs tens of microseconds while the child is still exec-ing; so a
leader matches when it started within `_START_SLACK` ticks after it (a stranger would have
to take the same number within those 50 ms). Processes are killed through a pidfd opened
before the check, so one that exits between the check and the signal cannot be replaced by
another.

No fsync: only a reboot loses the page cache, and a reboot has ended the tasks too (the
ledger remembers the boot id and throws away the records of an earlier boot). A daemon of
the version before kept a file `<pgid>-<start time>` per group: those are read (and
removed) too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from dukatd.private_files import open_private

__all__ = ["GroupLedger", "recorded"]

_BOOT_ID = "/proc/sys/kernel/random/boot_id"
_BOOT_FILE = "boot_id"
_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
_START_SLACK = 5
"""Ticks a recorded start may precede the leader's real one: a start taken before the spawn
(`boot_ticks`) is at most the spawn's own time earlier, a tick or two."""
_LOG = "groups.log"


class _Stat(NamedTuple):
    session: int
    start: int  # clock ticks after boot


class GroupLedger:
    """Records live task process groups in `directory`; see the module docstring.

    Make it with `GroupLedger.open(directory)` when the daemon starts, before any task runs;
    `killed` then lists the pids of the leftovers it killed.
    """

    COMPACT_AFTER = 1_000
    """Lines in the log before it may be rewritten (once four times the live groups)."""

    def __init__(self, directory: Path, *, killed: list[int]) -> None:
        self.directory = directory
        self.killed = killed
        self._live: dict[int, int] = {}  # pgid -> its leader's start time
        self._fd = _open_log(directory / _LOG, truncate=True)
        self._lines = 0

    @classmethod
    def open(cls, directory: str | os.PathLike[str]) -> GroupLedger:
        """Kill the leftovers recorded in `directory` by an earlier daemon; start afresh."""
        path = Path(directory)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        boot_id = _read(_BOOT_ID).strip()
        killed: list[int] = []
        records, old_files = _records(path)
        if records and _read(path / _BOOT_FILE).strip() == boot_id:
            killed = _kill_sessions(records)
        for name in old_files:
            with contextlib.suppress(FileNotFoundError):
                (path / name).unlink()
        fd = open_private(path / _BOOT_FILE, os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, (boot_id + "\n").encode())
        finally:
            os.close(fd)
        return cls(path, killed=killed)

    def add(self, pgid: int, started_after: int | None = None) -> None:
        """Record the group of a process just started (in a session of its own).

        `started_after`: `boot_ticks()` read just before the process was spawned; without
        it the start is read from /proc, which for a process that is still exec-ing costs
        the caller tens of microseconds.
        """
        if started_after is None:
            stat = _stat(pgid)
            if stat is None:
                return  # gone already: nothing to leave behind
            started_after = stat.start
        self._live[pgid] = started_after
        self._append(f"+{pgid} {started_after}\n")

    def discard(self, pgid: int) -> None:
        """Forget a group whose leader has been reaped (and the rest of it killed)."""
        if self._live.pop(pgid, None) is not None:
            self._append(f"-{pgid}\n")

    def close(self) -> None:
        """Stop writing (what is live stays recorded, for the next daemon)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _append(self, line: str) -> None:
        if self._fd < 0:
            return
        os.write(self._fd, line.encode())
        self._lines += 1
        if self._lines >= self.COMPACT_AFTER and self._lines >= 4 * len(self._live):
            self._compact()

    def _compact(self) -> None:
        """Rewrite the log with only the live groups: a new file renamed over the old, so a
        crash at any point leaves one or the other, whole."""
        fresh = self.directory / (_LOG + ".new")
        fd = _open_log(fresh, truncate=True)
        try:
            os.write(fd, "".join(f"+{p} {s}\n" for p, s in self._live.items()).encode())
        finally:
            os.close(fd)
        os.replace(fresh, self.directory / _LOG)
        os.close(self._fd)
        self._fd = _open_log(self.directory / _LOG, truncate=False)
        self._lines = len(self._live)

    def __len__(self) -> int:
        return len(self._live)

    def __repr__(self) -> str:
        return f"<GroupLedger {str(self.directory)!r} live:{len(self._live)}>"


def boot_ticks() -> int:
    """Now, in the unit and from the origin of /proc/<pid>/stat's start time."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * _TICKS_PER_SECOND)


def recorded(directory: str | os.PathLike[str]) -> list[tuple[int, int]]:
    """(pgid, start time) of the groups a ledger in `directory` leaves recorded as live."""
    return [(record.session, record.start) for record in _records(Path(directory))[0]]


def _open_log(path: Path, *, truncate: bool) -> int:
    return open_private(path, os.O_WRONLY | os.O_APPEND | (os.O_TRUNC if truncate else 0))


def _records(directory: Path) -> tuple[list[_Stat], list[str]]:
    """The groups recorded live, as (session id, leader start time), and the file names of
    the previous version's records (to remove once acted on)."""
    live: dict[int, int] = {}
    old_files = []
    for entry in os.scandir(directory):
        pgid, dash, start = entry.name.partition("-")
        if dash and pgid.isdigit() and start.isdigit():
            live[int(pgid)] = int(start)
            old_files.append(entry.name)
    log = _read(directory / _LOG, limit=None)
    for line in log.splitlines():
        sign, _, rest = line.partition(" ") if line.startswith("+") else (line, "", "")
        if sign.startswith("+") and sign[1:].isdigit() and rest.isdigit():
            live[int(sign[1:])] = int(rest)
        elif sign.startswith("-") and sign[1:].isdigit():
            live.pop(int(sign[1:]), None)
        # anything else: a line cut short by a crash of the host, or not ours
    return [_Stat(pgid, start) for pgid, start in live.items()], old_files


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
            if leader_now is not None and not _ours(leader_now.start, start):
                continue  # the number leads someone else's session now: ours is over
        elif not _ours(leader, start):
            continue
        for pid, pid_start in members:
            # Every process of our session started after its leader did.
            if pid_start >= start and _kill(pid, session, pid_start):
                killed.append(pid)
    return sorted(killed)


def _ours(start: int, recorded: int) -> bool:
    """Whether a leader that started at `start` is the one recorded as started at
    `recorded` (read from /proc, or taken just before its spawn: `_START_SLACK`)."""
    return recorded <= start <= recorded + _START_SLACK


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


def _read(path: str | os.PathLike[str], limit: int | None = 4096) -> str:
    # os.read rather than open(): add() reads a stat file for every task started.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return ""
    try:
        if limit is not None:
            return os.read(fd, limit).decode("ascii", "replace")
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks).decode("ascii", "replace")
    except ProcessLookupError:  # exited between open and read
        return ""
    finally:
        os.close(fd)
