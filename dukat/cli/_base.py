"""What every command shares: the group's settings (the daemon, its token, how long to keep
trying it) and the client they open, and running a command's coroutine to its exit status,
an error to one line (the statuses are in `dukat.cli._commands`' docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn

import click

import dukat
from dukat.cli._follow import EXIT_FAILED, EXIT_INTERRUPTED
from dukat.client import Client, Reconnect
from dukat.defaults import default_address
from dukat.errors import DaemonError, DaemonUnavailableError, DukatError, JobFileError

EXIT_USAGE = 2
PIPE_WIDTH = 400
OUTPUTS = click.Choice(["auto", "plain", "json"])


class Settings:
    """The group's options, for the commands."""

    def __init__(
        self, address: str | None, token_file: Path | None, connect_timeout: float
    ) -> None:
        self.address = address or default_address()
        self.token_file = token_file
        self.connect_timeout = connect_timeout

    def token(self) -> str | None:
        if self.token_file is None:
            return None
        try:
            token = self.token_file.read_text().strip()
        except OSError as error:
            raise click.UsageError(
                f"--token-file: cannot read {str(self.token_file)!r}: {error.strerror}"
            ) from None
        if not token:
            raise click.UsageError(f"--token-file: {str(self.token_file)!r} is empty")
        return token

    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[Client]:
        timeout = self.connect_timeout  # a daemon not reached yet, or one gone away
        reconnect = Reconnect(give_up_after=timeout, connect_within=timeout)
        async with dukat.connect(self.address, token=self.token(), reconnect=reconnect) as client:
            yield client


settings = click.make_pass_decorator(Settings)


def print_rich(renderable: Any) -> None:
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal:  # a pipe has no width: cut nothing
        console.width = PIPE_WIDTH
    console.print(renderable)


def run_main(main: Callable[[], Awaitable[int]]) -> NoReturn:
    """Run a command's coroutine; exit with its status, or one line for an error."""
    try:
        code = asyncio.run(main())  # type: ignore[arg-type]
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except JobFileError as error:
        fail(str(error), EXIT_USAGE)
    except DaemonUnavailableError as error:  # its message names the address, and what to check
        fail(f"dukat: {error}", EXIT_FAILED)
    except DaemonError as error:
        fail(f"dukat: {error.code.lower().replace('_', ' ')}: {error}", EXIT_FAILED)
    except (DukatError, KeyError) as error:
        text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        fail(f"dukat: {text}", EXIT_FAILED)
    sys.exit(code)


def fail(message: str, code: int) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(code)
