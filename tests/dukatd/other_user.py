"""Another local user, to prove what they cannot reach of a daemon: files, sockets.

The tests run as root; the other user is `nobody`, running a few lines of stdlib Python
(`attempts`) through `setpriv`. Where no other user can be had (not root, no setpriv, no user
nobody, no interpreter that nobody may run: the venv's may live in root's home), the test is
skipped, saying why.
"""

from __future__ import annotations

import functools
import json
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

__all__ = ["attempts"]

# Tries each (kind, path) and prints {path: "ok" or the errno's name}.
_ATTEMPT = """
import errno, json, socket, sys
results = {}
for kind, path in zip(sys.argv[1::2], sys.argv[2::2]):
    try:
        if kind == "read":
            with open(path, "rb") as file:
                file.read(1)
        else:
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(path)
        results[path] = "ok"
    except OSError as error:
        results[path] = errno.errorcode.get(error.errno, str(error.errno))
print(json.dumps(results))
"""


def _run_as(user: pwd.struct_passwd, argv: list[str]) -> subprocess.CompletedProcess[str]:
    # setpriv drops to the user after exec: subprocess itself need not fork with a user
    # change (which cannot use vfork, and a forked copy of a process running grpc crashes).
    drop = [
        _setpriv(),
        f"--reuid={user.pw_uid}",
        f"--regid={user.pw_gid}",
        "--clear-groups",
        "--",
    ]
    return subprocess.run(
        [*drop, *argv],
        env={"PATH": "/usr/bin:/bin"},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=30,
    )


def _setpriv() -> str:
    found = shutil.which("setpriv")
    if found is None:
        pytest.skip("no setpriv (util-linux) to run a command as another user")
    return found


@functools.cache
def _other_user() -> tuple[pwd.struct_passwd, str]:
    if os.geteuid() != 0:
        pytest.skip("running as another user needs root; these tests run as a plain user")
    try:
        user = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' on this machine to try things as")
    for python in (sys.executable, shutil.which("python3", path="/usr/bin:/bin")):
        if python and _run_as(user, [python, "-I", "-c", "pass"]).returncode == 0:
            return user, python
    pytest.skip("no Python interpreter that the user 'nobody' may run")


def attempts(*, read: tuple[Path, ...] = (), connect: tuple[Path, ...] = ()) -> dict[str, str]:
    """What `nobody` gets opening each of `read` and connecting to each socket of `connect`:
    "ok", or the errno's name ("EACCES")."""
    user, python = _other_user()
    argv = [python, "-I", "-c", _ATTEMPT]
    argv += [part for path in read for part in ("read", str(path))]
    argv += [part for path in connect for part in ("connect", str(path))]
    done = _run_as(user, argv)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
