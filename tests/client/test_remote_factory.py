"""`get_async_assistant(address=...)` reaches a daemon from a fresh interpreter that imported
only the engine's assistant module: the engine never imports the client, the top package
plugs it in (`dukat.core.async_assistant.set_remote_factory`)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import pytest

from dukat.core.scheduler import Scheduler
from dukatd import work_hub
from tests.client.daemon import Daemon, running_daemon

PROGRAM = """
import asyncio, sys
from dukat.core.async_assistant import get_async_assistant

assert "dukat.client" not in sys.modules and "grpc" not in sys.modules


async def double(n):
    return 2 * n


async def main():
    async with await get_async_assistant(model_name="fresh", address=sys.argv[1]) as assistant:
        results = await assistant.execute_tasks_in_parallel(
            [{"task_id": "d", "func": double, "args": (21,)}]
        )
    print(type(assistant).__name__, results["d"].result)


asyncio.run(main())
"""


@pytest.fixture
async def daemon() -> AsyncIterator[Daemon]:
    scheduler = Scheduler(max_concurrency=8)
    async with running_daemon(scheduler=scheduler, work_hub=work_hub.WorkerHub(scheduler)) as d:
        yield d


async def test_a_fresh_interpreter_reaches_the_daemon_through_the_engines_assistant(
    daemon: Daemon,
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-W",
        "error",
        "-c",
        PROGRAM,
        daemon.address,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    assert stdout.decode().split() == ["RemoteAssistant", "42"]
