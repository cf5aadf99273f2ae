"""The commands of `dukat`, on click. Each one is a coroutine over `dukat.client`, run by `_run`,
which also turns errors into one line and an exit status:

    0    the job succeeded (or the command did what it was asked)
    1    the job failed or was cancelled; a daemon error (one line, no traceback)
    2    a usage error, or a job file that cannot be run (every problem, with its place)
    130  interrupted (Ctrl-C); `dukat run` leaves the job running unless --cancel-on-interrupt
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn

import click
from click.core import ParameterSource

import dukat
from dukat.cli._follow import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    follow,
    until_interrupted,
)
from dukat.cli._jobfile import JobFileError, engine_problems, parse_job_file
from dukat.cli._tables import breakers_table, job_table, jobs_table, status_table
from dukat.client import Client, JobHandle, Reconnect, check_address
from dukat.core.events import Snapshot, TaskOutput, TaskStateChanged
from dukat.core.spec import JobSpec
from dukat.core.states import JobState
from dukat.defaults import default_address, parse_duration
from dukat.errors import (
    DaemonError,
    DaemonUnavailableError,
    DukatError,
    InvalidArgumentError,
)

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


settings = click.make_pass_decorator(Settings)


# -- run, submit, watch ---------------------------------------------------------------------------


output_option = click.option(
    "--output",
    "-o",
    type=OUTPUTS,
    default="auto",
    show_default=True,
    help="auto: live on a terminal, plain lines elsewhere; json: one event per line.",
)
cancel_on_interrupt_option = click.option(
    "--cancel-on-interrupt",
    is_flag=True,
    help="On Ctrl-C, cancel the job (by default it keeps running).",
)


@cli.command()
@click.argument("file", type=click.File("r"))
@output_option
@cancel_on_interrupt_option
@settings
def run(settings: Settings, file: Any, output: str, cancel_on_interrupt: bool) -> None:
    """Submit the job FILE (TOML; - for standard input) and show it until it ends.

    Exits 0 when the job succeeded, 1 when it failed or was cancelled.
    """
    spec = _read_job(file)
    _run_and_follow(settings, spec, file.name, None, output, cancel_on_interrupt)


@cli.command()
@click.argument("job_id", metavar="JOB")
@click.argument("file", type=click.File("r"), required=False)
@output_option
@cancel_on_interrupt_option
@settings
def rerun(
    settings: Settings, job_id: str, file: Any, output: str, cancel_on_interrupt: bool
) -> None:
    """Run the finished job JOB again from where it failed, and show it until it ends.

    A new job: the tasks that succeeded in JOB are carried over with their results, the
    others run. FILE (TOML; - for standard input): a corrected job file to run instead of
    JOB's own; a task that changed in it runs again, and so does everything downstream of
    it. Exits 0 when the new job succeeded, 1 when it failed or was cancelled.
    """
    spec = None if file is None else _read_job(file)
    name = "" if file is None else file.name
    _run_and_follow(settings, spec, name, job_id, output, cancel_on_interrupt)


def _run_and_follow(
    settings: Settings,
    spec: JobSpec | None,
    name: str,
    rerun_of: str | None,
    output: str,
    cancel_on_interrupt: bool,
) -> NoReturn:
    """`run` and `rerun`: submit, then show the job until it ends; exit by how it ended."""

    async def main() -> int:
        async with settings.client() as client:
            handle = await _submit(client, spec, name, rerun_of)
            if output != "json":
                rerun = "" if rerun_of is None else f" (a rerun of {rerun_of})"
                click.echo(f"job {handle.job_id}{rerun}")

            async def interrupted() -> None:
                if cancel_on_interrupt:
                    await handle.cancel(reason="interrupted from the command line")
                    click.echo(f"\ndukat: interrupted; job {handle.job_id} cancelled", err=True)
                else:
                    click.echo(
                        f"\ndukat: interrupted; job {handle.job_id} keeps running.\n"
                        f"  watch it:  dukat watch {handle.job_id}\n"
                        f"  cancel it: dukat cancel {handle.job_id}",
                        err=True,
                    )

            state = await until_interrupted(follow(handle, output), interrupted)
            return EXIT_OK if state is JobState.SUCCEEDED else EXIT_FAILED

    _run(main)


@cli.command()
@click.argument("file", type=click.File("r"), required=False)
@click.option(
    "--rerun-of",
    metavar="JOB",
    help="Run the finished job JOB again from where it failed (see `dukat rerun`); FILE, "
    "if given, is a corrected job file.",
)
@settings
def submit(settings: Settings, file: Any, rerun_of: str | None) -> None:
    """Submit the job FILE (TOML; - for standard input) and print its id.

    With --rerun-of JOB, FILE may be left out: JOB's own job is run again.
    """
    if file is None and rerun_of is None:
        raise click.UsageError("Missing argument 'FILE' (or --rerun-of JOB).")
    spec = None if file is None else _read_job(file)
    name = "" if file is None else file.name

    async def main() -> int:
        async with settings.client() as client:
            handle = await _submit(client, spec, name, rerun_of)
        click.echo(handle.job_id)
        return EXIT_OK

    _run(main)


@cli.command()
@click.argument("job_id", metavar="JOB")
@click.option(
    "--output",
    "-o",
    type=OUTPUTS,
    default="auto",
    show_default=True,
    help="auto: live on a terminal, plain lines elsewhere; json: one event per line.",
)
@settings
def watch(settings: Settings, job_id: str, output: str) -> None:
    """Show the job JOB until it ends; exit 0 if it succeeded, 1 if not.

    Ctrl-C stops watching; the job keeps running.
    """

    async def main() -> int:
        async with settings.client() as client:

            async def interrupted() -> None:
                click.echo(f"\ndukat: stopped watching; job {job_id} keeps running", err=True)

            state = await until_interrupted(follow(client.job(job_id), output), interrupted)
            return EXIT_OK if state is JobState.SUCCEEDED else EXIT_FAILED

    _run(main)


# -- jobs, show, logs, cancel ---------------------------------------------------------------------


@cli.command()
@click.option(
    "--state",
    "-s",
    "states",
    multiple=True,
    type=click.Choice([s.value for s in JobState]),
    help="Only jobs in this state (repeat for several).",
)
@click.option(
    "--label",
    "-l",
    "labels",
    multiple=True,
    metavar="KEY=VALUE",
    help="Only jobs with this label (repeat for several).",
)
@click.option(
    "--limit",
    "-n",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="At most this many jobs, newest first.",
)
@click.option(
    "--output", "-o", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@settings
def jobs(
    settings: Settings, states: tuple[str, ...], labels: tuple[str, ...], limit: int, output: str
) -> None:
    """List the daemon's jobs, newest first."""
    wanted = [JobState(state) for state in states]
    label_filter = _labels(labels)

    async def main() -> int:
        async with settings.client() as client:
            found = []
            async for job in client.jobs(wanted, label_filter, page_size=min(limit, 1000)):
                found.append(job)
                if len(found) == limit:
                    break
        if output == "json":
            for job in found:
                click.echo(json.dumps(_job_json(job)))
        else:
            _print(jobs_table(found, now=time.time()))
        return EXIT_OK

    _run(main)


