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

The drain is `dukatd.drain`'s. `serve` returns the exit status: 0 after a drain, 1 when the
daemon could not start (the reason is logged).

`GRPC_ENABLE_FORK_SUPPORT=0` must be in the environment before grpc is first imported (grpc
reads it once, at import): `python -m dukatd` sets it before importing this module; a program
that embeds the daemon and imports grpc itself must set it first. The exec runner spawns with
vfork, which runs no atfork handlers, so this only keeps grpc's fork machinery out of the way.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shlex
import signal
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health

import dukat
from dukat.actions import ExecAction
from dukat.client import channel_options
from dukat.core.breaker import BreakerRegistry
from dukat.core.resources import ResourcePool
from dukat.core.runners import Unrunnable
from dukat.core.scheduler import Scheduler
from dukat.daemon_status import DaemonStatus
from dukat.errors import StartError, ValidationError
from dukatd.address import TcpAddress, UnixAddress, probe_tcp
from dukatd.auth import BearerTokenAuth
from dukatd.breaker_service import MAX_BREAKERS, BreakerService
from dukatd.config import Config, ConfigError
from dukatd.daemon_service import DaemonService, status_of
from dukatd.drain import drain
from dukatd.exec_groups import GroupLedger
from dukatd.exec_process import LEADERS
from dukatd.exec_runner import ExecOptions, ExecRunner
from dukatd.journal import JOURNAL_FILE, Journal, JournalError
from dukatd.lock import (
    LockError,
    LockFile,
    UnixSocketClaim,
    claim_state_dir,
    claim_unix_socket,
    socket_umask,
)
from dukatd.metrics import DaemonMetrics, MetricsServer, start_metrics_server
from dukatd.metrics_journal import JournalMetrics
from dukatd.metrics_work import WorkMetrics
from dukatd.notify import Notifier
from dukatd.orphans import OrphanReaper
from dukatd.recovery import decode_result, encode_result, recover, recover_breakers
from dukatd.scheduler_service import SchedulerService, page_bytes_for, result_budget_for
from dukatd.server import create_server
from dukatd.work_hub import WorkerHub

__all__ = ["Daemon", "StartError", "run", "serve"]

_log = logging.getLogger("dukatd")

EXIT_OK = 0
EXIT_START_FAILED = 1
LEDGER_DIR = "exec-groups"
"""Directory in the state dir where the exec runner records live task process groups."""


