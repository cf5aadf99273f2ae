"""Fixtures of the tests across clients: one real dukatd per module, and the programs."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.clients.programs import go_build, typescript_dist
from tests.dukatd.daemon_process import DaemonProcess


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    """A dukatd with exec on, shared by a module's tests: each uses queues and breakers of
    its own names."""
    # In /tmp: a unix socket's path must fit in 108 bytes.
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="dukatd-clients-") as directory:
        process = DaemonProcess(Path(directory), ("--allow-exec",)).start()
        try:
            asyncio.run(process.serving())
            yield process
        finally:
            process.kill()


@pytest.fixture(scope="session")
def go_program(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """`go_program("./cmd/dukat-worker-example")`: the built program, once per session."""
    built: dict[str, Path] = {}
    directory = tmp_path_factory.mktemp("go")

    def build(package: str) -> Path:
        if package not in built:
            built[package] = go_build(package, directory / package.strip("./").replace("/", "-"))
        return built[package]

    return build


@pytest.fixture(scope="session")
def typescript() -> Path:
    """The TypeScript client's dist/ (its programs: dist/test/programs/, dist/examples/)."""
    return typescript_dist()
