"""Files that only the daemon's user may read or write.

The journal holds every task's argv, environment (secrets, often) and results; the exec
ledger, which process groups are the daemon's; lock files, its pid. Each is made mode 0600,
whatever the umask (which the daemon leaves alone: its tasks inherit it), and one found
looser, left by an older dukatd, is narrowed to its owner. The directories dukatd makes are
0700 (`dukatd.lock`).
"""

from __future__ import annotations

import contextlib
import os
import stat

__all__ = ["PRIVATE_MODE", "make_private", "open_private"]

PRIVATE_MODE = 0o600


def open_private(path: str | os.PathLike[str], flags: int) -> int:
    """`os.open(path, flags)` that creates the file mode 0600 and narrows an existing one to
    its owner; close-on-exec. Raises OSError."""
    fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, PRIVATE_MODE)
    try:
        _narrow(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def make_private(path: str | os.PathLike[str]) -> None:
    """Narrow the file at `path` to its owner, if it exists. Raises OSError."""
    with contextlib.suppress(FileNotFoundError):
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _narrow(fd)
        finally:
            os.close(fd)


def _narrow(fd: int) -> None:
    mode = stat.S_IMODE(os.fstat(fd).st_mode)
    if mode & 0o077:
        os.fchmod(fd, mode & 0o700)
