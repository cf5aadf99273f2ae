"""The daemon's options as one frozen `Config`: each field with its default, and every value
checked in one place, `Config.__post_init__`, which raises `ConfigError` naming where a bad
one came from (`Config.sources`). Reading them from flags, variables and the TOML file is
`dukatd.config`'s; what each option is called there, `dukatd.options`'.
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import NoReturn

from dukat.core.breaker import CircuitBreakerConfig
from dukat.core.resources import ResourceType
from dukat.defaults import default_address, first_absolute
from dukat.errors import ConfigError
from dukatd.address import ListenAddress, TcpAddress, UnixAddress, parse_address, parse_tcp_address
from dukatd.options import BUILTIN_NAMES, BY_FIELD, EXECUTORS, LOG_LEVELS, MIB

__all__ = ["Config", "default_listen", "default_max_concurrency", "default_state_dir"]

_GRPC_MAX_MESSAGE = 2**31 - 1  # grpc keeps message lengths in a signed 32-bit int
_RESOURCE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


# -- defaults that depend on the environment ------------------------------------------------


def default_listen(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """`unix:` + `dukatd.sock` in `$RUNTIME_DIRECTORY`, else `$XDG_RUNTIME_DIR`, else `/tmp`.

    The `/tmp` fallback is a private directory `/tmp/dukatd-$UID/` (created 0700 by
    `dukatd.lock.claim_unix_socket`), since /tmp itself is shared by every user. The same
    function tells clients where to connect (`dukat.defaults.default_address`).
    """
    return (default_address(environ),)


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """`$STATE_DIRECTORY`, else `$XDG_STATE_HOME/dukatd`, else `~/.local/state/dukatd`."""
    environ = os.environ if environ is None else environ
    if state := first_absolute(environ.get("STATE_DIRECTORY")):
        return state
    if xdg := first_absolute(environ.get("XDG_STATE_HOME")):
        return xdg / "dukatd"
    home = environ.get("HOME") or os.path.expanduser("~")
    return Path(home) / ".local" / "state" / "dukatd"


def default_max_concurrency() -> int:
    """max(64, 8 x the CPUs this process may run on).

    A slot is a coroutine, and most running tasks wait on something else (a subprocess, a
    remote worker), so slots are cheap and a CPU count would throttle dispatch; 64 is the
    engine's default and keeps a small host's workers fed. CPU-heavy exec tasks are bounded by
    the `cpu` resource they ask for, not by this. The affinity mask respects taskset/cpusets.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(64, 8 * cpus)


