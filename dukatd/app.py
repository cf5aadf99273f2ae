"""dukatd as a process: claim its sockets, build the scheduler, serve, drain on SIGTERM.

The daemon is a library too (STYLE.md habit 11): `await serve(config)` inside a running loop,
or `run(config)`, which makes the loop. `python -m dukatd` only parses the arguments and runs
`serve` on uvloop. Start-up, in order:

1. signal handlers (a SIGTERM during start-up drains once serving, instead of killing us);
2. the bearer token, when `--token-file` is given (`dukatd.auth`; health needs none);
   then the locks: the state directory (unless `--ephemeral`), then each unix socket — a second
   daemon stops here with the holder's pid, before touching anything of the first's;
3. with `--allow-exec` and a state directory: the `GroupLedger`, which kills the task
   process groups a crashed predecessor left behind; then the journal is opened and checked
   (`dukatd.journal`: a damaged one stops the start here, with what to do);
4. every TCP address (and the metrics') probed, so that a port in use stops the start with
   the option to change, before anything is served; a warning if
   `--keepalive-min-client-interval` is longer than dukat's clients' pings; the scheduler,
   and recovery of every job the journal kept (`dukatd.recovery`);
5. its service and the server, bound under `socket_umask()` (sockets 0660);
6. `server.start()`, a log line per address, the metrics endpoint, lines saying where the
   state is (or that it is ephemeral), whether exec is on and the `export DUKAT_ADDRESS=`
   for clients; then `READY=1` with a STATUS, and the watchdog.

The steps are `dukatd.daemon.Daemon`'s (`claim`, `start`), the scheduler is `dukatd.build`'s,
the checks and lines of steps 4 and 6 are `dukatd.start_up`'s, and the drain is
`dukatd.drain`'s. `serve` returns the exit status: 0 after a drain, 1 when the
daemon could not start (the reason is logged).

`GRPC_ENABLE_FORK_SUPPORT=0` must be in the environment before grpc is first imported (grpc
reads it once, at import): `python -m dukatd` sets it before importing this module; a program
that embeds the daemon and imports grpc itself must set it first. The exec runner spawns with
vfork, which runs no atfork handlers, so this only keeps grpc's fork machinery out of the way.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from dukat.core.clock import Clock
from dukat.errors import ConfigError, LockError, StartError
from dukatd.build import build_scheduler
from dukatd.config import Config
from dukatd.daemon import Daemon
from dukatd.drain import drain
from dukatd.notify import Notifier

# Daemon, StartError and build_scheduler live beside it (dukatd.daemon, dukat.errors,
# dukatd.build); they are found here too, where they were.
__all__ = ["Daemon", "StartError", "build_scheduler", "run", "serve"]

_log = logging.getLogger("dukatd")

EXIT_OK = 0
EXIT_START_FAILED = 1


async def serve(
    config: Config,
    *,
    install_signal_handlers: bool = True,
    ready: Callable[[Daemon], object] | None = None,
    reload_config: Callable[[], Config] | None = None,
    clock: Clock | None = None,
) -> int:
    """Run the daemon in the running loop until it is stopped; the exit status.

    `install_signal_handlers`: SIGTERM and SIGINT drain (a second one takes the fast path),
    SIGHUP reloads with `reload_config` (which re-reads the configuration; without it SIGHUP
    only logs). Without the handlers, stop the daemon with `Daemon.stop()`: `ready(daemon)`
    is called once it serves.
    """
    notifier = Notifier.from_environ(unset=True)
    daemon = Daemon(config, notifier, clock)
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    if install_signal_handlers:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, _on_stop_signal, daemon, signum)
            handled.append(signum)
        loop.add_signal_handler(signal.SIGHUP, daemon.reload, reload_config)
        handled.append(signal.SIGHUP)
    try:
        try:
            daemon.claim()
            await daemon.start()
        except (StartError, LockError, ConfigError, OSError) as error:
            _log.error("cannot start: %s", error)
            return EXIT_START_FAILED
        if ready is not None:
            ready(daemon)
        await daemon.stop_requested.wait()
        await drain(daemon)
        return EXIT_OK
    finally:
        await daemon.close_now()
        for signum in handled:
            loop.remove_signal_handler(signum)


def _on_stop_signal(daemon: Daemon, signum: signal.Signals) -> None:
    if daemon.stopping:
        _log.warning("%s again: stopping now, without waiting for tasks", signum.name)
        daemon.stop(fast=True)
    else:
        _log.info("%s: draining (send it again to stop at once)", signum.name)
        daemon.stop()


def run(
    config: Config,
    *,
    install_signal_handlers: bool = True,
    ready: Callable[[Daemon], object] | None = None,
    reload_config: Callable[[], Config] | None = None,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
    clock: Clock | None = None,
) -> int:
    """`serve` in a loop of its own (from `loop_factory`, e.g. `uvloop.new_event_loop`)."""
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(
            serve(
                config,
                install_signal_handlers=install_signal_handlers,
                ready=ready,
                reload_config=reload_config,
                clock=clock,
            )
        )