class Daemon:
    """One daemon: what `serve` built, and the handle that stops it (`stop`)."""

    def __init__(self, config: Config, notifier: Notifier) -> None:
        self.config = config
        self.notifier = notifier
        self.state_lock: LockFile | None = None
        self.claims: list[UnixSocketClaim] = []
        self.ledger: GroupLedger | None = None
        self.journal: Journal | None = None
        self.scheduler: Scheduler | None = None
        self.exec_runner: ExecRunner | None = None
        self.service: SchedulerService | None = None
        self.work_hub: WorkerHub | None = None
        self.metrics: DaemonMetrics | None = None
        self.metrics_http: MetricsServer | None = None
        self.auth: BearerTokenAuth | None = None
        self.health = health.aio.HealthServicer()
        self.server: grpc.aio.Server | None = None
        self.watchdog: asyncio.Task[None] | None = None
        self.reaper: OrphanReaper | None = None
        self.started_at = time.time()
        self.stop_requested = asyncio.Event()
        self.fast = asyncio.Event()
        """Set by a second stop (a second SIGTERM or Ctrl-C): the drain skips its waits."""

    def stop(self, *, fast: bool = False) -> None:
        """Begin the drain; a second call, or `fast=True`, takes the fast path."""
        if fast or self.stop_requested.is_set():
            self.fast.set()
        self.stop_requested.set()

    # -- start-up ---------------------------------------------------------------------------

    def claim(self) -> None:
        """Take the locks and, with exec on, kill what a crashed predecessor left running."""
        config = self.config
        # Read first: a missing or empty token file stops the start before any lock is taken.
        token = config.read_token()
        if token is not None:
            try:
                self.auth = BearerTokenAuth(token)
            except ValueError as error:
                where = config.sources.get("token_file", "--token-file")
                raise StartError(f"{where}: {error}") from None
        if not config.ephemeral:
            self.state_lock = claim_state_dir(config.state_dir)
        for path in config.unix_socket_paths:
            self.claims.append(claim_unix_socket(path))
        if config.allow_exec and not config.ephemeral:
            self.ledger = GroupLedger.open(config.state_dir / LEDGER_DIR)
            if self.ledger.killed:
                _log.warning(
                    "killed %d process(es) of tasks left running by an earlier dukatd: %s",
                    len(self.ledger.killed),
                    ", ".join(map(str, self.ledger.killed)),
                )
        if not config.ephemeral:
            try:
                self.journal = Journal.open(
                    config.state_dir / JOURNAL_FILE,
                    encode_result=encode_result,
                    decode_result=decode_result,
                    sync=config.journal_sync,
                    max_bytes=config.journal_max_bytes or None,
                    event_tail=config.event_log_length,
                )
            except JournalError as error:
                raise StartError(str(error)) from None

    def check_ports(self) -> None:
        """Stop the start, with what to do, if a TCP address cannot be bound (a port in use:
        another dukatd's, most often its metrics'), before anything is bound or served."""
        config = self.config
        for address in config.addresses:
            if isinstance(address, TcpAddress):
                _check_port(config, address, "listen", "--listen HOST:PORT")
        if config.metrics_address is not None:
            _check_port(config, config.metrics_address, "metrics_listen", METRICS_FIX)

    async def start(self) -> None:
        """Build the scheduler and the server, bind every address, start serving."""
        config = self.config
        _log.info("dukatd %s, pid %d", dukat.__version__, os.getpid())
        self.check_ports()
        warn_of_client_pings(config)
        open_exec = config.open_exec_address
        if open_exec is not None:  # only with --insecure
            _log.warning(
                "exec tasks are served on %s without a token (--insecure): every local user "
                "who can connect runs commands as this daemon's user; give --token-file",
                open_exec,
            )
        self.scheduler, self.exec_runner = build_scheduler(
            config, ledger=self.ledger, journal=self.journal
        )
        # Dispatch tasks wait READY until a worker serving their queue takes them over Work.
        # With a journal, no worker gets an attempt before its RUNNING state is on disk.
        self.work_hub = WorkerHub(
            self.scheduler,
            heartbeat_interval=config.worker_heartbeat_interval,
            heartbeat_timeout=config.worker_heartbeat_timeout,
            max_result_bytes=config.max_result_bytes,
            before_send=self.journal.settled if self.journal is not None else None,
        )
        request_ids = self.recover() if self.journal is not None else {}
        self.service = SchedulerService(
            self.scheduler,
            allow_exec=config.allow_exec,
            max_watchers=config.max_watch_streams,
            max_watchers_per_client=config.max_watch_streams_per_client,
            work_hub=self.work_hub,
            journal=self.journal,
            request_ids=request_ids,
            # A GetJob or ListJobs over the daemon's own message limit would fail
            # RESOURCE_EXHAUSTED.
            result_budget=result_budget_for(config.max_message_bytes),
            page_bytes=page_bytes_for(config.max_message_bytes),
        )
        interceptors: list[grpc.aio.ServerInterceptor] = []
        # Only /metrics reads the registry: with it off, no listener or interceptor pays its
        # cost on every task and call for numbers nobody can scrape.
        if config.metrics_address is not None:
            self.metrics = DaemonMetrics()
            self.metrics.attach(self.scheduler)
            if self.journal is not None:
                self.metrics.registry.register(JournalMetrics(self.journal))
            # The hub reports the count; it knows nothing of prometheus (metrics subscribe).
            self.work_hub.add_listener(self.metrics.workers_connected.set)
            self.metrics.registry.register(WorkMetrics(self.work_hub))
            # Metrics outermost: they count the calls the token check refuses too.
            interceptors.append(self.metrics.grpc)
        if self.auth is not None:
            interceptors.append(self.auth)
        # The umask is process-wide, and nothing else runs yet: the sockets that grpc makes
        # while binding and starting get mode 0660, not the daemon's umask's.
        with socket_umask():
            self.server = await create_server(
                self.scheduler,
                config.listen,
                service=self.service,
                breaker_service=BreakerService(self.scheduler.breakers, journal=self.journal),
                daemon_service=DaemonService(self.status),
                health_servicer=self.health,
                max_message_bytes=config.max_message_bytes,
                keepalive_time=config.keepalive_time,
                keepalive_timeout=config.keepalive_timeout,
                min_client_ping_interval=config.keepalive_min_client_interval,
                credentials=tls_credentials(config),
                interceptors=interceptors,
            )
            await self.server.start()
        self.started_at = time.time()
        for address in config.listen:
            _log.info("listening on %s", address)
        metrics_address = config.metrics_address
        if self.metrics is not None and metrics_address is not None:
            try:
                self.metrics_http = await start_metrics_server(
                    self.metrics.registry, metrics_address.host, metrics_address.port
                )
            except OSError as error:  # taken since check_ports looked
                raise StartError(
                    _bind_failed(config, metrics_address, "metrics_listen", METRICS_FIX, error)
                ) from None
            http = self.metrics_http
            _log.info("metrics on http://%s:%d/metrics", http.host, http.port)
        else:
            _log.info("metrics off")
        if OrphanReaper.needed():  # no init above us: the orphans of tasks are ours to reap
            self.reaper = OrphanReaper(LEADERS)
            self.reaper.start()
        log_start_up(config)
        exec_state = "on" if config.allow_exec else "off"
        self.notifier.ready(f"serving on {', '.join(config.listen)}; exec {exec_state}")
        self.watchdog = self.notifier.start_watchdog()

    def status(self) -> DaemonStatus:
        """What `dukat status` shows (DaemonService.GetStatus)."""
        assert self.scheduler is not None and self.work_hub is not None
        config = self.config
        return status_of(
            self.scheduler,
            started_at=self.started_at,
            listen=config.listen,
            state_dir=None if config.ephemeral else str(config.state_dir),
            allow_exec=config.allow_exec,
            workers=self.work_hub.sessions,
        )

    def recover(self) -> dict[str, str]:
        """Start the journal and bring back what it kept; the request ids of those jobs."""
        journal, scheduler = self.journal, self.scheduler
        assert journal is not None and scheduler is not None
        try:
            jobs, breakers = journal.load()
        except JournalError as error:
            raise StartError(str(error)) from None
        # The file's settings win over the API's.
        recover_breakers(scheduler.breakers, breakers, configured=self.config.breakers)
        journal.start(
            publish=scheduler.publish,
            result_of=scheduler.task_result,
            interruptions_of=scheduler.task_interruptions,
        )
        # Listening before recovery: what recovery changes (tasks re-queued) is journaled too.
        scheduler.add_record_listener(journal.on_record)
        scheduler.add_drop_listener(journal.drop)
        recovered = recover(scheduler, journal, jobs)
        if jobs:
            _log.info(
                "recovered %d job(s) from %s: %d unfinished (%d task(s) interrupted, "
                "run again up to their max_interruptions), %d finished",
                recovered.live + recovered.finished,
                journal.path,
                recovered.live,
                recovered.interrupted,
                recovered.finished,
            )
        if recovered.live_tasks > self.config.max_tasks:
            # Starting anyway: refusing would leave the jobs accepted before to nobody.
            _log.warning(
                "the journal holds %d task(s) of unfinished jobs, more than --max-tasks "
                "(%d): all were recovered, and new jobs are refused (RESOURCE_EXHAUSTED) "
                "until enough of them finish; raise --max-tasks if the host has the memory",
                recovered.live_tasks,
                self.config.max_tasks,
            )
        return recovered.request_ids

    # -- reload -----------------------------------------------------------------------------

    def reload(self, read_config: Callable[[], Config] | None) -> None:
        """SIGHUP: apply the breakers of a freshly read configuration.

        Only the breakers change live (`BreakerRegistry.configure` keeps each breaker's
        state); the resource pool cannot change capacity under granted holdings yet, and
        the rest (addresses, exec, limits) needs a restart: such changes are logged.
        """
        if read_config is None or self.scheduler is None:
            _log.warning("SIGHUP: reloading is not available here; restart to change settings")
            return
        self.notifier.reloading()
        try:
            fresh = read_config()
        except (ConfigError, OSError) as error:
            _log.error("SIGHUP: not reloaded, the configuration is invalid: %s", error)
        else:
            for name, settings in fresh.breakers.items():  # the file may pass the breakers' cap
                self.scheduler.breakers.configure(name, settings, within_limit=False)
            _log.info("SIGHUP: reloaded %d breaker(s)", len(fresh.breakers))
            changed = [
                option
                for option in ("listen", "allow_exec", "max_concurrency", "resources", "ephemeral")
                if getattr(fresh, option) != getattr(self.config, option)
            ]
            if changed:
                _log.warning("SIGHUP: %s changed; restart dukatd to apply", ", ".join(changed))
        self.notifier.ready()

    # -- the end ----------------------------------------------------------------------------

    async def close_now(self) -> None:
        """The last word, after a drain or a failed start: stop whatever still runs, let go
        of every lock. Idempotent, and never waits on tasks."""
        if self.watchdog is not None:
            self.watchdog.cancel()
        if self.server is not None:
            with contextlib.suppress(Exception):
                await self.server.stop(None)
        if self.exec_runner is not None:
            self.exec_runner.kill_all_now()
        if self.reaper is not None:
            self.reaper.stop()
            self.reaper.reap()  # what the last tasks left behind
        if self.ledger is not None:
            self.ledger.close()
        if self.journal is not None:
            self.journal.freeze()  # closing cancels every job: not something to remember
        if self.scheduler is not None:
            with contextlib.suppress(Exception):
                await self.scheduler.close(0)
        if self.journal is not None:
            with contextlib.suppress(Exception):
                await self.journal.close()
        if self.metrics_http is not None:
            self.metrics_http.close()
            with contextlib.suppress(Exception):
                await self.metrics_http.wait_closed()
        if self.metrics is not None:
            self.metrics.detach()
        # Sockets first (each removed while its lock is still held), then the state lock.
        for claim in self.claims:
            claim.release()
        if self.state_lock is not None:
            self.state_lock.release()
        self.notifier.close()

    def __repr__(self) -> str:
        state = "fast stop" if self.fast.is_set() else "stopping" if self.stopping else "up"
        return f"<Daemon {', '.join(self.config.listen)} {state}>"

    @property
    def stopping(self) -> bool:
        return self.stop_requested.is_set()