# -- the options ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """Everything the daemon is told at start; `parse_args` builds one from argv and env."""

    listen: tuple[str, ...] = field(default_factory=default_listen)
    """Addresses served, `unix:/path` or `host:port`, in canonical spelling."""
    metrics_listen: str | None = "127.0.0.1:9464"
    """HOST:PORT of the Prometheus /metrics endpoint; None (`off`) serves none."""
    state_dir: Path = field(default_factory=default_state_dir)
    """Directory of the journal and the state lock file."""
    ephemeral: bool = False
    """Keep jobs in memory only: no journal, nothing survives a restart."""
    allow_exec: bool = False
    """Accept exec tasks (run argv as a subprocess of the daemon, as its user)."""
    executor: str = "local"
    """Where exec tasks run: 'local' (this host) or 'ray' (a Ray cluster's nodes)."""
    ray_address: str = "auto"
    """The Ray cluster of the 'ray' executor: auto, HOST:PORT, ray://HOST:PORT or local."""
    ray_refresh_interval: float = 10.0
    """Seconds between two looks at the Ray cluster's nodes and resources."""
    ray_connect_timeout: float = 30.0
    """Seconds connecting to the Ray cluster may take (and start-up waits for it)."""
    max_concurrency: int = field(default_factory=default_max_concurrency)
    """Tasks running at once across every job."""
    resources: Mapping[str, float] = field(default_factory=dict)
    """Capacities by resource name; built-ins not named keep the engine's 1.0."""
    breakers: Mapping[str, CircuitBreakerConfig] = field(default_factory=dict)
    """Named circuit breakers created at start with these settings (TOML only)."""
    token_file: Path | None = None
    """File holding the bearer token every client must send (health is exempt)."""
    tls_cert_file: Path | None = None
    """PEM certificate chain served on TCP addresses."""
    tls_key_file: Path | None = None
    """PEM private key of `tls_cert_file`."""
    insecure: bool = False
    """Serve TCP beyond loopback without TLS or without a token, knowingly."""
    max_tasks_per_job: int = 100_000
    """Tasks one Submit may carry."""
    max_tasks: int = 500_000
    """Tasks held in memory, of every job; a Submit past it is refused (bench/memory.py
    measures about 1.7 KB a task)."""
    max_message_bytes: int = 64 * MIB
    """Largest gRPC message received or sent."""
    max_result_bytes: int = 1 * MIB
    """Largest result a worker may return for one task (max_message_bytes bounds it too)."""
    output_tail_bytes: int = 64 * 1024
    """Bytes of each exec task's stdout and stderr kept after it ends."""
    journal_sync: str = "normal"
    """'normal': a journal commit survives a crash or kill of dukatd; 'full': it is fsynced
    and survives power loss too."""
    journal_max_bytes: int = 0
    """Largest size of the journal file (0: no limit); past it Submit is refused."""
    event_log_length: int = 10_000
    """Events kept per job for replay; a watcher behind that gets a snapshot."""
    max_watch_streams: int = 1_000
    """Watch streams open at once."""
    max_watch_streams_per_client: int = 100
    """Watch streams one client (its dukat-client-id metadata, else its peer) may hold open."""
    retain_finished_jobs: int = 1_000
    """Finished jobs kept in memory for GetJob, Watch and ListJobs."""
    finished_job_ttl: float = 3600.0
    """Seconds a finished job is kept in memory at most."""
    worker_heartbeat_interval: float = 10.0
    """Seconds between the heartbeats of a Work stream, each way."""
    worker_heartbeat_timeout: float = 30.0
    """Seconds of silence after which a Work stream is taken for dead, by either side."""
    keepalive_time: float = 30.0
    """Seconds between the server's keepalive pings on an idle connection."""
    keepalive_timeout: float = 10.0
    """Seconds to wait for a ping's ack before the connection is dropped."""
    keepalive_min_client_interval: float = 10.0
    """Shortest interval between client pings tolerated; more often gets GOAWAY."""
    shutdown_grace: float = 5.0
    """Seconds a drain waits for RPCs and running tasks before cancelling them."""
    kill_grace: float = 2.0
    """Seconds a task's process group has after SIGTERM before SIGKILL."""
    log_level: str = "INFO"
    """Threshold of the daemon's log: DEBUG, INFO, WARNING, ERROR or CRITICAL."""
    config_file: Path | None = None
    """The TOML file the options were read from, kept for SIGHUP reloads."""
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    """Where each option was set (`--listen`, `DUKATD_LISTEN`, ...); absent means default."""

    def __post_init__(self) -> None:
        _validate(self)

    # -- what the server reads --------------------------------------------------------------

    @property
    def addresses(self) -> tuple[ListenAddress, ...]:
        """`listen`, parsed."""
        return tuple(parse_address(text) for text in self.listen)

    @property
    def unix_socket_paths(self) -> tuple[Path, ...]:
        return tuple(a.path for a in self.addresses if isinstance(a, UnixAddress))

    @property
    def open_exec_address(self) -> TcpAddress | None:
        """A TCP address on which whoever connects may run exec tasks (exec allowed and no
        token: refused unless `insecure`), or None."""
        if not self.allow_exec or self.token_file is not None:
            return None
        return next((a for a in self.addresses if isinstance(a, TcpAddress)), None)

    @property
    def metrics_address(self) -> TcpAddress | None:
        return None if self.metrics_listen is None else parse_tcp_address(self.metrics_listen)

    def grpc_server_options(self) -> list[tuple[str, int]]:
        """Channel arguments for `grpc.aio.server(options=...)`: sizes and keepalive.

        The very list `dukatd.server.create_server` builds from these options (one table of
        them, in `dukatd.server.server_options`). Clients (dukat.client and the others) must
        send keepalive pings no more often than `keepalive_min_client_interval`, or the
        server answers GOAWAY "too_many_pings".
        """
        # Imported here: dukatd.server loads grpc and the generated code, which parsing the
        # options (and `dukatd --help`, and a bad flag's exit 2) has no need to wait for.
        from dukatd.server import server_options

        return server_options(
            self.max_message_bytes,
            keepalive_time=self.keepalive_time,
            keepalive_timeout=self.keepalive_timeout,
            keepalive_min_client_interval=self.keepalive_min_client_interval,
        )

    def read_token(self) -> str | None:
        """The bearer token from `token_file` (surrounding whitespace dropped), or None.

        A file that other users may read (or anyone but its owner change) is refused, as ssh
        refuses such a key: the token is a secret no longer. Its group may read it."""
        if self.token_file is None:
            return None
        try:
            with self.token_file.open("rb") as file:
                mode = stat.S_IMODE(os.fstat(file.fileno()).st_mode)
                text = file.read().decode()
        except (OSError, UnicodeDecodeError) as error:
            problem = f"cannot read {str(self.token_file)!r}: {error}"
            raise self._error("token_file", problem) from None
        if mode & 0o026:
            may = " and ".join(
                verb for verb, bits in (("read", 0o004), ("change", 0o022)) if mode & bits
            )
            raise self._error(
                "token_file",
                f"{str(self.token_file)!r} is mode {mode:04o}: other users may {may} the "
                "token; chmod 600 it (640 to share it with its group), and replace the token "
                "if it may have been read",
            )
        token = text.strip()
        if not token:
            raise self._error("token_file", f"{str(self.token_file)!r} is empty")
        return token

    def _error(self, option: str, problem: str) -> ConfigError:
        return ConfigError(problem, option=option, source=self.sources.get(option))


