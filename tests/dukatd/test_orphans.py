"""dukatd as PID 1 (a container without an init) reaps what tasks leave behind.

An exec task that starts background children and exits has them killed with its group;
their corpses go to PID 1. Run here in a PID namespace of its own (`unshare --pid`), where
dukatd is PID 1, as in `docker run` without `--init`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import dukat
from dukat.actions import ExecAction
from dukat.core import JobSpec, JobState, TaskSpec
from dukatd.orphans import OrphanReaper
from tests.helpers import wait_for

UNSHARE = ("unshare", "--pid", "--fork", "--mount-proc", "--kill-child")


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run([*UNSHARE, "true"], capture_output=True, timeout=10)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(
    not _can_unshare(), reason="needs unshare --pid (root, or user namespaces allowed)"
)


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, state letter) of each child of `pid`, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # gone meanwhile
        fields = text.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append((int(stat.parent.name), fields[0]))
    return found


async def test_as_pid_1_dukatd_reaps_the_background_children_a_task_left(daemons) -> None:
    daemon = await daemons("--allow-exec", wrapper=UNSHARE).serving()
    (dukatd, _), *_ = children(daemon.pid)  # unshare's one child: dukatd, PID 1 inside
    assert "PID 1: it reaps" in daemon.log()
    leaves = ExecAction(["sh", "-c", "sleep 30 & sleep 30 & sleep 30 & echo left three"])
    async with dukat.connect(daemon.address) as client:
        handle = await client.submit(JobSpec((TaskSpec("leaves", leaves),)))
        assert (await handle.wait()).state is JobState.SUCCEEDED
    # The three sleeps were killed with the task's group, and handed to PID 1 as they died.
    await wait_for(lambda: not children(dukatd), within=10)


def exit_code(zombie: int) -> int:
    """Reap `zombie` (it has exited: no wait) and give its exit code."""
    return os.waitstatus_to_exitcode(os.waitpid(zombie, os.WNOHANG)[1])


async def test_the_reaper_reaps_exited_children_but_leaves_task_leaders_to_their_child() -> None:
    def spawn() -> int:
        return os.posix_spawnp("true", ["true"], os.environ)

    leader, orphans = spawn(), [spawn(), spawn()]

    def state(pid: int) -> str | None:
        return dict(children(os.getpid())).get(pid)

    await wait_for(lambda: all(state(pid) == "Z" for pid in (leader, *orphans)))
    assert OrphanReaper({leader}).reap() == 2
    assert [state(pid) for pid in orphans] == [None, None]  # reaped: gone from the table
    assert state(leader) == "Z"  # left to its owner, its exit status intact
    assert exit_code(leader) == 0
