"""dukatd.notify: datagrams received on a real AF_UNIX SOCK_DGRAM socket, the abstract
namespace, the no-op when NOTIFY_SOCKET is unset, and the watchdog's pings."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import uuid
from collections.abc import Iterator

import pytest

from dukatd.notify import Notifier, watchdog_timeout
from tests.helpers import wait_for


class Receiver:
    """The service manager's end: a bound datagram socket, read without blocking."""

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.address = address  # what NOTIFY_SOCKET says
        self.received: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.received.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return self.received


@pytest.fixture
def receiver(tmp_path) -> Iterator[Receiver]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        path = tmp_path / "notify.sock"
        sock.bind(str(path))
        sock.setblocking(False)
        yield Receiver(sock, str(path))


@pytest.fixture
def abstract_receiver() -> Iterator[Receiver]:
    if not sys.platform.startswith("linux"):
        pytest.skip("the abstract socket namespace is Linux only")
    name = f"dukat-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.setblocking(False)
        yield Receiver(sock, "@" + name)


def notifier_for(receiver: Receiver, **environ: str) -> Notifier:
    return Notifier.from_environ({"NOTIFY_SOCKET": receiver.address, **environ})


# -- datagrams --------------------------------------------------------------------------------


def test_each_message_is_one_datagram(receiver):
    notifier = notifier_for(receiver)
    assert notifier.enabled
    assert notifier.ready()
    assert notifier.status("serving unix:/run/dukatd/dukatd.sock")
    assert notifier.watchdog()
    assert notifier.stopping("draining")
    assert notifier.extend_timeout(2.5)
    assert receiver.drain() == [
        "READY=1",
        "STATUS=serving unix:/run/dukatd/dukatd.sock",
        "WATCHDOG=1",
        "STOPPING=1\nSTATUS=draining",
        "EXTEND_TIMEOUT_USEC=2500000",
    ]
    notifier.close()


def test_reloading_carries_the_monotonic_clock(receiver):
    notifier = notifier_for(receiver)
    assert notifier.reloading()
    [message] = receiver.drain()
    reloading, monotonic = message.split("\n")
    assert reloading == "RELOADING=1"
    assert monotonic.startswith("MONOTONIC_USEC=") and int(monotonic.split("=")[1]) > 0
    notifier.close()


def test_the_abstract_namespace(abstract_receiver):
    notifier = notifier_for(abstract_receiver)
    assert notifier.ready("up")
    assert abstract_receiver.drain() == ["READY=1\nSTATUS=up"]
    notifier.close()


def test_a_status_stays_on_one_line(receiver):
    notifier = notifier_for(receiver)
    notifier.status("two\nlines")
    assert receiver.drain() == ["STATUS=two lines"]
    notifier.close()


def test_malformed_assignments_are_refused(receiver):
    notifier = notifier_for(receiver)
    with pytest.raises(ValueError, match="NAME=value"):
        notifier.notify("READY")
    with pytest.raises(ValueError, match="NAME=value"):
        notifier.notify("READY=1\nSTOPPING=1")
    assert receiver.drain() == []
    notifier.close()


def test_without_notify_socket_everything_is_a_no_op():
    notifier = Notifier.from_environ({})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.stopping() is False
    assert notifier.watchdog() is False
    assert repr(notifier) == "<Notifier off>"


def test_unsupported_addresses_turn_notifying_off(caplog):
    with caplog.at_level(logging.WARNING, logger="dukatd.notify"):
        notifier = Notifier("vsock:2:1234")
    assert not notifier.enabled and notifier.ready() is False
    assert "not a unix socket path" in caplog.text


def test_unset_removes_the_variables_so_tasks_do_not_inherit_them(receiver):
    environ = {
        "NOTIFY_SOCKET": receiver.address,
        "WATCHDOG_USEC": "30000000",
        "WATCHDOG_PID": str(os.getpid()),
        "PATH": "/usr/bin",
    }
    notifier = Notifier.from_environ(environ, unset=True)
    assert environ == {"PATH": "/usr/bin"}
    assert notifier.enabled and notifier.watchdog_timeout == 30.0
    notifier.close()


def test_a_failed_send_is_reported_not_raised_and_warned_once(tmp_path, caplog):
    notifier = Notifier(str(tmp_path / "gone.sock"))
    with caplog.at_level(logging.DEBUG, logger="dukatd.notify"):
        assert notifier.watchdog() is False
        assert notifier.watchdog() is False
    levels = [record.levelno for record in caplog.records]
    assert levels == [logging.WARNING, logging.DEBUG]
    notifier.close()


def test_a_full_queue_drops_the_message_instead_of_blocking(receiver):
    # Nobody reads the receiver: its queue fills, and then a send must fail at once.
    notifier = notifier_for(receiver)
    sent = 0
    while notifier.watchdog():
        sent += 1
        assert sent < 1_000_000
    assert sent > 0
    notifier.close()


# -- the watchdog -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "timeout"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
    ],
)
def test_watchdog_timeout_from_the_environment(environ, timeout):
    assert watchdog_timeout(environ) == timeout


async def test_the_watchdog_pings_on_a_real_socket(receiver):
    # 20ms timeout: pings every 10ms.
    notifier = notifier_for(receiver, WATCHDOG_USEC="20000", WATCHDOG_PID=str(os.getpid()))
    task = notifier.start_watchdog()
    assert task is not None
    try:
        await wait_for(lambda: len(receiver.drain()) >= 3)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert set(receiver.received) == {"WATCHDOG=1"}
    notifier.close()


class GatedSleep:
    """A sleep that records what it was asked and lets `free` sleeps through, then waits."""

    def __init__(self, free: int) -> None:
        self.asked: list[float] = []
        self.free = free
        self.gate = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        if len(self.asked) >= self.free:
            await self.gate.wait()


async def test_the_watchdog_pings_at_half_the_timeout(receiver):
    notifier = notifier_for(receiver, WATCHDOG_USEC="8000000")
    sleep = GatedSleep(free=3)
    task = notifier.start_watchdog(sleep=sleep)
    assert task is not None
    await wait_for(lambda: len(sleep.asked) == 3)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert sleep.asked == [4.0, 4.0, 4.0]
    assert receiver.drain() == ["WATCHDOG=1"] * 3
    notifier.close()


async def test_an_unhealthy_daemon_stops_pinging(receiver, caplog):
    notifier = notifier_for(receiver, WATCHDOG_USEC="8000000")
    health = iter([True, False, True])
    sleep = GatedSleep(free=3)
    with caplog.at_level(logging.WARNING, logger="dukatd.notify"):
        task = notifier.start_watchdog(healthy=lambda: next(health), sleep=sleep)
        assert task is not None
        await wait_for(lambda: len(sleep.asked) == 3)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert receiver.drain() == ["WATCHDOG=1"] * 2
    assert "unhealthy" in caplog.text
    notifier.close()


async def test_no_watchdog_task_without_a_watchdog_or_a_socket(receiver):
    assert notifier_for(receiver).start_watchdog() is None
    assert Notifier.from_environ({"WATCHDOG_USEC": "1000000"}).start_watchdog() is None
