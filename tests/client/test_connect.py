"""Finding the daemon: a mistaken address is said at once with its fix, nothing listening is
said within seconds with the address and what to check, and no address means the daemon's
default socket."""

from __future__ import annotations

import asyncio
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

import dukat
from dukat.client import Reconnect
from dukat.core.async_assistant import get_async_assistant
from dukat.defaults import default_address, unix_spelling
from dukat.errors import DaemonUnavailableError
from tests.client.daemon import Daemon
from tests.dukatd.daemon_process import DaemonProcess, daemons, short_tmp

__all__ = ["daemons", "short_tmp"]


async def quick() -> str:
    return "quick"


@pytest.mark.parametrize("path", ["/tmp/d.sock", "./d.sock", "../run/d.sock", "dukatd.sock"])
async def test_a_socket_path_without_unix_is_refused_with_the_fix(path: str) -> None:
    with pytest.raises(ValueError) as caught:
        async with dukat.connect(path):
            pass  # never reached: the address is refused before any call
    assert f"address {path!r} is a unix socket's path without its scheme" in str(caught.value)
    assert f"write 'unix:{path}'" in str(caught.value)


async def test_a_socket_file_named_without_unix_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="dukat-bare-") as directory:
        monkeypatch.chdir(directory)
        with socket.socket(socket.AF_UNIX) as listening:
            listening.bind("daemon")  # a socket file, not named like one
            with pytest.raises(ValueError, match="write 'unix:daemon'"):
                async with dukat.connect("daemon"):
                    pass
        assert unix_spelling("daemons") is None  # no such file: a host name, maybe


async def test_dukat_address_naming_a_bare_path_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DUKAT_ADDRESS", "/tmp/d.sock")
    with pytest.raises(ValueError, match=r"DUKAT_ADDRESS '/tmp/d\.sock' is a unix socket's path"):
        async with dukat.connect():
            pass


@pytest.mark.parametrize("address", ["localhost:7070", "unix:/tmp/d.sock", "dns:///h:1"])
async def test_addresses_with_a_scheme_or_a_port_are_taken(address: str) -> None:
    async with dukat.connect(address) as client:
        assert client.address == address


async def test_nothing_listening_is_said_within_seconds_with_the_address() -> None:
    # By default: Reconnect() rides out 30 s of outage, but not before the daemon was reached.
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="dukat-none-") as directory:
        address = f"unix:{directory}/none.sock"
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with dukat.connect(address) as client:
            with pytest.raises(DaemonUnavailableError) as caught:
                await client.status()
        assert loop.time() - started < 15
    message = str(caught.value)
    assert message.startswith(f"cannot reach dukatd at {address} (tried for ")
    assert "Is dukatd running? Start it with `dukatd` (`make run` in a checkout)" in message
    assert f"by default it listens on {default_address()}" in message
    assert "No such file or directory" in caught.value.details  # grpc's own words, kept


async def test_once_reached_an_outage_gets_the_long_budget(daemon: Daemon) -> None:
    # No retries at all for a daemon never reached: only the second budget can ride this out.
    policy = Reconnect(initial_backoff=0.01, max_backoff=0.05, give_up_after=30, connect_within=0)
    async with dukat.connect(daemon.address, reconnect=policy) as client:
        await client.status()  # reached
        await daemon.stop()
        asking = asyncio.create_task(client.status())
        await daemon.restart()
        assert (await asyncio.wait_for(asking, 20)).version


async def test_never_reached_a_daemon_gets_the_first_budget(daemon: Daemon) -> None:
    policy = Reconnect(initial_backoff=0.01, max_backoff=0.05, give_up_after=30, connect_within=0)
    await daemon.stop()
    async with dukat.connect(daemon.address, reconnect=policy) as client:
        with pytest.raises(DaemonUnavailableError, match="cannot reach dukatd"):
            await asyncio.wait_for(client.status(), 20)


def test_the_first_budget_is_never_longer_than_the_policy() -> None:
    assert Reconnect().limit(reached=False) == 5.0
    assert Reconnect().limit(reached=True) == 30.0
    assert Reconnect(give_up_after=1).limit(reached=False) == 1
    assert Reconnect(give_up_after=None).limit(reached=False) == 5.0
    assert Reconnect(give_up_after=None, connect_within=None).limit(reached=False) is None
    assert Reconnect(connect_within=None).limit(reached=False) == 30.0
    with pytest.raises(ValueError, match="connect_within must be 0 or more"):
        Reconnect(connect_within=-1)


@pytest.fixture
def default_socket(
    daemons: Callable[..., DaemonProcess], short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> DaemonProcess:
    """A real dukatd on the default socket of an environment whose RUNTIME_DIRECTORY (the
    first place `default_address()` looks) is the test's own directory."""
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(short_tmp))
    monkeypatch.delenv("DUKAT_ADDRESS", raising=False)
    daemon = daemons(name="dukatd")
    assert daemon.address == default_address()
    return daemon


async def test_connect_without_an_address_finds_the_default_socket(
    default_socket: DaemonProcess,
) -> None:
    await default_socket.serving()
    async with dukat.connect() as client:
        assert client.address == default_socket.address
        assert (await client.status()).listen == (default_socket.address,)


async def test_connect_without_an_address_takes_dukat_address_first(
    default_socket: DaemonProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DUKAT_ADDRESS", "unix:/tmp/elsewhere.sock")
    async with dukat.connect() as client:
        assert client.address == "unix:/tmp/elsewhere.sock"


async def test_the_assistant_reaches_the_default_socket_when_told_to(
    default_socket: DaemonProcess,
) -> None:
    await default_socket.serving()
    # Without an address (and DUKAT_ADDRESS) the assistant stays embedded, as documented.
    async with await get_async_assistant() as embedded:
        assert "embedded" in repr(embedded)
    async with await get_async_assistant(address=default_address()) as assistant:
        assert f"remote {default_socket.address}" in repr(assistant)
        results = await assistant.execute_tasks_in_parallel([{"task_id": "q", "func": quick}])
    assert results["q"].result == "quick"
