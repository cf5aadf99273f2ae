"""dukatd.lock: a real flock across processes refuses a second daemon and names the holder's
pid; stale sockets go only while the lock is held; socket modes and directory ownership."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dukat.errors import DukatError
from dukatd.lock import (
    AlreadyRunningError,
    LockError,
    LockFile,
    claim_state_dir,
    claim_unix_socket,
    socket_umask,
)

ROOT = Path(__file__).resolve().parents[2]

# Claims a socket (binding it, like the daemon) or a state dir, says so, and holds on until its
# stdin closes or it is killed.
HOLDER = """
import socket, sys
from pathlib import Path
from dukatd.lock import claim_state_dir, claim_unix_socket, socket_umask
kind, path = sys.argv[1], Path(sys.argv[2])
if kind == "socket":
    claim = claim_unix_socket(path)
    listener = socket.socket(socket.AF_UNIX)
    with socket_umask():
        listener.bind(str(path))
    listener.listen()
else:
    claim = claim_state_dir(path)
print("held", flush=True)
sys.stdin.read()
"""

# Tries to claim; prints the error and exits 1 when refused.
CLAIMER = """
import sys
from pathlib import Path
from dukatd.lock import AlreadyRunningError, claim_state_dir, claim_unix_socket
kind, path = sys.argv[1], Path(sys.argv[2])
try:
    (claim_unix_socket if kind == "socket" else claim_state_dir)(path)
except AlreadyRunningError as error:
    print(error, file=sys.stderr)
    sys.exit(1)
