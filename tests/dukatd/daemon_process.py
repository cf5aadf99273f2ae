"""A real `python -m dukatd` in a subprocess, for the daemon's integration tests.

`daemons` (a fixture) starts them in a short temporary directory (unix socket paths must
fit in 108 bytes) and always SIGKILLs what is still running at teardown; `serving()` waits
until health says SERVING, failing with the daemon's log if it exits first.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

__all__ = ["DaemonProcess", "daemons", "short_tmp"]

REPO = Path(__file__).resolve().parents[2]
# Variables of the test's own environment that would change how the daemon runs.
_NOT_INHERITED = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS")


class DaemonProcess:
    """One daemon on `<directory>/<name>.sock`, with `--metrics-listen off`, and
    `--ephemeral` unless a `state_dir` is given (then its journal lives there)."""

    def __init__(
        self,
        directory: Path,
        args: tuple[str, ...] = (),
        *,
        env: Mapping[str, str] | None = None,
        name: str = "d",
        state_dir: Path | None = None,
        wrapper: tuple[str, ...] = (),
    ) -> None:
        """`wrapper`: a command the daemon runs under (`unshare ...`, an init)."""
        self.socket = directory / f"{name}.sock"
        self.address = f"unix:{self.socket}"
        self.log_path = directory / f"{name}-{id(self)}.log"
        self.argv = [
            *wrapper,
            sys.executable,
            "-m",
            "dukatd",
            "--listen",
            self.address,
            *(["--ephemeral"] if state_dir is None else ["--state-dir", str(state_dir)]),
            "--metrics-listen",
            "off",
            *args,
        ]
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("DUKATD_") and k not in _NOT_INHERITED
        }
        self.env = {**base, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProcess:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=REPO
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def returncode(self) -> int | None:
        assert self.process is not None
        return self.process.poll()

    async def health(self, within: float = 1.0) -> str:
        """Health of the whole server, or the gRPC code's name when the call fails."""
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=within)
            except grpc.aio.AioRpcError as error:
                return error.code().name
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    async def serving(self, within: float = 15.0) -> DaemonProcess:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            code = self.returncode()
            if code is not None:
                pytest.fail(f"dukatd exited with {code} before serving:\n{self.log()}")
            if self.socket.exists() and await self.health() == "SERVING":
                return self
            if loop.time() > deadline:
                pytest.fail(f"dukatd not SERVING within {within}s:\n{self.log()}")
            await asyncio.sleep(0.02)

    async def exited(self, within: float = 15.0) -> int:
        """The exit status, once the process ended; fails the test after `within` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while (code := self.returncode()) is None:
            if loop.time() > deadline:
                pytest.fail(f"dukatd still running after {within}s:\n{self.log()}")
            await asyncio.sleep(0.02)
        return code

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL if still running, and reap."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=10)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="dukatd-") as directory:
        yield Path(directory)


@pytest.fixture
def daemons(short_tmp: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """`daemons(*args, env=..., name=..., state_dir=..., wrapper=...)` starts a daemon; all
    are killed at teardown."""
    started: list[DaemonProcess] = []

    def start(
        *args: str,
        env: Mapping[str, str] | None = None,
        name: str = "d",
        state_dir: Path | None = None,
        wrapper: tuple[str, ...] = (),
    ) -> DaemonProcess:
        daemon = DaemonProcess(
            short_tmp, args, env=env, name=name, state_dir=state_dir, wrapper=wrapper
        )
        started.append(daemon)
        return daemon.start()

    yield start
    for daemon in started:
        daemon.kill()