@cli.command()
@click.argument("job_id", metavar="JOB")
@click.option(
    "--output", "-o", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@settings
def show(settings: Settings, job_id: str, output: str) -> None:
    """Show the job JOB: its tasks, their states, attempts, durations and errors."""

    async def main() -> int:
        async with settings.client() as client:
            job = await client.get_job(job_id)
        if output == "json":
            click.echo(json.dumps(_job_json(job, with_tasks=True)))
        else:
            _print(job_table(job))
        return EXIT_OK

    _run(main)


@cli.command()
@click.argument("job_id", metavar="JOB")
@click.argument("task_id", metavar="TASK")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the task ends.")
@settings
def logs(settings: Settings, job_id: str, task_id: str, follow: bool) -> None:
    """Print the output lines of the task TASK of the job JOB (from the job's events).

    Standard error lines go to standard error. The daemon keeps a bounded number of events
    per job: lines older than those are gone (a note says so).
    """

    async def main() -> int:
        async with settings.client() as client:
            handle = client.job(job_id)
            job = await handle.get()
            task = job.task(task_id)  # KeyError for a task the job does not have
            if task.carried_from:  # its lines are in the events of the job it ran in
                source = task.carried_from
                click.echo(
                    f"dukat: task {task_id!r} did not run in this job: a rerun carried it over "
                    f"from job {source} (dukat logs {source} {task_id})",
                    err=True,
                )
                return EXIT_OK
            # Without -f, or for a task already ended: what was written up to now.
            until = job.last_sequence if not follow or task.state.is_terminal else None
            await until_interrupted(_print_output(handle, task_id, until), _nothing)
        return EXIT_OK

    _run(main)


async def _print_output(handle: JobHandle, task_id: str, until: int | None) -> None:
    """The task's output lines up to sequence `until` (None: until the task ends)."""
    async for event in handle.events():
        if isinstance(event, TaskOutput) and event.task_id == task_id:
            click.echo(event.text, err=event.stream == "stderr")
        elif isinstance(event, Snapshot):
            click.echo("dukat: earlier lines are no longer held by the daemon", err=True)
        elif (
            until is None
            and isinstance(event, TaskStateChanged)
            and event.task_id == task_id
            and event.state.is_terminal
        ):
            return
        if until is not None and event.sequence >= until:
            return


async def _nothing() -> None:
    return None


@cli.command()
@click.argument("job_id", metavar="JOB")
@click.argument("task_ids", metavar="[TASK]...", nargs=-1)
@click.option("--reason", default="", help="Why, in words; kept in the tasks' errors.")
@settings
def cancel(settings: Settings, job_id: str, task_ids: tuple[str, ...], reason: str) -> None:
    """Cancel the job JOB, or its tasks TASK... and everything downstream of them."""

    async def main() -> int:
        async with settings.client() as client:
            count = await client.job(job_id).cancel(*task_ids, reason=reason)
        click.echo(f"cancelled {count} task{'s' if count != 1 else ''} of job {job_id}")
        return EXIT_OK

    _run(main)


# -- breakers, status -----------------------------------------------------------------------------


@cli.command()
@settings
def breakers(settings: Settings) -> None:
    """List the daemon's circuit breakers."""

    async def main() -> int:
        async with settings.client() as client:
            found = await client.breakers()
        _print(breakers_table(found))
        return EXIT_OK

    _run(main)


@cli.group()
def breaker() -> None:
    """Act on one circuit breaker."""


@breaker.command()
@click.argument("name")
@settings
def reset(settings: Settings, name: str) -> None:
    """Close the breaker NAME and clear its counters, for every process using it."""

    async def main() -> int:
        async with settings.client() as client:
            await client.breaker(name).reset()
        click.echo(f"breaker {name} reset: closed")
        return EXIT_OK

    _run(main)


@cli.command()
@settings
def status(settings: Settings) -> None:
    """Show the daemon: version, uptime, addresses, capacity in use, workers, breakers."""

    async def main() -> int:
        async with settings.client() as client:
            daemon = await client.status()
            found = await client.breakers()
        _print(status_table(daemon, found, now=time.time()))
        return EXIT_OK

    _run(main)


# -- helpers --------------------------------------------------------------------------------------


def _read_job(file: Any) -> JobSpec:
    try:
        return parse_job_file(file.read(), file.name)  # click names standard input <stdin>
    except JobFileError as error:
        _fail(str(error), EXIT_USAGE)


async def _submit(
    client: Client, spec: JobSpec | None, name: str, rerun_of: str | None = None
) -> JobHandle:
    """Submit `spec` (from the file `name`), or rerun `rerun_of` (with `spec` if given); a
    job the daemon rejects is a job-file error, placed in the file."""
    try:
        if rerun_of is not None:
            return await client.rerun(rerun_of, spec)
        assert spec is not None
        return await client.submit(spec)
    except InvalidArgumentError as error:
        if spec is None:
            raise
        problems = engine_problems(error, spec)
        raise JobFileError(name, problems) from None


def _labels(labels: tuple[str, ...]) -> dict[str, str]:
    found = {}
    for label in labels:
        key, equals, value = label.partition("=")
        if not equals or not key:
            raise click.BadParameter(f"expected KEY=VALUE, not {label!r}", param_hint="--label")
        found[key] = value
    return found


def _job_json(job: Any, *, with_tasks: bool = False) -> dict[str, Any]:
    document = {
        "job_id": job.job_id,
        "state": job.state.value,
        "labels": dict(job.labels),
        "created_at": job.created_at,
        "finished_at": job.finished_at,
        "message": job.message,
        "counts": {state.value: count for state, count in job.task_counts.items()},
    }
    if with_tasks:
        document["tasks"] = [
            {
                "id": task.id,
                "state": task.state.value,
                "attempts": task.attempts,
                "started_at": task.started_at,
                "finished_at": task.finished_at,
                "error": task.error,
                "progress": task.progress,
                "progress_message": task.progress_message,
                "waiting_for": task.waiting_for,
                "carried_from": task.carried_from,
            }
            for task in job.tasks
        ]
    return document


def _print(renderable: Any) -> None:
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal:  # a pipe has no width: cut nothing
        console.width = PIPE_WIDTH
    console.print(renderable)


def _run(main: Callable[[], Awaitable[int]]) -> NoReturn:
    """Run a command's coroutine; exit with its status, or one line for an error."""
    try:
        code = asyncio.run(main())  # type: ignore[arg-type]
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except JobFileError as error:
        _fail(str(error), EXIT_USAGE)
    except DaemonUnavailableError as error:  # its message names the address, and what to check
        _fail(f"dukat: {error}", EXIT_FAILED)
    except DaemonError as error:
        _fail(f"dukat: {error.code.lower().replace('_', ' ')}: {error}", EXIT_FAILED)
    except (DukatError, KeyError) as error:
        text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        _fail(f"dukat: {text}", EXIT_FAILED)
    sys.exit(code)


def _fail(message: str, code: int) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(code)
