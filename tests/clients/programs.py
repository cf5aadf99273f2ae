"""The Go and TypeScript programs the client tests start, and how they are run.

Go programs are built with `go build` (its cache makes a rebuild a link); TypeScript ones are
`clients/typescript/dist/`, which `make test-ts` builds and `typescript_dist()` builds again
only when a source is newer. Each program runs as a subprocess of the test, its output kept
for the failure message, and never outlives the test.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "GO_CLIENT",
    "REPO",
    "TS_CLIENT",
    "Program",
    "go_build",
    "run",
    "run_json",
    "typescript_dist",
]

REPO = Path(__file__).resolve().parents[2]
GO_CLIENT = REPO / "clients" / "go"
TS_CLIENT = REPO / "clients" / "typescript"
# How long one program may take: long enough for a loaded 2-core machine.
WITHIN = 30.0


def go_build(package: str, output: Path) -> Path:
    """`go build` a package of the Go client's module (`./cmd/...`) into `output`."""
    done = subprocess.run(
        ["go", "build", "-o", str(output), package],
        cwd=GO_CLIENT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        pytest.fail(f"go build {package}:\n{done.stderr}")
    return output


def typescript_dist() -> Path:
    """The TypeScript client's build, made again (`npm run build`) when a source is newer."""
    dist = TS_CLIENT / "dist"
    if not (TS_CLIENT / "node_modules").is_dir():
        pytest.fail("clients/typescript/node_modules is missing: run `make test-ts` first")
    built = dist / "src" / "index.js"
    sources = [
        path
        for folder in ("src", "test", "examples", "bench")
        for path in (TS_CLIENT / folder).rglob("*.ts")
    ]
    sources.append(TS_CLIENT / "tsconfig.json")
    if not built.exists() or max(p.stat().st_mtime for p in sources) > built.stat().st_mtime:
        done = subprocess.run(
            ["npm", "run", "--silent", "build"],
            cwd=TS_CLIENT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            pytest.fail(f"npm run build:\n{done.stdout}{done.stderr}")
    return dist


async def run(
    argv: Sequence[str | Path], *, env: Mapping[str, str] | None = None, cwd: Path = REPO
) -> str:
    """Run a program to its end: its standard output. Fails the test, with its standard
    error, if it exits non-zero or takes longer than WITHIN seconds (then its whole process
    group is killed: a shell's commands too, which would hold its pipes open)."""
    process = await asyncio.create_subprocess_exec(
        *map(str, argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        start_new_session=True,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), WITHIN)
    except TimeoutError:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = await process.communicate()
        pytest.fail(f"{argv[0]} still running after {WITHIN}s:\n{stderr.decode()}")
    if process.returncode != 0:
        pytest.fail(f"{argv[0]} exited with {process.returncode}:\n{stderr.decode()}")
    return stdout.decode()


async def run_json(argv: Sequence[str | Path]) -> Any:
    """Run a program that prints one JSON document: the document."""
    return json.loads(await run(argv))


class Program:
    """A program in the background (a worker): output in files of `directory`, stopped with
    SIGTERM by `stop()`, and killed by `kill()` whatever happened."""

    def __init__(self, argv: Sequence[str | Path], directory: Path, name: str) -> None:
        self.argv = [str(arg) for arg in argv]
        self.log_path = directory / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def running(self) -> bool:
        return self.process.poll() is None

    async def stop(self) -> int:
        """SIGTERM (a worker drains), and its exit status."""
        self.process.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WITHIN
        while (code := self.process.poll()) is None:
            if loop.time() > deadline:
                pytest.fail(f"{self.argv[0]} still running {WITHIN}s after SIGTERM:\n{self.log()}")
            await asyncio.sleep(0.01)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
