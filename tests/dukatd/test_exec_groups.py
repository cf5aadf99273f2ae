"""dukatd.exec_groups: a restarted daemon kills the sessions a dead one left, and only those.

A "dead daemon" here is a ledger that recorded a session and was never told it ended; the
sessions are real process trees started by this test.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dukatd.exec_groups import GroupLedger, boot_ticks, recorded
from tests.dukatd.processes import (
    alive,
    group_members,
    no_child_left,  # noqa: F401 - an autouse fixture
)


def start_time(pid: int) -> int:
    text = Path(f"/proc/{pid}/stat").read_text()
    return int(text[text.rindex(")") + 2 :].split()[19])


def wait_until(predicate: Callable[[], object], within: float = 5.0) -> None:
    """A sync test's wait on a condition (these tests have no event loop)."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        time.sleep(0.005)


@pytest.fixture
def sessions() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start `sh -c 'sleep 30 & sleep 30 & wait'` sessions; all are killed and reaped after."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, 9)
        process.wait()


def start_session(sessions: list[subprocess.Popen[bytes]]) -> tuple[int, list[int]]:
    process = subprocess.Popen(["sh", "-c", "sleep 30 & sleep 30 & wait"], start_new_session=True)
    sessions.append(process)
    wait_until(lambda: len(group_members(process.pid)) == 3)
    return process.pid, sorted(group_members(process.pid))


def test_open_on_a_new_directory_kills_nothing_and_remembers_the_boot(tmp_path: Path) -> None:
    ledger = GroupLedger.open(tmp_path / "groups")
    assert ledger.killed == []
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text()
    assert (tmp_path / "groups" / "boot_id").read_text() == boot_id
    assert (tmp_path / "groups").stat().st_mode & 0o777 == 0o700


def test_a_restart_kills_the_whole_session_a_dead_daemon_left(
    tmp_path: Path, sessions: list[subprocess.Popen[bytes]]
) -> None:
    ledger = GroupLedger.open(tmp_path)
    leader, members = start_session(sessions)
    ledger.add(leader)
    assert recorded(tmp_path) == [(leader, start_time(leader))]
    # The daemon dies here without a word; the next one opens the same directory.
    restarted = GroupLedger.open(tmp_path)
    assert restarted.killed == members
    assert sessions[0].wait() == -9
    wait_until(lambda: not any(alive(pid) for pid in members))
    assert recorded(tmp_path) == []


def test_add_then_discard_leaves_no_record(
    tmp_path: Path, sessions: list[subprocess.Popen[bytes]]
) -> None:
    ledger = GroupLedger.open(tmp_path)
    leader, _ = start_session(sessions)
    ledger.add(leader)
    assert len(ledger) == 1
    assert repr(ledger) == f"<GroupLedger {str(tmp_path)!r} live:1>"
    ledger.discard(leader)
    ledger.discard(leader)  # twice is fine
    assert recorded(tmp_path) == []
    assert GroupLedger.open(tmp_path).killed == []
    assert alive(leader)


def test_a_recorded_number_now_used_by_another_process_is_left_alone(
    tmp_path: Path, sessions: list[subprocess.Popen[bytes]]
) -> None:
    GroupLedger.open(tmp_path)
    leader, members = start_session(sessions)
    # As if an earlier process with this pid (started a second earlier) had been recorded.
    with (tmp_path / "groups.log").open("a") as log:
        log.write(f"+{leader} {start_time(leader) - 100}\n")
    assert GroupLedger.open(tmp_path).killed == []
    assert all(alive(pid) for pid in members)


def test_records_of_an_earlier_boot_are_dropped_without_killing(
    tmp_path: Path, sessions: list[subprocess.Popen[bytes]]
) -> None:
    ledger = GroupLedger.open(tmp_path)
    leader, members = start_session(sessions)
    ledger.add(leader)
    (tmp_path / "boot_id").write_text("an-earlier-boot\n")
    assert GroupLedger.open(tmp_path).killed == []
    assert all(alive(pid) for pid in members)
    assert recorded(tmp_path) == []


def test_a_session_whose_leader_died_is_still_killed(
    tmp_path: Path, sessions: list[subprocess.Popen[bytes]]
) -> None:
    ledger = GroupLedger.open(tmp_path)
    leader, members = start_session(sessions)
    ledger.add(leader)
    os.kill(leader, 9)
    sessions[0].wait()  # the leader is gone; its two sleeps carry the session on
    orphans = [pid for pid in members if pid != leader]
    assert all(alive(pid) for pid in orphans)
    assert GroupLedger.open(tmp_path).killed == orphans
    wait_until(lambda: not any(alive(pid) for pid in orphans))


def test_adding_a_process_that_is_already_gone_records_nothing(tmp_path: Path) -> None:
    process = subprocess.Popen(["true"])
    process.wait()
    ledger = GroupLedger.open(tmp_path)
    ledger.add(process.pid)
    assert len(ledger) == 0
    assert recorded(tmp_path) == []


def test_unrelated_files_in_the_directory_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "notes-x").write_text("mine")
    (tmp_path / "12").write_text("")
    assert GroupLedger.open(tmp_path).killed == []
    assert sorted(os.listdir(tmp_path)) == ["12", "boot_id", "groups.log", "notes-x"]


def test_a_ledger_of_the_previous_version_is_read_and_cleared(
    tmp_path: Path, sessions: list[subprocess.Popen[bytes]]
) -> None:
    GroupLedger.open(tmp_path)  # the boot id, as that daemon wrote it
    leader, members = start_session(sessions)
    (tmp_path / f"{leader}-{start_time(leader)}").touch()  # a file per group, as it was
    assert GroupLedger.open(tmp_path).killed == members
    assert not (tmp_path / f"{leader}-{start_time(leader)}").exists()


def test_a_long_log_is_rewritten_with_the_live_groups_only(
    tmp_path: Path, sessions: list[subprocess.Popen[bytes]]
) -> None:
    ledger = GroupLedger.open(tmp_path)
    leader, members = start_session(sessions)
    ledger.add(leader)
    me = os.getpid()  # a live process to add and discard again and again
    for _ in range(GroupLedger.COMPACT_AFTER):
        ledger.add(me)
        ledger.discard(me)
    log = (tmp_path / "groups.log").read_text().splitlines()
    assert len(log) < GroupLedger.COMPACT_AFTER
    assert recorded(tmp_path) == [(leader, start_time(leader))]
    assert GroupLedger.open(tmp_path).killed == members


def test_a_line_cut_short_is_skipped(tmp_path: Path) -> None:
    GroupLedger.open(tmp_path).close()
    (tmp_path / "groups.log").write_text("+12 34\n-12\n+56")
    assert recorded(tmp_path) == []


def test_a_start_taken_before_the_spawn_identifies_the_session(
    tmp_path: Path, sessions: list[subprocess.Popen[bytes]]
) -> None:
    ledger = GroupLedger.open(tmp_path)
    before = boot_ticks()
    leader, members = start_session(sessions)
    assert before <= start_time(leader) <= before + 5  # the clock /proc counts in
    ledger.add(leader, before)  # no /proc read: what the exec runner does
    assert recorded(tmp_path) == [(leader, before)]
    assert GroupLedger.open(tmp_path).killed == members
