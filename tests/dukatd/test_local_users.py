"""What other local users can reach of a daemon: not its exec tasks, its journal or its token.

The machine's tests run as root; "another user" is `nobody`, running a few lines of stdlib
Python (tests/dukatd/other_user.py). Those tests skip, saying why, where that is impossible.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.dukatd.daemon_process import REPO, DaemonProcess

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
