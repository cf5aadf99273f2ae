"""The commands that submit a job and follow it: run, rerun, submit, watch."""

from __future__ import annotations

from typing import Any, NoReturn

import click

from dukat.cli._base import EXIT_USAGE, OUTPUTS, Settings, fail, run_main, settings
from dukat.cli._follow import EXIT_FAILED, EXIT_OK, follow, until_interrupted
from dukat.cli._jobfile import engine_problems, parse_job_file
from dukat.client import Client, JobHandle
from dukat.core.spec import JobSpec
from dukat.core.states import JobState
from dukat.errors import InvalidArgumentError, JobFileError

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


@click.command()
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


@click.command()
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

    run_main(main)


@click.command()
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

    run_main(main)


@click.command()
@click.argument("job_id", metavar="JOB")
@output_option
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

    run_main(main)


def _read_job(file: Any) -> JobSpec:
    try:
        return parse_job_file(file.read(), file.name)  # click names standard input <stdin>
    except JobFileError as error:
        fail(str(error), EXIT_USAGE)


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
