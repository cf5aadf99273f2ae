"""Where the daemon listens: `unix:/path` or `host:port`, parsed once, printed canonically.

`str(address)` is the canonical spelling, which is also what grpc's `add_*_port` takes.
Parse errors are `ValueError`s that say what is wrong with the text but not which option it came
from: the caller (`dukatd.config`) adds that.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from dukat.defaults import unix_spelling

__all__ = [
    "ListenAddress",
    "TcpAddress",
    "UnixAddress",
    "parse_address",
    "parse_tcp_address",
    "probe_tcp",
]

# sun_path holds 108 bytes on Linux, one of which must be the terminating NUL for grpc.
UNIX_PATH_MAX = 107


@dataclass(frozen=True, slots=True)
class UnixAddress:
    """A unix socket, always by absolute path."""

    path: Path

    def __str__(self) -> str:
        return f"unix:{self.path}"


@dataclass(frozen=True, slots=True)
class TcpAddress:
    """A TCP host and port; the host is a name or an IP address (IPv6 without brackets)."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        """True when only this host can reach it (127.0.0.0/8, ::1, localhost).

        Other names are not resolved: a name can point anywhere later, so it counts as remote.
        """
        if self.host == "localhost":
            return True
        try:
            ip = ipaddress.ip_address(self.host)
        except ValueError:
            return False
        mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is loopback too
        return ip.is_loopback or (mapped is not None and mapped.is_loopback)


ListenAddress = UnixAddress | TcpAddress


def parse_address(text: str) -> ListenAddress:
    """Parse `unix:/path` (relative paths are made absolute against the cwd) or `host:port`."""
    text = text.strip()
    if text.startswith("unix-abstract:"):
        # An abstract socket has no file, hence no permissions: anyone on the host could connect.
        raise ValueError(f"abstract unix sockets are not supported (no permissions): {text!r}")
    if not text.startswith("unix:"):
        unix = unix_spelling(text)
        if unix is not None:
            raise ValueError(f"write {unix!r} for a unix socket, not {text!r}")
        return parse_tcp_address(text, what="unix:/path or host:port")
    rest = text.removeprefix("unix:")
    if rest.startswith("//"):
        # grpc's URI form unix:///abs/path; unix://name would name an authority, not a path.
        if not rest.startswith("///"):
            raise ValueError(f"write unix:/absolute/path or unix:///absolute/path, not {text!r}")
        rest = rest[2:]
    if not rest:
        raise ValueError("unix: needs a path, like unix:/run/dukatd/dukatd.sock")
    path = Path(os.path.abspath(rest))
    if len(os.fsencode(path)) > UNIX_PATH_MAX:
        raise ValueError(
            f"unix socket path is {len(os.fsencode(path))} bytes, over the kernel's limit of "
            f"{UNIX_PATH_MAX}: {str(path)!r}"
        )
    return UnixAddress(path)


def parse_tcp_address(text: str, *, what: str = "HOST:PORT") -> TcpAddress:
    """Parse `host:port` or `[ipv6]:port`; port 0 lets the system choose one."""
    text = text.strip()
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed or not rest.startswith(":"):
            raise ValueError(f"expected [IPV6]:PORT, not {text!r}")
        port = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} in brackets is not an IPv6 address") from None
    else:
        host, colon, port = text.rpartition(":")
        if not colon:
            raise ValueError(f"expected {what}, not {text!r}")
        if ":" in host:
            raise ValueError(f"put an IPv6 address in brackets, like [::1]:{port}, not {text!r}")
    if not host:
        raise ValueError(
            f"{text!r} has no host; say 127.0.0.1 for this host only, 0.0.0.0 for every interface"
        )
    if any(c.isspace() or c in "/@" for c in host):
        raise ValueError(f"{host!r} is not a host name or IP address")
    if not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ValueError(f"port must be a number from 0 to 65535, not {port!r}")
    return TcpAddress(host, int(port))


def probe_tcp(address: TcpAddress) -> None:
    """Raise the OSError that a server binding `address` would meet, before one tries.

    grpc says only "Failed to bind" (after logging a line of its own), where the errno tells
    a port in use (another dukatd) from an address not of this host or a privileged port.
    Binds as a server does (SO_REUSEADDR, every address the host resolves to, at least one
    of which must do) and lets go at once; port 0 is always free.
    """
    if address.port == 0:
        return
    found = socket.getaddrinfo(
        address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    first: OSError | None = None
    for family, kind, protocol, _name, where in found:
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(where)
            except OSError as error:
                first = first or error
            else:
                return
    if first is not None:
        raise first
