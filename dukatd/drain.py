"""The drain: how dukatd stops on SIGTERM or SIGINT, in the order ARCHITECTURE gives.

1. `STOPPING=1` to systemd (with a STATUS), so `systemctl status` shows the unit deactivating.
2. Health goes NOT_SERVING for every service (`enter_graceful_shutdown`): load balancers and
   `python -m dukatd.health` see the drain before any call is refused.
3. Open Watch streams end with UNAVAILABLE "daemon shutting down" (`LiveStreams.end_all`);
   new ones are refused the same way. So do Work streams: the attempts their workers hold
   are interrupted at once ("worker 'w1' was disconnected: the daemon is stopping"),
   journaled RETRYING, and run again after the restart, once the workers reconnect.
4. `server.stop(shutdown_grace)`: no new calls; calls in progress get the grace, then are
   cancelled by grpc.
5. Running tasks get the same grace, counted from the same moment (grace and kill grace add
   up to the stop time that the systemd unit and Docker must leave room for):
   `Scheduler.drain` starts nothing new and waits until none runs or the grace is over, then
   cancels what still runs. Then `Scheduler.close` cancels every job: an exec task's process
   group gets SIGTERM, and SIGKILL `kill_grace` later. The journal stops recording when the
   grace is over: what is cancelled from there is still RUNNING in the journal, and the
   next daemon interrupts it (`Scheduler.restore`: it runs again without spending its retry
   policy, up to its `max_interruptions`); tasks still waiting stay as they were. It is
   flushed and closed after step 6.
6. `ExecRunner.kill_all`: what is left of any task process group gets the same treatment
   (normally nothing is; this covers an attempt that outlived its worker).
7. Then `Daemon.close_now` (in `serve`'s finally): socket files and locks are released.

A second signal during the drain sets `Daemon.fast`: every wait that is left ends at once,
grpc cancels every call, tasks are cancelled and their groups get SIGKILL without a grace.
Tasks that become ready during the grace (dependents of tasks that finished in it, dispatch
tasks a worker could now take) do not start: they wait READY and are cancelled with the rest.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from dukatd.streams import SHUTTING_DOWN

if TYPE_CHECKING:
    from dukatd.daemon import Daemon

__all__ = ["drain"]

_log = logging.getLogger("dukatd")

# Scheduler.close waits this long beyond the kill grace for cancelled attempts to end: a
# process group that got SIGKILL still has to be reaped and its pipes drained.
_CLOSE_MARGIN = 1.0


async def drain(daemon: Daemon) -> None:
    """Stop serving and end every task, as the module docstring says; never raises."""
    config = daemon.config
    scheduler, server, service = daemon.scheduler, daemon.server, daemon.service
    assert scheduler is not None and server is not None and service is not None
    loop = asyncio.get_running_loop()
    began = loop.time()
    grace = 0.0 if daemon.fast.is_set() else config.shutdown_grace

    daemon.notifier.stopping(f"draining: {scheduler.running} task(s) running")
    await daemon.health.enter_graceful_shutdown()
    ended = service.streams.end_all(SHUTTING_DOWN)
    _log.info(
        "draining: health NOT_SERVING, %d stream(s) ended, %d task(s) running, grace %gs",
        ended,
        scheduler.running,
        grace,
    )
    stopping_server = asyncio.ensure_future(server.stop(grace))

    journal = daemon.journal
    # What the drain cancels from here on must run again after a restart: not journaled.
    freeze = journal.freeze if journal is not None else None
    draining = asyncio.ensure_future(scheduler.drain(grace, before_cancel=freeze))
    if await _unless_fast(daemon, draining) and _cancelled(draining):
        _log.info("draining: grace over, cancelled %d running task(s)", draining.result())
    if journal is not None:
        journal.freeze()  # the fast path skipped the drain's own call
    close_grace = 0.0 if daemon.fast.is_set() else config.kill_grace + _CLOSE_MARGIN
    if daemon.fast.is_set() and daemon.exec_runner is not None:
        daemon.exec_runner.kill_all_now()  # fast: SIGKILL before asking anything to stop
    await _step("closing the scheduler", scheduler.close(close_grace))
    if daemon.exec_runner is not None:
        kill_grace = 0.0 if daemon.fast.is_set() else config.kill_grace
        left = await _step("killing task processes", daemon.exec_runner.kill_all(kill_grace))
        if left:
            _log.warning("draining: %d task process group(s) outlived their task", left)
    if journal is not None:
        await _step("flushing the journal", journal.close())

    if not await _unless_fast(daemon, asyncio.shield(stopping_server)):
        await _step("cancelling calls", server.stop(None))
    await _step("stopping the server", stopping_server)
    _log.info("drained in %.2fs", loop.time() - began)


def _cancelled(draining: asyncio.Future[int]) -> int:
    """How many attempts `Scheduler.drain` cancelled; 0 if it failed (logged already)."""
    if draining.cancelled() or draining.exception() is not None:
        return 0
    return draining.result()


async def _unless_fast(daemon: Daemon, awaitable: Awaitable[Any]) -> bool:
    """Await `awaitable` until it finishes, or until the fast path is asked for.

    True when it finished. Otherwise it is cancelled (a shielded one keeps running).
    """
    work = asyncio.ensure_future(awaitable)
    fast = asyncio.ensure_future(daemon.fast.wait())
    try:
        await asyncio.wait({work, fast}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        fast.cancel()
    if work.done():
        if not work.cancelled() and work.exception() is not None:
            _log.error("draining: %s", work.exception())
        return True
    work.cancel()
    return False


async def _step(what: str, awaitable: Awaitable[Any]) -> Any:
    """One step of the drain: a failure is logged and the drain goes on (locks must go)."""
    try:
        return await awaitable
    except Exception:
        _log.exception("draining: %s failed", what)
        return None
