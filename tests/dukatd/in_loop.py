"""dukatd served in the test's own event loop (`dukatd.app.serve`), for tests that look inside."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from dukat.core.clock import Clock
from dukatd.app import EXIT_OK, Daemon, serve
from dukatd.config import Config


@asynccontextmanager
async def served(
    config: Config, *, within: float = 15.0, clock: Clock | None = None
) -> AsyncIterator[Daemon]:
    """The daemon serving `config` for the block; stopped gracefully after it.

    A clean block must end in a clean exit (EXIT_OK). A block that raised stops the daemon
    too, but its own error is the one reported."""
    started: asyncio.Future[Daemon] = asyncio.get_running_loop().create_future()
    serving = asyncio.create_task(
        serve(config, install_signal_handlers=False, ready=started.set_result, clock=clock)
    )
    await asyncio.wait({started, serving}, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    if not started.done():
        if serving.done():
            raise AssertionError(f"dukatd exited with {serving.result()} before it was ready")
        serving.cancel()
        raise TimeoutError(f"dukatd was not ready within {within} s")
    daemon = started.result()
    try:
        yield daemon
    except BaseException:
        daemon.stop()
        with contextlib.suppress(Exception):  # the block's error is the one to see
            await asyncio.wait_for(serving, within)
        raise
    daemon.stop()
    assert await asyncio.wait_for(serving, within) == EXIT_OK