def build_scheduler(
    config: Config, *, ledger: GroupLedger | None = None, journal: Journal | None = None
) -> tuple[Scheduler, ExecRunner | None]:
    """The daemon's one scheduler, with the exec runner when exec is allowed.

    With a `journal`, watchers see only what it has written (`hold_events`), and no task
    process starts before its RUNNING state is written (a crash must not take back an
    attempt that ran)."""
    breakers = BreakerRegistry(max_breakers=MAX_BREAKERS)
    for name, settings in config.breakers.items():  # the file may pass the cap
        breakers.configure(name, settings, within_limit=False)
    exec_runner = None
    runners: dict[type, object] = {}
    if config.allow_exec:
        options = ExecOptions(
            kill_grace=config.kill_grace,
            # The runner keeps at least one byte; 0 in the config means "keep nothing useful".
            tail_bytes=max(1, config.output_tail_bytes),
        )
        before_spawn = journal.settled if journal is not None else None
        exec_runner = ExecRunner(options, ledger=ledger, before_spawn=before_spawn)
        runners[ExecAction] = exec_runner
    else:  # Submit refuses exec tasks; these are ones accepted while exec was on, restored
        runners[ExecAction] = Unrunnable(ValidationError(EXEC_OFF))
    scheduler = Scheduler(
        max_concurrency=config.max_concurrency,
        resources=ResourcePool(dict(config.resources)),
        breakers=breakers,
        runners=runners,  # type: ignore[arg-type]
        max_tasks_per_job=config.max_tasks_per_job,
        max_tasks=config.max_tasks,
        event_log_length=config.event_log_length,
        retain_finished_jobs=config.retain_finished_jobs,
        finished_job_ttl=config.finished_job_ttl,
        hold_events=journal is not None,
    )
    return scheduler, exec_runner


