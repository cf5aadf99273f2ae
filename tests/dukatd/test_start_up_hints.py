"""What a real dukatd says when it starts, or cannot: a port in use names the option to change
(one line, exit 1), the start-up log says where the state is, whether exec is on and how
clients reach it, and `--version` says which dukatd this is."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import dukat
from tests.dukatd.daemon_process import REPO, DaemonProcess
from tests.helpers import wait_for

DUKAT = Path(sys.executable).with_name("dukat")


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port some other program listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def assert_one_line_saying(log: str, words: str) -> None:
    assert "Traceback" not in log
    assert "Failed to add port" not in log  # grpc's own line: never reached
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == 1, log
    assert errors[0].endswith(words), log


async def test_a_metrics_port_in_use_says_how_to_choose_another_or_none(
    daemons: Callable[..., DaemonProcess], busy_port: int
) -> None:
    daemon = daemons("--metrics-listen", f"127.0.0.1:{busy_port}")
    assert await daemon.exited() == 1
    assert_one_line_saying(
        daemon.log(),
        f"cannot start: cannot listen on 127.0.0.1:{busy_port} (--metrics-listen): the port is "
        "in use (by another dukatd, or another program); give another port with "
        "--metrics-listen 127.0.0.1:PORT, or turn metrics off with --metrics-listen off",
    )
    assert not daemon.socket.exists()  # nothing was served meanwhile


async def test_a_second_dukatd_on_the_first_ones_metrics_port_says_so(
    daemons: Callable[..., DaemonProcess],
) -> None:
    first = await daemons("--metrics-listen", "127.0.0.1:0", name="first").serving()
    await wait_for(lambda: "metrics on" in first.log(), within=10)
    port = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", first.log())[1]  # type: ignore[index]
    second = daemons("--metrics-listen", f"127.0.0.1:{port}", name="second")
    assert await second.exited() == 1
    assert_one_line_saying(
        second.log(),
        f"cannot listen on 127.0.0.1:{port} (--metrics-listen): the port is in use (by "
        "another dukatd, or another program); give another port with --metrics-listen "
        "127.0.0.1:PORT, or turn metrics off with --metrics-listen off",
    )
    assert await first.health() == "SERVING"  # the first one is untouched


async def test_a_listen_port_in_use_says_how_to_choose_another(
    daemons: Callable[..., DaemonProcess], busy_port: int
) -> None:
    daemon = daemons("--listen", f"127.0.0.1:{busy_port}")
    assert await daemon.exited() == 1
    assert_one_line_saying(
        daemon.log(),
        f"cannot start: cannot listen on 127.0.0.1:{busy_port} (--listen): the port is in use "
        "(by another dukatd, or another program); give another port with --listen HOST:PORT",
    )


async def test_a_socket_path_without_unix_is_a_bad_option_saying_how_to_write_it(
    daemons: Callable[..., DaemonProcess], short_tmp: Path
) -> None:
    daemon = daemons("--listen", f"{short_tmp}/bare.sock")
    assert await daemon.exited() == 2
    assert f"write 'unix:{short_tmp}/bare.sock' for a unix socket" in daemon.log()


async def test_the_start_up_log_says_where_the_state_is_exec_and_how_to_connect(
    daemons: Callable[..., DaemonProcess], short_tmp: Path
) -> None:
    state = short_tmp / "state"
    daemon = await daemons("--allow-exec", state_dir=state).serving()
    await wait_for(lambda: "for clients:" in daemon.log(), within=10)
    log = daemon.log()
    for words in (
        f"dukatd {dukat.__version__}, pid {daemon.pid}",
        f"listening on {daemon.address}",
        "metrics off",
        f"state directory {state} (the journal, journal.sqlite3)",
        "exec tasks on (--allow-exec): they run as this daemon's user",
        f"for clients: export DUKAT_ADDRESS={daemon.address}",
    ):
        assert words in log, (words, log)
    # The line works pasted into a shell: the command line finds the daemon through it.
    export = log.split("for clients: ", 1)[1].splitlines()[0]
    done = await asyncio.to_thread(
        subprocess.run,
        ["sh", "-c", f'{export} && exec "$0" status', str(DUKAT)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert daemon.address in done.stdout


async def test_an_ephemeral_daemon_says_so_and_that_exec_is_off(
    daemons: Callable[..., DaemonProcess],
) -> None:
    daemon = await daemons().serving()
    await wait_for(lambda: "for clients:" in daemon.log(), within=10)
    log = daemon.log()
    assert "ephemeral (--ephemeral): jobs are kept in memory only" in log
    assert "exec tasks off: they are refused (start dukatd with --allow-exec to run them)" in log


@pytest.mark.parametrize(
    ("command", "printed"),
    [
        ([sys.executable, "-m", "dukatd", "--version"], f"dukatd {dukat.__version__}\n"),
        ([str(DUKAT), "--version"], f"dukat, version {dukat.__version__}\n"),
    ],
)
def test_version(command: list[str], printed: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert (done.returncode, done.stdout) == (0, printed), done.stderr