print("claimed")
"""


def python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,  # so that `dukatd` imports from this checkout
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def holder() -> Iterator[Callable[[str, Path], subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(kind: str, path: Path) -> subprocess.Popen[str]:
        process = python(HOLDER, kind, str(path))
        started.append(process)
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line == "held\n", process.communicate(timeout=10)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def test_a_second_daemon_on_the_socket_is_refused_with_the_holders_pid(tmp_path, holder):
    path = tmp_path / "dukatd.sock"
    first = holder("socket", path)
    with pytest.raises(AlreadyRunningError) as refused:
        claim_unix_socket(path)
    assert refused.value.pid == first.pid
    message = str(refused.value)
    assert f"pid {first.pid}" in message
    assert f"{path}.lock" in message and str(path) in message
    assert "--listen" in message
    # the holder's socket is untouched: still there, still accepting connections
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(str(path))


def test_a_second_daemon_on_the_state_dir_is_refused_with_the_holders_pid(tmp_path, holder):
    state = tmp_path / "state"
    first = holder("state", state)
    with pytest.raises(AlreadyRunningError) as refused:
        claim_state_dir(state)
    assert refused.value.pid == first.pid
    assert f"pid {first.pid}" in str(refused.value)
    assert str(state / "dukatd.lock") in str(refused.value)
    assert "--state-dir" in str(refused.value)


@pytest.mark.parametrize("kind", ["socket", "state"])
def test_another_process_is_refused_while_we_hold_it(tmp_path, kind):
    path = tmp_path / ("dukatd.sock" if kind == "socket" else "state")
    claim = claim_unix_socket(path) if kind == "socket" else claim_state_dir(path)
    try:
        out, err = python(CLAIMER, kind, str(path)).communicate(timeout=30)
        assert out == ""
        assert f"pid {os.getpid()}" in err
    finally:
        claim.release()
    out, err = python(CLAIMER, kind, str(path)).communicate(timeout=30)
    assert out == "claimed\n", err


def test_a_killed_daemon_leaves_a_stale_socket_that_the_next_one_removes(tmp_path, holder):
    path = tmp_path / "dukatd.sock"
    first = holder("socket", path)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=10)
    # What a crash leaves: the socket file (nobody listens) and the lock file (nobody holds).
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    assert (tmp_path / "dukatd.sock.lock").exists()

    claim = claim_unix_socket(path)
    assert not path.exists()  # the stale socket is gone, the path is ready to bind
    assert (tmp_path / "dukatd.sock.lock").read_text() == f"{os.getpid()}\n"
    claim.release()


def test_a_socket_that_still_accepts_connections_is_not_removed(tmp_path):
    # Something that takes no lock (an older dukatd, another program) listens there.
    path = tmp_path / "dukatd.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        listener.listen()
        inode = os.lstat(path).st_ino
        with pytest.raises(LockError, match="accepting connections") as refused:
            claim_unix_socket(path)
        assert not isinstance(refused.value, AlreadyRunningError)
        assert os.lstat(path).st_ino == inode
    # and the lock taken for the check was given back
    assert not (tmp_path / "dukatd.sock.lock").exists()


def test_a_file_that_is_not_a_socket_is_never_removed(tmp_path):
    path = tmp_path / "dukatd.sock"
    path.write_text("precious")
    with pytest.raises(LockError, match="not a socket"):
        claim_unix_socket(path)
    assert path.read_text() == "precious"


def test_a_second_claim_in_the_same_process_is_refused_too(tmp_path):
    # flock belongs to the open file, not the process: two opens conflict.
    path = tmp_path / "dukatd.sock"
    with claim_unix_socket(path), pytest.raises(AlreadyRunningError, match=f"pid {os.getpid()}"):
        claim_unix_socket(path)


def test_release_removes_the_socket_and_the_lock_file_and_is_idempotent(tmp_path):
    path = tmp_path / "dukatd.sock"
    claim = claim_unix_socket(path)
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
    assert repr(claim) == f"<UnixSocketClaim {str(path)!r} held>"
    claim.release()
    claim.release()
    assert not path.exists()
    assert not (tmp_path / "dukatd.sock.lock").exists()
    assert repr(claim) == f"<UnixSocketClaim {str(path)!r} released>"


def test_sockets_bound_under_socket_umask_are_0660(tmp_path):
    previous = os.umask(0o022)
    try:
        with socket_umask(), socket.socket(socket.AF_UNIX) as listener:
            listener.bind(str(tmp_path / "dukatd.sock"))
            assert stat.S_IMODE(os.lstat(tmp_path / "dukatd.sock").st_mode) == 0o660
        assert os.umask(0o022) == 0o022  # restored
    finally:
        os.umask(previous)


def test_a_missing_socket_directory_is_created_private(tmp_path):
    directory = tmp_path / "run" / "dukatd"
    with claim_unix_socket(directory / "dukatd.sock"):
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700


def test_a_missing_state_directory_is_created_private(tmp_path):
    state = tmp_path / "state" / "dukatd"
    with claim_state_dir(state) as lock:
        assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
        assert (state / "dukatd.lock").read_text() == f"{os.getpid()}\n"
        assert lock.held


def test_a_directory_another_user_owns_is_refused(tmp_path, monkeypatch):
    directory = tmp_path / "theirs"
    directory.mkdir()
    if os.geteuid() == 0:
        os.chown(directory, 54321, 54321)
        monkeypatch.setattr(os, "geteuid", lambda: 12345)
    else:
        monkeypatch.setattr(os, "geteuid", lambda: os.getuid() + 1)
    with pytest.raises(LockError, match="belongs to uid") as refused:
        claim_unix_socket(directory / "dukatd.sock")
    assert "--listen" in str(refused.value)
    with pytest.raises(LockError, match="belongs to uid"):
        claim_state_dir(directory)


def test_a_symlink_planted_as_the_lock_file_is_refused(tmp_path):
    target = tmp_path / "victim"
    target.write_text("keep me")
    (tmp_path / "dukatd.sock.lock").symlink_to(target)
    with pytest.raises(LockError, match="symlink"):
        claim_unix_socket(tmp_path / "dukatd.sock")
    assert target.read_text() == "keep me"


def test_the_lock_is_not_inherited_by_subprocesses(tmp_path):
    with LockFile.acquire(tmp_path / "x.lock", serving="x", hint="y") as lock:
        assert lock._fd is not None
        assert os.get_inheritable(lock._fd) is False


def test_release_leaves_a_lock_file_that_is_not_its_own(tmp_path):
    path = tmp_path / "x.lock"
    lock = LockFile.acquire(path, serving="x", hint="y")
    os.unlink(path)
    path.write_text("someone else's")
    lock.release()
    assert path.read_text() == "someone else's"


def test_lock_errors_are_dukat_errors():
    assert issubclass(AlreadyRunningError, LockError)
    assert issubclass(LockError, DukatError)