EXEC_OFF = (
    "exec tasks are off on this daemon; restart it with --allow-exec, then run the job again "
    "with `dukat rerun JOB`"
)
"""Why an exec task accepted while exec was on fails on a daemon restarted without it."""

METRICS_FIX = "--metrics-listen 127.0.0.1:PORT, or turn metrics off with --metrics-listen off"
"""What to do about a metrics address that cannot be bound (a second dukatd's, by default)."""


def _check_port(config: Config, address: TcpAddress, option: str, fix: str) -> None:
    try:
        probe_tcp(address)
    except OSError as error:
        raise StartError(_bind_failed(config, address, option, fix, error)) from None


def _bind_failed(config: Config, address: TcpAddress, option: str, fix: str, error: OSError) -> str:
    """One line: the address, where it came from, why it cannot be bound, and the fix."""
    where = config.sources.get(option, "the default")
    reason = error.strerror or str(error)
    if error.errno == errno.EADDRINUSE:
        reason = "the port is in use (by another dukatd, or another program)"
    return f"cannot listen on {address} ({where}): {reason}; give another port with {fix}"


def log_start_up(config: Config) -> None:
    """What an operator wants to know of a daemon that just started, and how to reach it."""
    if config.ephemeral:
        _log.info("ephemeral (--ephemeral): jobs are kept in memory only, none outlives dukatd")
    else:
        _log.info("state directory %s (the journal, %s)", config.state_dir, JOURNAL_FILE)
    if config.allow_exec:
        _log.info("exec tasks on (--allow-exec): they run as this daemon's user")
    else:
        _log.info("exec tasks off: they are refused (start dukatd with --allow-exec to run them)")
    _log.info("for clients: %s", client_exports(config))


