"""Lock files that keep a second dukatd off a socket or a state directory already in use.

grpc unlinks whatever sits at a unix socket's path before it binds, so two daemons started on
the same path would both "succeed" and the first would silently stop receiving connections.
Before binding, the server therefore claims each socket with `claim_unix_socket`: an exclusive
`flock` on `<socket>.lock` beside it. A second daemon fails to take the lock and stops with a
message naming the path and the pid of the holder. The state directory gets the same treatment
(`claim_state_dir`, lock file `dukatd.lock` in it), since two writers would corrupt the
journal.

Why flock: the kernel drops the lock when its holder dies, even by SIGKILL, so a crashed
daemon never leaves a stale lock behind, only a stale socket file, which is removed by the next
daemon once it holds the lock (never before: without the lock it could be a live daemon's).

Usage, by the server:

    claim = claim_unix_socket(path)          # refuses if another daemon holds it
    with socket_umask():
        server.add_insecure_port(f"unix:{path}")   # the socket file is made mode 0660
    ...
    claim.release()                          # at exit: socket file and lock file removed
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

from dukat.errors import AlreadyRunningError, LockError
from dukatd.private_files import open_private

__all__ = [
    "AlreadyRunningError",
    "LockError",
    "LockFile",
    "UnixSocketClaim",
    "claim_state_dir",
    "claim_unix_socket",
    "socket_umask",
]

_log = logging.getLogger("dukatd")

STATE_LOCK_NAME = "dukatd.lock"
# Sockets are created 0777 & ~umask: 0660 lets the owner and the group connect, nobody else.
SOCKET_UMASK = 0o117


class LockFile:
    """An exclusive flock on a file that holds the pid of its owner; held until `release`."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, path: Path, *, serving: str, hint: str) -> LockFile:
        """Take the lock at `path` or raise `AlreadyRunningError` naming the holder's pid.

        `serving` and `hint` go into that message: what the holder serves, and the option that
        would choose something else.
        """
        path = Path(path)
        while True:
            fd = _open_lock_file(path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _read_pid(fd)
                os.close(fd)
                raise AlreadyRunningError(path, pid=pid, serving=serving, hint=hint) from None
            except BaseException:
                os.close(fd)
                raise
            # `release` unlinks the file while still holding the lock. If that happened between
            # our open and our flock, we now hold a lock on an orphaned inode, and a third
            # daemon could create and lock a new file at the path. Only the inode that is at
            # the path counts: otherwise start over.
            if _same_file(fd, path):
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Remove the lock file and let go of the lock; idempotent."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            # Unlink while still holding the lock (see `acquire`), and only our own file.
            if _same_file(fd, self.path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
        finally:
            os.close(fd)

    def __enter__(self) -> LockFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "held" if self.held else "released"
        return f"<LockFile {str(self.path)!r} {state}>"


def _open_lock_file(path: Path) -> int:
    # O_CLOEXEC: a flock belongs to the open file, so a task subprocess that inherited the
    # descriptor and outlived the daemon would keep the lock and block every restart.
    # O_NOFOLLOW: in a shared directory a planted symlink must not make us truncate its target.
    try:
        fd = open_private(path, os.O_RDWR | os.O_NOFOLLOW)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise LockError(
                f"lock file {str(path)!r} is a symlink; refusing it", path=path
            ) from None
        raise LockError(
            f"cannot open lock file {str(path)!r}: {error.strerror}", path=path
        ) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise LockError(f"lock file {str(path)!r} is not a regular file", path=path)
    return fd


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
        return int(text) if text else None
    except (OSError, ValueError, UnicodeDecodeError):
        return None  # the holder has not written its pid yet, or wrote something else


def _same_file(fd: int, path: Path) -> bool:
    try:
        at_path = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (at_path.st_dev, at_path.st_ino)


# -- directories ------------------------------------------------------------------------------


def _ensure_directory(directory: Path, *, what: str, hint: str) -> None:
    """Create `directory` mode 0700 if missing; refuse one that another user controls.

    A directory we create is private: to share the socket with a group, give the daemon a
    directory made for it (systemd's RuntimeDirectory= with RuntimeDirectoryMode=0750).
    """
    if not directory.exists():
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            os.chmod(directory, 0o700)  # makedirs' mode is filtered by the umask
        except OSError as error:
            raise LockError(
                f"cannot create the {what} {str(directory)!r}: {error.strerror}", path=directory
            ) from None
    info = os.stat(directory)
    if not stat.S_ISDIR(info.st_mode):
        raise LockError(f"the {what} {str(directory)!r} is not a directory", path=directory)
    # The owner of a directory can rename and replace anything in it, our socket included (and
    # so impersonate the daemon), and could pre-create /tmp/dukatd-$UID for another user. Only
    # ourselves and root may own it.
    if info.st_uid not in (os.geteuid(), 0):
        raise LockError(
            f"the {what} {str(directory)!r} belongs to uid {info.st_uid}, not to this user "
            f"(uid {os.geteuid()}) nor root, who could replace what dukatd puts there; "
            f"choose another with {hint}",
            path=directory,
        )


def claim_state_dir(directory: Path) -> LockFile:
    """Create the state directory (0700) if missing and lock it for this daemon.

    One that other users may write to is refused (they could replace or remove the journal);
    one they may only look into is warned of (what dukatd writes there is 0600 all the same).
    An --ephemeral daemon writes nothing there and need not claim it.
    """
    directory = Path(directory)
    _ensure_directory(directory, what="state directory", hint="--state-dir")
    mode = stat.S_IMODE(os.stat(directory).st_mode)
    fix = "chmod 700 it (under systemd: StateDirectoryMode=0700)"
    if mode & 0o022:
        raise LockError(
            f"the state directory {str(directory)!r} is mode {mode:04o}: other users may write "
            f"to it, and so replace or remove the journal; {fix}",
            path=directory,
        )
    if mode & 0o077:
        _log.warning(
            "the state directory %r is mode %04o: other users may list it (the files dukatd "
            "writes there are private, 0600); %s",
            str(directory),
            mode,
            fix,
        )
    return LockFile.acquire(
        directory / STATE_LOCK_NAME,
        serving=f"the state directory {str(directory)!r}",
        hint="another --state-dir (or --ephemeral)",
    )


# -- unix sockets -----------------------------------------------------------------------------


class UnixSocketClaim:
    """The right to bind a unix socket path, held as a lock beside it until `release`."""

    def __init__(self, path: Path, lock: LockFile) -> None:
        self.path = path
        self.lock = lock

    def release(self) -> None:
        """Remove the socket file, then the lock; idempotent. Call after the server stopped."""
        if not self.lock.held:
            return
        try:
            # Removed while we still hold the lock: nobody else can have bound it meanwhile.
            if _is_socket(self.path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
        finally:
            self.lock.release()

    def __enter__(self) -> UnixSocketClaim:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "held" if self.lock.held else "released"
        return f"<UnixSocketClaim {str(self.path)!r} {state}>"


def claim_unix_socket(path: Path) -> UnixSocketClaim:
    """Make the socket's directory if missing, take `<path>.lock`, remove a stale socket file.

    Raises `AlreadyRunningError` when another daemon holds the lock, and `LockError` when the
    path is taken by something that is not a stale socket (a file, or a socket that another
    program, holding no lock, still accepts connections on).
    """
    path = Path(path)
    _ensure_directory(path.parent, what="socket directory", hint="--listen unix:/other/path")
    lock = LockFile.acquire(
        path.with_name(path.name + ".lock"),
        serving=f"the socket {str(path)!r}",
        hint="another --listen unix:/path",
    )
    try:
        _remove_stale_socket(path, lock.path)
    except BaseException:
        lock.release()
        raise
    return UnixSocketClaim(path, lock)


def _is_socket(path: Path) -> bool:
    try:
        return stat.S_ISSOCK(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _remove_stale_socket(path: Path, lock_path: Path) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise LockError(
            f"{str(path)!r} exists and is not a socket; dukatd will not replace it", path=path
        )
    # No daemon holds the lock, so a socket file here should be a dead daemon's. Unless some
    # program that does not take our lock (an old dukatd, something else) still listens on it:
    # then removing it would cut that program off.
    if _accepts_connections(path):
        raise LockError(
            f"a process is accepting connections on {str(path)!r} but does not hold "
            f"{str(lock_path)!r}; stop it or choose another --listen unix:/path",
            path=path,
        )
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as error:
        raise LockError(
            f"cannot remove the stale socket {str(path)!r}: {error.strerror}", path=path
        ) from None


def _accepts_connections(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(os.fspath(path))
        except OSError:
            return False  # ECONNREFUSED: nobody listens; anything else: nothing we can use
        return True


@contextlib.contextmanager
def socket_umask() -> Iterator[None]:
    """Bind unix sockets inside this block: they are created mode 0660 (owner and group).

    The umask is process-wide: the block is meant for start-up, before any task runs; while it
    lasts, whatever any thread creates gets at most mode 0660.
    """
    previous = os.umask(SOCKET_UMASK)
    try:
        yield
    finally:
        os.umask(previous)
