"""Where things are by default, and how durations are written: shared by dukatd and clients.

The daemon listens on `default_address()` unless told otherwise, and the command line
connects there unless told otherwise: one function, so the two can never disagree (and the
client side never imports the daemon). Durations are written as the daemon's options take
them: `30`, `2.5`, `500ms`, `30s`, `5m`, `1h`. A unix socket is always written `unix:/path`:
`unix_spelling` finds the bare path a user meant as one.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "SOCKET_NAME",
    "default_address",
    "first_absolute",
    "parse_duration",
    "unix_spelling",
]

SOCKET_NAME = "dukatd.sock"


def first_absolute(value: str | None) -> Path | None:
    """The first entry of a path variable, if absolute; else None."""
    # systemd joins several RuntimeDirectory=/StateDirectory= entries with ':'; the XDG base
    # directory spec says relative values must be ignored.
    first = (value or "").split(":")[0]
    return Path(first) if os.path.isabs(first) else None


def default_address(environ: Mapping[str, str] | None = None) -> str:
    """`unix:` + `dukatd.sock` in `$RUNTIME_DIRECTORY`, else `$XDG_RUNTIME_DIR`, else `/tmp`.

    The `/tmp` fallback is a private directory `/tmp/dukatd-$UID/` (the daemon creates it
    0700), since /tmp itself is shared by every user.
    """
    environ = os.environ if environ is None else environ
    directory = (
        first_absolute(environ.get("RUNTIME_DIRECTORY"))
        or first_absolute(environ.get("XDG_RUNTIME_DIR"))
        or Path(f"/tmp/dukatd-{os.getuid()}")
    )
    return f"unix:{directory / SOCKET_NAME}"


# Schemes of grpc's target names (and the `unix:` of dukatd's --listen): an address with one
# of them says what it is.
_SCHEMES = ("unix:", "unix-abstract:", "dns:", "ipv4:", "ipv6:", "vsock:")


def unix_spelling(address: str) -> str | None:
    """`unix:PATH` when `address` is a unix socket's path written without its scheme; else None.

    Such a path is an address without a scheme that names a socket file, or looks like a path
    (it starts with `/`, `./`, `../` or `~/`, or ends in `.sock`). grpc would look it up as a
    host name and keep failing ("Domain name not found"); every client and `dukatd --listen`
    write it `unix:/path`, so it is refused with this spelling rather than guessed at.
    """
    text = address.strip()
    if not text or text.startswith(_SCHEMES):
        return None
    path = os.path.expanduser(text)
    looks_like_a_path = text.startswith(("/", "./", "../", "~/")) or text.endswith(".sock")
    if looks_like_a_path or _is_socket(path):
        return f"unix:{path}"
    return None


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except (OSError, ValueError):  # no such file; a name with a NUL
        return False


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?")
_DURATION_UNITS = {None: 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds from `30`, `2.5`, `500ms`, `30s`, `5m` or `1h`; ValueError saying why not."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise ValueError(f"expected seconds, like 30, 2.5, 500ms, 30s, 5m or 1h, not {text!r}")
    return float(match[1]) * _DURATION_UNITS[match[2]]
