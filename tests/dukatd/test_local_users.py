"""What other local users can reach of a daemon: not its exec tasks, its journal or its token.

The machine's tests run as root; "another user" is `nobody`, running a few lines of stdlib
Python (tests/dukatd/other_user.py). Those tests skip, saying why, where that is impossible.
"""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import grpc
import pytest

from dukat.v1 import job_pb2, scheduler_pb2, scheduler_pb2_grpc
from tests.dukatd.daemon_process import REPO, DaemonProcess
from tests.dukatd.other_user import attempts

# -- exec over TCP ---------------------------------------------------------------------------


def test_exec_over_loopback_tcp_without_a_token_refuses_to_start(short_tmp: Path):
    # Every local user can connect to a loopback port: with exec allowed and no token, any
    # of them could run commands as the daemon's user (root, here), whatever the socket's mode.
    daemon = DaemonProcess(short_tmp, ("--listen", "127.0.0.1:0", "--allow-exec"))
    done = subprocess.run(
        daemon.argv, capture_output=True, text=True, env=daemon.env, cwd=REPO, timeout=30
    )
    assert done.returncode == 2, done.stderr
    assert "--token-file" in done.stderr and "--insecure" in done.stderr
    assert not daemon.socket.exists()  # it never listened


async def test_exec_over_tcp_with_insecure_starts_with_a_warning(daemons):
    daemon = await daemons("--listen", "127.0.0.1:0", "--allow-exec", "--insecure").serving()
    assert "WARNING" in daemon.log() and "every local user" in daemon.log()


# -- what dukatd writes is private -----------------------------------------------------------


def modes(*paths: Path) -> dict[Path, int]:
    return {path: stat.S_IMODE(path.stat().st_mode) for path in paths}


def files_under(directory: Path, pattern: str = "**/*") -> list[Path]:
    return [path for path in sorted(directory.glob(pattern)) if path.is_file()]


def open_state_dir(directory: Path) -> Path:
    """A state directory anybody may look into, as an operator might make it (systemd's
    StateDirectory= is 0755 unless the unit says otherwise), on a path anybody may walk."""
    directory.chmod(0o755)
    state = directory / "state"
    state.mkdir()
    state.chmod(0o755)
    return state


def readable_by_all(path: Path) -> Path:
    path.write_text("anybody may read this")
    path.chmod(0o644)
    return path


async def test_the_journal_and_every_file_dukatd_makes_are_private_in_an_open_state_dir(
    daemons, short_tmp: Path
):
    state = open_state_dir(short_tmp)
    daemon = await daemons("--allow-exec", state_dir=state).serving()
    async with grpc.aio.insecure_channel(daemon.address) as channel:
        stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
        secret = job_pb2.TaskSpec(
            id="secret",
            exec=job_pb2.ExecAction(argv=["sleep", "30"], env={"API_KEY": "hunter2"}),
        )
        job_id = (
            await stub.Submit(scheduler_pb2.SubmitRequest(job=job_pb2.JobSpec(tasks=[secret])))
        ).job_id
        await wait_until_running(stub, job_id)

        made = modes(*files_under(state), *files_under(short_tmp, "*.lock"))
        names = {str(path.relative_to(short_tmp)) for path in made}
        for name in ("journal.sqlite3", "journal.sqlite3-wal", "journal.sqlite3-shm"):
            assert f"state/{name}" in names, names
        assert {"state/dukatd.lock", "d.sock.lock", "state/exec-groups/groups.log"} <= names
        loose = {str(path): oct(mode) for path, mode in made.items() if mode & 0o077}
        assert loose == {}, "readable by others"
        assert modes(state / "exec-groups") == {state / "exec-groups": 0o700}

        assert "0755" in daemon.log() and "chmod 700" in daemon.log()  # said at start

        public = readable_by_all(short_tmp / "public")
        results = attempts(read=(public, *made), connect=(daemon.socket,))
        assert results.pop(str(public)) == "ok"  # the other user can walk to the files
        assert set(results.values()) == {"EACCES"}, results
        await stub.Cancel(scheduler_pb2.CancelRequest(job_id=job_id))


async def wait_until_running(stub: scheduler_pb2_grpc.SchedulerServiceStub, job_id: str) -> None:
    request = scheduler_pb2.WatchRequest(job_id=job_id)
    async for reply in stub.Watch(request, timeout=15):
        for event in reply.events:
            if event.task_state.state == job_pb2.TASK_STATE_RUNNING:
                return


async def test_a_journal_an_older_dukatd_left_readable_is_made_private(daemons, short_tmp: Path):
    state = short_tmp / "state"
    first = await daemons(state_dir=state).serving()
    first.kill()  # the WAL and its index stay behind
    loosen(state, "journal.sqlite3", "journal.sqlite3-wal", "journal.sqlite3-shm")
    await daemons(state_dir=state).serving()
    made = modes(*files_under(state))
    assert made[state / "journal.sqlite3"] == 0o600
    assert {str(path): oct(mode) for path, mode in made.items() if mode & 0o077} == {}


def loosen(directory: Path, *names: str) -> None:
    for name in names:
        (directory / name).chmod(0o644)


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o1777])
def test_a_state_dir_others_may_write_to_is_refused(short_tmp: Path, mode: int):
    state = short_tmp / "state"
    state.mkdir()
    state.chmod(mode)
    daemon = DaemonProcess(short_tmp, state_dir=state)
    done = subprocess.run(
        daemon.argv, capture_output=True, text=True, env=daemon.env, cwd=REPO, timeout=30
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "chmod 700" in done.stderr and str(state) in done.stderr
    assert list(state.iterdir()) == []  # nothing written there


def token_file(directory: Path, mode: int) -> Path:
    token = directory / "token"
    token.write_text("0123abcd\n")
    token.chmod(mode)
    return token


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o660, 0o622])
def test_a_token_file_others_may_read_or_change_is_refused(short_tmp: Path, mode: int):
    token = token_file(short_tmp, mode)
    daemon = DaemonProcess(short_tmp, ("--token-file", str(token)))
    done = subprocess.run(
        daemon.argv, capture_output=True, text=True, env=daemon.env, cwd=REPO, timeout=30
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "chmod 600" in done.stderr and oct(mode)[2:] in done.stderr
    assert not daemon.socket.exists()


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o640, 0o440])
async def test_a_token_file_for_its_owner_or_read_by_its_group_is_taken(
    daemons, short_tmp: Path, mode: int
):
    token = token_file(short_tmp, mode)
    await daemons("--token-file", str(token)).serving()
