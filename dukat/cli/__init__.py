"""`dukat`, the command line: run job files, watch jobs, list, show, cancel, tail their output.

    dukat run pipeline.toml          # submit and show it live; exit 0 when it succeeds
    dukat rerun JOB                  # run a failed job again from where it failed
    dukat jobs --state running       # a table of jobs
    dukat logs JOB TASK -f           # a task's output lines, followed

A thin layer over `dukat.client` (never over protobuf), with click and rich from the `cli`
extra (`pip install 'dukat[cli]'`). `python -m dukat` is the same entry point.
"""

from __future__ import annotations

import sys

__all__ = ["main"]

EXIT_USAGE = 2


def main() -> None:
    """The console script: `dukat` (and `python -m dukat`)."""
    try:
        from dukat.cli._commands import cli
    except ImportError as error:  # click or rich missing: say what to install
        if error.name not in ("click", "rich"):
            raise
        print(
            f"dukat: the command line needs the cli extra ({error.name} is missing): "
            "pip install 'dukat[cli]'",
            file=sys.stderr,
        )
        sys.exit(EXIT_USAGE)
    cli(prog_name="dukat")