# -- validation: the one place ----------------------------------------------------------------


def _validate(config: Config) -> None:
    def fail(option: str, problem: str) -> NoReturn:
        raise config._error(option, problem)

    def put(option: str, value: object) -> None:
        object.__setattr__(config, option, value)  # normalising a frozen instance

    # Normalise first, so that equal configurations compare equal and nobody mutates ours.
    put("sources", MappingProxyType(dict(config.sources)))
    if isinstance(config.listen, str):
        fail("listen", f"must be a sequence of addresses, not the string {config.listen!r}")
    if not config.listen:
        fail("listen", "needs at least one address")
    addresses: list[ListenAddress] = []
    for text in config.listen:
        if not isinstance(text, str):
            fail("listen", f"an address must be a string, not {text!r}")
        try:
            address = parse_address(text)
        except ValueError as error:
            fail("listen", str(error))
        if address in addresses:
            fail("listen", f"{str(address)!r} is given twice")
        addresses.append(address)
    put("listen", tuple(str(a) for a in addresses))

    if config.metrics_listen is not None:
        try:
            put("metrics_listen", str(parse_tcp_address(config.metrics_listen)))
        except ValueError as error:
            fail("metrics_listen", f"{error}; or 'off'")

    for option in ("state_dir", "token_file", "tls_cert_file", "tls_key_file", "config_file"):
        value = getattr(config, option)
        if value is None and option != "state_dir":
            continue
        if not isinstance(value, (str, os.PathLike)) or not str(value):
            fail(option, f"must be a path, not {value!r}")
        put(option, Path(os.path.abspath(os.path.expanduser(value))))

    for option in ("ephemeral", "allow_exec", "insecure"):
        if not isinstance(getattr(config, option), bool):
            fail(option, f"must be true or false, not {getattr(config, option)!r}")

    whole_numbers = {
        "max_concurrency": 1,
        "max_tasks_per_job": 1,
        "max_tasks": 1,
        "max_message_bytes": 1024,
        "max_result_bytes": 0,
        "output_tail_bytes": 0,
        "journal_max_bytes": 0,
        "event_log_length": 1,
        "max_watch_streams": 1,
        "max_watch_streams_per_client": 1,
        "retain_finished_jobs": 0,
    }
    for option, least in whole_numbers.items():
        value = getattr(config, option)
        if isinstance(value, bool) or not isinstance(value, int):
            fail(option, f"must be a whole number, not {value!r}")
        if value < least:
            fail(option, f"must be at least {least}, not {value!r}")
    if config.max_message_bytes > _GRPC_MAX_MESSAGE:
        fail("max_message_bytes", f"must be at most {_GRPC_MAX_MESSAGE} (grpc's limit)")

    durations = {
        "finished_job_ttl": 0.0,
        "worker_heartbeat_interval": 0.001,
        "worker_heartbeat_timeout": 0.001,
        "keepalive_time": 0.001,
        "keepalive_timeout": 0.001,
        "keepalive_min_client_interval": 0.0,
        "shutdown_grace": 0.0,
        "kill_grace": 0.0,
        "ray_refresh_interval": 0.001,
        "ray_connect_timeout": 0.001,
    }
    for option, least in durations.items():
        value = getattr(config, option)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail(option, f"must be a number of seconds, not {value!r}")
        if not math.isfinite(value) or value < least:
            fail(option, f"must be a finite number of seconds >= {least:g}, not {value!r}")
        put(option, float(value))

    interval, timeout = config.worker_heartbeat_interval, config.worker_heartbeat_timeout
    if timeout <= interval:  # blame the one that was set
        if "worker_heartbeat_timeout" in config.sources:
            fail(
                "worker_heartbeat_timeout",
                f"must be longer than {_flag('worker_heartbeat_interval')} ({interval:g}s), "
                f"not {timeout:g}s",
            )
        fail(
            "worker_heartbeat_interval",
            f"must be shorter than {_flag('worker_heartbeat_timeout')} ({timeout:g}s), "
            f"not {interval:g}s",
        )

    put("resources", MappingProxyType(_checked_resources(config.resources, fail)))
    breakers = dict(config.breakers)
    for name, settings in breakers.items():
        if not isinstance(name, str) or not name:
            fail("breakers", f"a breaker needs a non-empty name, not {name!r}")
        if not isinstance(settings, CircuitBreakerConfig):
            fail("breakers", f"{name!r} must be a CircuitBreakerConfig, not {settings!r}")
    put("breakers", MappingProxyType(breakers))

    if config.executor not in EXECUTORS:
        fail("executor", f"must be one of {', '.join(EXECUTORS)}, not {config.executor!r}")
    if config.executor == "ray" and not config.allow_exec:
        fail("executor", f"'ray' runs exec tasks, which are off: give {_flag('allow_exec')} too")
    if not isinstance(config.ray_address, str) or not config.ray_address.strip():
        fail(
            "ray_address",
            f"must be auto, local, HOST:PORT or ray://HOST:PORT, not {config.ray_address!r}",
        )
    put("ray_address", config.ray_address.strip())
    if config.journal_sync not in ("full", "normal"):
        fail("journal_sync", f"must be 'full' or 'normal', not {config.journal_sync!r}")
    level = config.log_level.upper() if isinstance(config.log_level, str) else config.log_level
    if level not in LOG_LEVELS:
        fail("log_level", f"must be one of {', '.join(LOG_LEVELS)}, not {config.log_level!r}")
    put("log_level", level)

    if (config.tls_cert_file is None) != (config.tls_key_file is None):
        given, missing = ("tls_cert_file", "tls_key_file")
        if config.tls_key_file is not None:
            given, missing = missing, given
        fail(given, f"needs {_flag(missing)} too: a certificate and its key go together")
    remote = [a for a in addresses if isinstance(a, TcpAddress) and not a.is_loopback]
    if remote and not config.insecure:
        lacking = []
        if config.tls_cert_file is None:
            lacking.append("TLS (--tls-cert-file and --tls-key-file)")
        if config.token_file is None:
            lacking.append("a token (--token-file)")
        if lacking:
            fail(
                "listen",
                f"{str(remote[0])!r} is reachable beyond this host, so it needs "
                f"{' and '.join(lacking)}; say --insecure to serve it without",
            )
    open_exec = config.open_exec_address
    if open_exec is not None and not config.insecure:
        fail(
            "listen",
            f"{str(open_exec)!r} with --allow-exec lets every local user who can connect run "
            "commands as this daemon's user (a TCP port has no file permissions: the unix "
            "socket's 0660 does not apply); give a token (--token-file), serve exec on unix "
            "sockets only, or say --insecure",
        )


def _flag(field_name: str) -> str:
    return BY_FIELD[field_name].flag or field_name


def _checked_resources(
    resources: Mapping[str, float], fail: Callable[[str, str], NoReturn]
) -> dict[str, float]:
    if not isinstance(resources, Mapping):
        fail("resources", f"must map names to capacities, not {resources!r}")
    checked: dict[str, float] = {}
    for name, capacity in resources.items():
        if not isinstance(name, str) or not _RESOURCE_NAME.fullmatch(name):
            fail("resources", f"{name!r} is not a resource name (letters, digits, _ . -)")
        if name == ResourceType.CUSTOM.value:
            fail("resources", f"name the custom resource itself ({BUILTIN_NAMES} or your own)")
        if (
            isinstance(capacity, bool)
            or not isinstance(capacity, (int, float))
            or not math.isfinite(capacity)
            or capacity < 0
        ):
            fail("resources", f"capacity of {name!r} must be a number >= 0, not {capacity!r}")
        if capacity and round(capacity * 1000) == 0:
            fail("resources", f"capacity of {name!r} is below the resolution of 0.001")
        checked[name] = float(capacity)
    return checked
