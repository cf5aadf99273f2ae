"""Where things are by default, and how durations are written: shared by dukatd and clients.

The daemon listens on `default_address()` unless told otherwise, and the command line
connects there unless told otherwise: one function, so the two can never disagree (and the
client side never imports the daemon). Durations are written as the daemon's options take
them: `30`, `2.5`, `500ms`, `30s`, `5m`, `1h`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

__all__ = ["SOCKET_NAME", "default_address", "first_absolute", "parse_duration"]

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


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?")
_DURATION_UNITS = {None: 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds from `30`, `2.5`, `500ms`, `30s`, `5m` or `1h`; ValueError saying why not."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise ValueError(f"expected seconds, like 30, 2.5, 500ms, 30s, 5m or 1h, not {text!r}")
    return float(match[1]) * _DURATION_UNITS[match[2]]
