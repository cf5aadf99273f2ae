"""The commands about one job or all of them: jobs, show, logs, cancel."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from dukat.cli._base import Settings, print_rich, run_main, settings
from dukat.cli._follow import EXIT_OK, until_interrupted
from dukat.cli._tables import job_table, jobs_table
from dukat.client import JobHandle
from dukat.core.events import Snapshot, TaskOutput, TaskStateChanged
from dukat.core.results import TaskStatus
from dukat.core.states import JobState

table_output_option = click.option(
    "--output", "-o", type=click.Choice(["table", "json"]), default="table", show_default=True
)


@click.command()
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
@table_output_option
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
            print_rich(jobs_table(found, now=time.time()))
        return EXIT_OK

    run_main(main)


@click.command()
@click.argument("job_id", metavar="JOB")
@table_output_option
@settings
def show(settings: Settings, job_id: str, output: str) -> None:
    """Show the job JOB: its tasks, their states, attempts, durations and errors."""

    async def main() -> int:
        async with settings.client() as client:
            job = await client.get_job(job_id)
        if output == "json":
            click.echo(json.dumps(_job_json(job, with_tasks=True)))
        else:
            print_rich(job_table(job))
        return EXIT_OK

    run_main(main)


@click.command()
@click.argument("job_id", metavar="JOB")
@click.argument("task_id", metavar="TASK")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the task ends.")
@settings
def logs(settings: Settings, job_id: str, task_id: str, follow: bool) -> None:
    """Print the output lines of the task TASK of the job JOB (from the job's events).

    Standard error lines go to standard error. The daemon keeps a bounded number of events
    per job: for a task whose lines are older than those, what it kept of its output when it
    ended follows instead (the last --output-tail-bytes of each stream), after a note.
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
            await until_interrupted(_print_output(handle, task, until), _nothing)
        return EXIT_OK

    run_main(main)


async def _print_output(handle: JobHandle, task: TaskStatus, until: int | None) -> None:
    """The task's output lines up to sequence `until` (None: until the task ends)."""
    async for event in handle.events():
        if isinstance(event, TaskOutput) and event.task_id == task.id:
            click.echo(event.text, err=event.stream == "stderr")
        elif isinstance(event, Snapshot):
            if _print_tails(task):
                return
            click.echo("dukat: earlier lines are no longer held by the daemon", err=True)
        elif (
            until is None
            and isinstance(event, TaskStateChanged)
            and event.task_id == task.id
            and event.state.is_terminal
        ):
            return
        if until is not None and event.sequence >= until:
            return


def _print_tails(task: TaskStatus) -> bool:
    """For an ended exec task, what the daemon kept of each stream; whether there was any."""
    kept = task.failure if task.failure is not None else task.result
    stdout, stderr = getattr(kept, "stdout", b""), getattr(kept, "stderr", b"")
    if not (stdout or stderr):
        return False
    click.echo(
        "dukat: the daemon no longer holds these lines one by one; the end of each stream it "
        "kept follows (standard output, then standard error)",
        err=True,
    )
    click.echo(stdout.decode(errors="replace"), nl=False)
    click.echo(stderr.decode(errors="replace"), nl=False, err=True)
    return True


async def _nothing() -> None:
    return None


@click.command()
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

    run_main(main)


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
