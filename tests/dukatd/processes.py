"""Looking at real processes through /proc, for the exec runner's tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import wait_for

__all__ = ["alive", "all_dead", "group_members", "my_children", "no_child_left", "proc_stat"]


def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgrp) of a process, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[2])


def alive(pid: int) -> bool:
    """Running (a zombie is dead: it only waits for its parent, or for init, to reap it)."""
    stat = proc_stat(pid)
    return stat is not None and stat[0] not in "ZX"


async def all_dead(pids: list[int]) -> None:
    """Wait until none of `pids` runs. Killed processes close their pipes (which is what the
    runner waits for) a moment before the kernel is done with them."""
    await wait_for(lambda: not any(alive(pid) for pid in pids), within=2)


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = proc_stat(int(entry))
            if stat is not None and stat[2] == pgid and stat[0] not in "ZX":
                members.append(int(entry))
    return members


def my_children() -> list[tuple[int, str]]:
    """(pid, state) of every child of this process, zombies included."""
    children = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = proc_stat(int(entry))
            if stat is not None and stat[1] == me:
                children.append((int(entry), stat[0]))
    return children


@pytest.fixture(autouse=True)
def no_child_left() -> Iterator[None]:
    """Autouse where imported: no child of this process, running or zombie, before or after."""
    assert my_children() == [], "children left over from before this test"
    yield
    assert my_children() == [], "this test left children behind (running or zombies)"