def client_exports(config: Config) -> str:
    """The shell line that points the command line and clients at this daemon: its first
    unix socket (else its first address), and its token file if it has one."""
    addresses = config.addresses
    address = next((a for a in addresses if isinstance(a, UnixAddress)), addresses[0])
    line = f"export DUKAT_ADDRESS={shlex.quote(str(address))}"
    if config.token_file is not None:
        line += f" DUKAT_TOKEN_FILE={shlex.quote(str(config.token_file.absolute()))}"
    return line


def warn_of_client_pings(config: Config) -> None:
    """Log a warning when dukat's own clients would ping more often than the daemon allows.

    They keep idle connections alive with a ping every `keepalive_time_ms` (dukat.client);
    the third ping that comes sooner than `--keepalive-min-client-interval` after the last
    ends the connection with GOAWAY too_many_pings, and an idle worker would lose its
    stream over and over. Only a warning: other clients may ping less often.
    """
    client_interval = dict(channel_options())["grpc.keepalive_time_ms"] / 1000
    if config.keepalive_min_client_interval > client_interval:
        where = config.sources.get(
            "keepalive_min_client_interval", "--keepalive-min-client-interval"
        )
        _log.warning(
            "%s is %gs, longer than the %gs between the keepalive pings of dukat's own "
            "clients: the daemon would end their connections with GOAWAY too_many_pings; "
            "set it to %gs or less",
            where,
            config.keepalive_min_client_interval,
            client_interval,
            client_interval,
        )


def tls_credentials(config: Config) -> grpc.ServerCredentials | None:
    """Server credentials for the TCP addresses from the PEM files, or None without TLS."""
    if config.tls_cert_file is None or config.tls_key_file is None:
        return None
    pem: dict[str, bytes] = {}
    for option in ("tls_cert_file", "tls_key_file"):
        path: Path = getattr(config, option)
        try:
            pem[option] = path.read_bytes()
        except OSError as error:
            where = config.sources.get(option, option)
            raise StartError(f"{where}: cannot read {str(path)!r}: {error.strerror}") from None
    return grpc.ssl_server_credentials([(pem["tls_key_file"], pem["tls_cert_file"])])


async def serve(
    config: Config,
    *,
    install_signal_handlers: bool = True,
    ready: Callable[[Daemon], object] | None = None,
    reload_config: Callable[[], Config] | None = None,
) -> int:
    """Run the daemon in the running loop until it is stopped; the exit status.

    `install_signal_handlers`: SIGTERM and SIGINT drain (a second one takes the fast path),
    SIGHUP reloads with `reload_config` (which re-reads the configuration; without it SIGHUP
    only logs). Without the handlers, stop the daemon with `Daemon.stop()`: `ready(daemon)`
    is called once it serves.
    """
    notifier = Notifier.from_environ(unset=True)
    daemon = Daemon(config, notifier)
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
) -> int:
    """`serve` in a loop of its own (from `loop_factory`, e.g. `uvloop.new_event_loop`)."""
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(
            serve(
                config,
                install_signal_handlers=install_signal_handlers,
                ready=ready,
                reload_config=reload_config,
            )
        )
