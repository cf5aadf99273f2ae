"""`dukatd` and `python -m dukatd`: parse the arguments, set up logging, serve on uvloop.

Everything else is `dukatd.app`'s (STYLE.md habit 11). Exit status: 0 after a clean stop,
1 when the daemon could not start (a lock held by another daemon, an address in use), 2 for
a bad option (named, with where it came from: flag, DUKATD_* variable or TOML key).
"""

from __future__ import annotations

import os

# grpc reads this once, when it is first imported, so it is set before any import that pulls
# grpc in (dukatd.app does; dukatd.config does not): the daemon spawns exec tasks, and
# grpc's fork handlers have no business in them (ARCHITECTURE, "The daemon").
os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "0"

import faulthandler
import functools
import logging
import sys
from collections.abc import Sequence

from dukatd.config import ConfigError, parse_args

__all__ = ["main"]

EXIT_BAD_OPTION = 2


def configure_logging(level: str) -> None:
    """Log lines to stderr; without timestamps under systemd, whose journal adds its own."""
    under_journald = bool(os.environ.get("JOURNAL_STREAM"))
    fmt = "%(levelname)s %(name)s: %(message)s"
    if not under_journald:
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: returns the exit status (see the module docstring)."""
    # A stuck or crashing daemon prints every thread's traceback (SIGSEGV, SIGABRT from the
    # systemd watchdog) instead of dying silently.
    faulthandler.enable()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        config = parse_args(argv)
    except ConfigError as error:
        print(f"dukatd: {error}", file=sys.stderr)
        return EXIT_BAD_OPTION
    configure_logging(config.log_level)

    import uvloop

    from dukatd.app import serve

    # SIGHUP re-reads the same flags, variables and file: only the file can have changed.
    reload_config = functools.partial(parse_args, argv)
    return uvloop.run(serve(config, reload_config=reload_config))


if __name__ == "__main__":
    sys.exit(main())
