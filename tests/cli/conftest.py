"""Fixtures of the command line's tests: a real dukatd with exec on, and a way to run `dukat`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.dukatd.daemon_process import DaemonProcess, daemons, short_tmp

__all__ = ["Dukat", "daemons", "dukat", "short_tmp"]

# The console script beside this interpreter (what `pip install 'dukat[cli]'` makes).
SCRIPT = Path(sys.executable).with_name("dukat")


@dataclass
class Done:
    code: int
    out: str
    err: str


class Dukat:
    """Runs the real `dukat` against one daemon, as a user would (a subprocess)."""

    def __init__(self, daemon: DaemonProcess, directory: Path) -> None:
        self.daemon = daemon
        self.directory = directory
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("DUKAT")},
            "DUKAT_ADDRESS": daemon.address,
            "DUKAT_CONNECT_TIMEOUT": "2s",
            "COLUMNS": "200",
        }

    def argv(self, *args: str) -> list[str]:
        return [str(SCRIPT), *args]

    def file(self, text: str, name: str = "job.toml") -> str:
        path = self.directory / name
        path.write_text(text)
        return str(path)

    async def __call__(self, *args: str, input: str | None = None, within: float = 60) -> Done:
        process = await self.start(*args, stdin=subprocess.PIPE if input is not None else None)
        out, err = await asyncio.wait_for(
            process.communicate(input.encode() if input is not None else None), within
        )
        assert process.returncode is not None
        return Done(process.returncode, out.decode(), err.decode())

    async def start(self, *args: str, stdin: int | None = None) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *self.argv(*args),
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            cwd=self.directory,
        )


@pytest.fixture
async def dukat(daemons: Callable[..., DaemonProcess], short_tmp: Path) -> AsyncIterator[Dukat]:
    daemon = await daemons("--allow-exec", "--resource", "licence=2").serving()
    yield Dukat(daemon, short_tmp)
