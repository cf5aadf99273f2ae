"""Every client speaks to every other through one real dukatd.

A job submitted in one language is served by a worker in another: the same two dispatch tasks
(`hello`, then `world` after it), the same worker's contract in every language (that of the
Go client's cmd/dukat-worker-example: its dependencies' payloads, then its own upper-cased,
and a progress report on the way), and the submitter sees the same results and progress
whoever served them. Python plays its parts in the test's own process; Go and TypeScript are
programs (clients/go/testdata/crosslang, cmd/dukat-worker-example and
clients/typescript/test/programs/crosslang.ts) started against the daemon.

The other two pairs are in the clients' own suites: Python submits and Go serves
(clients/go/crosslang_test.go), TypeScript submits and Python serves
(clients/typescript/test/cross-language.test.ts). So is a worker drained mid-job losing
nothing, in each language: tests/dukatd/test_work_drain.py, clients/go/worker_test.go
(TestShutdownDrainsMidJobAndLosesNothing), clients/typescript/test/drain.test.ts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import dukat
from dukat.actions import DispatchAction
from dukat.client import Client, DispatchTask
from dukat.core import JobSpec, TaskSpec
from dukat.core.events import TaskProgress
from tests.clients.programs import Program, run_json
from tests.dukatd.daemon_process import DaemonProcess

# What the submitter sees, whichever language serves the job.
SERVED = {
    "state": "SUCCEEDED",
    "results": {"hello": "HELLO", "world": "HELLO WORLD"},
    "progress": [["hello", 0.5, "shouting hello"], ["world", 0.5, "shouting world"]],
}


class Languages:
    """How each language submits the job and serves its queue, against one daemon."""

    def __init__(
        self,
        daemon: DaemonProcess,
        client: Client,
        go_program: Callable[[str], Path],
        typescript: Path,
        directory: Path,
    ) -> None:
        self.address = daemon.address
        self.client = client
        self.go_program = go_program
        self.typescript_program = typescript / "test" / "programs" / "crosslang.js"
        self.directory = directory

    async def submit(self, language: str, queue: str) -> Any:
        """Submit hello -> world to `queue` in `language`, wait for it: what it saw."""
        if language == "python":
            return await self._python_submits(queue)
        if language == "go":
            crosslang = self.go_program("./testdata/crosslang")
            return await run_json([crosslang, "submit", self.address, queue])
        return await run_json(["node", self.typescript_program, "submit", self.address, queue])

    @contextlib.asynccontextmanager
    async def serving(self, language: str, queue: str) -> AsyncIterator[None]:
        """A worker of `language` serves `queue` (the daemon has welcomed it) until the
        block ends; then it drains, and a program must exit 0."""
        if language == "python":
            async with self.client.worker(queue, shout, concurrency=4) as worker:
                await asyncio.wait_for(worker.connected.wait(), 30)
                yield
                await worker.drain()
            return
        if language == "go":
            example = self.go_program("./cmd/dukat-worker-example")
            argv = [example, "-address", self.address, "-queue", queue]
        else:
            argv = ["node", self.typescript_program, "serve", self.address, queue]
        worker = Program(argv, self.directory, f"{language}-worker")
        try:
            await self._until_served(queue, worker)
            yield
            assert await worker.stop() == 0, worker.log()
        finally:
            worker.kill()

    async def _until_served(self, queue: str, worker: Program) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while not any(q.name == queue and q.workers for q in (await self.client.status()).queues):
            if not worker.running() or loop.time() > deadline:
                pytest.fail(f"{worker.argv[0]} did not come to serve {queue!r}:\n{worker.log()}")
            await asyncio.sleep(0.02)

    async def _python_submits(self, queue: str) -> Any:
        hello = TaskSpec("hello", DispatchAction(queue, b"hello"))
        world = TaskSpec("world", DispatchAction(queue, b"world"), dependencies=("hello",))
        handle = await self.client.submit(JobSpec(tasks=(hello, world)))
        progress = [
            [event.task_id, event.fraction, event.message]
            async for event in handle.events()
            if isinstance(event, TaskProgress)
        ]
        job = await handle.wait()
        results = {task.id: task.result.payload.decode() for task in job.tasks if task.result}
        return {"state": job.state.name, "results": results, "progress": progress}


async def shout(task: DispatchTask) -> bytes:
    """The workers' contract, in Python."""
    task.report_progress(0.5, f"shouting {task.task_id}")
    words = [upstream.payload for upstream in task.upstream_results]
    return b" ".join([*words, task.payload.upper()])


@pytest.fixture
async def languages(
    daemon: DaemonProcess,
    go_program: Callable[[str], Path],
    typescript: Path,
    tmp_path: Path,
) -> AsyncIterator[Languages]:
    async with dukat.connect(daemon.address) as client:
        yield Languages(daemon, client, go_program, typescript, tmp_path)


@pytest.mark.parametrize(
    ("submitter", "worker"),
    [("go", "typescript"), ("typescript", "go"), ("python", "typescript"), ("go", "python")],
)
async def test_a_job_submitted_in_one_language_is_served_in_another(
    languages: Languages, submitter: str, worker: str
) -> None:
    queue = f"{submitter}-to-{worker}"
    async with languages.serving(worker, queue):
        seen = await languages.submit(submitter, queue)

    assert seen == SERVED


async def test_a_breaker_tripped_by_go_failures_refuses_a_typescript_caller(
    daemon: DaemonProcess, go_program: Callable[[str], Path], typescript: Path
) -> None:
    crosslang = go_program("./testdata/crosslang")
    tripped = await run_json([crosslang, "trip", daemon.address, "payments"])
    assert tripped == {"state": "OPEN", "failures": ["the downstream is down"] * 2}

    program = typescript / "test" / "programs" / "crosslang.js"
    refused = await run_json(["node", program, "breaker", daemon.address, "payments"])

    # Refused without being called, until the minute the Go side configured has passed.
    assert 50_000 < refused.pop("retryAfter") <= 60_000
    assert refused == {"refused": True, "called": False, "breaker": "payments", "halfOpen": False}
