"""The commands of `dukat`, on click: the group `cli` and its options here, the commands in a
module per group (`_run_commands`, `_job_commands`, `_daemon_commands`). Each one is a
coroutine over `dukat.client`, run by `_base.run_main`, which also turns errors into one line
and an exit status:

    0    the job succeeded (or the command did what it was asked)
    1    the job failed or was cancelled; a daemon error (one line, no traceback)
    2    a usage error, or a job file that cannot be run (every problem, with its place)
    130  interrupted (Ctrl-C); `dukat run` leaves the job running unless --cancel-on-interrupt
"""

from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

import dukat
from dukat.cli._base import Settings
from dukat.cli._daemon_commands import breaker, breakers, status
from dukat.cli._job_commands import cancel, jobs, logs, show
from dukat.cli._run_commands import rerun, run, submit, watch
from dukat.client import check_address
from dukat.defaults import parse_duration

__all__ = ["cli"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--address",
    envvar="DUKAT_ADDRESS",
    metavar="ADDR",
    callback=lambda context, _param, value: _address(context, value),
    help="The daemon: unix:/path or host:port [env DUKAT_ADDRESS; default: the daemon's "
    "default socket].",
)
@click.option(
    "--token-file",
    envvar="DUKAT_TOKEN_FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File holding the daemon's bearer token [env DUKAT_TOKEN_FILE].",
)
@click.option(
    "--connect-timeout",
    envvar="DUKAT_CONNECT_TIMEOUT",
    default="5s",
    show_default=True,
    metavar="DURATION",
    callback=lambda _context, _param, value: _duration(value),
    help="How long to keep trying a daemon that cannot be reached (also when it restarts "
    "under a running command) [env DUKAT_CONNECT_TIMEOUT].",
)
@click.version_option(dukat.__version__, prog_name="dukat")
@click.pass_context
def cli(
    context: click.Context, address: str | None, token_file: Path | None, connect_timeout: float
) -> None:
    """Run job files on a dukatd daemon, and watch, list, show and cancel its jobs."""
    context.obj = Settings(address, token_file, connect_timeout)


def _address(context: click.Context, value: str | None) -> str | None:
    if value is None:
        return None
    from_environment = context.get_parameter_source("address") is ParameterSource.ENVIRONMENT
    try:
        return check_address(value, "DUKAT_ADDRESS" if from_environment else "the address")
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


# The commands, by group: run, rerun, submit, watch (_run_commands); jobs, show, logs, cancel
# (_job_commands); breakers, breaker reset, status (_daemon_commands).
for command in (run, rerun, submit, watch, jobs, show, logs, cancel, breakers, breaker, status):
    cli.add_command(command)
