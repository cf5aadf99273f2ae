"""Job files: a task's `max_interruptions` is read, and a bad one named with its task."""

from __future__ import annotations

import pytest

from dukat.cli._jobfile import parse_job_file
from dukat.core.spec import DEFAULT_MAX_INTERRUPTIONS
from dukat.errors import JobFileError


def test_max_interruptions_is_read_and_defaults_as_the_engine_does() -> None:
    job = parse_job_file(
        "[tasks.charge]\nrun = 'true'\nmax_interruptions = 0\n[tasks.other]\nrun = 'true'\n",
        "job.toml",
    )
    charge, other = job.tasks
    assert charge.max_interruptions == 0
    assert other.max_interruptions == DEFAULT_MAX_INTERRUPTIONS


@pytest.mark.parametrize("value", ["-1", "101", "'twice'", "true"])
def test_a_bad_max_interruptions_names_the_task_and_key(value: str) -> None:
    with pytest.raises(JobFileError) as raised:
        parse_job_file(f"[tasks.charge]\nrun = 'true'\nmax_interruptions = {value}\n", "job.toml")
    assert "job.toml: [tasks.charge] max_interruptions:" in str(raised.value)
