"""What the daemon checks and says as it starts, beside building itself: a TCP address it
cannot bind (the option to change), clients that would ping too often, the TLS files read,
and the lines that tell an operator where the state is and how clients reach it."""

from __future__ import annotations

import errno
import logging
import shlex
from pathlib import Path

import grpc

from dukat.client import channel_options
from dukat.errors import StartError
from dukatd.address import TcpAddress, UnixAddress, probe_tcp
from dukatd.config import Config
from dukatd.journal import JOURNAL_FILE

__all__ = [
    "METRICS_FIX",
    "bind_failed",
    "check_port",
    "client_exports",
    "log_start_up",
    "tls_credentials",
    "warn_of_client_pings",
]

_log = logging.getLogger("dukatd")

METRICS_FIX = "--metrics-listen 127.0.0.1:PORT, or turn metrics off with --metrics-listen off"
"""What to do about a metrics address that cannot be bound (a second dukatd's, by default)."""


def check_port(config: Config, address: TcpAddress, option: str, fix: str) -> None:
    try:
        probe_tcp(address)
    except OSError as error:
        raise StartError(bind_failed(config, address, option, fix, error)) from None


def bind_failed(config: Config, address: TcpAddress, option: str, fix: str, error: OSError) -> str:
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
    if config.allow_exec and config.executor == "ray":
        _log.info(
            "exec tasks on (--allow-exec), run on the Ray cluster at %s (--executor ray)",
            config.ray_address,
        )
    elif config.allow_exec:
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
