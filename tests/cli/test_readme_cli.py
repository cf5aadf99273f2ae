"""The README's command line section: its job file reads, its commands and options exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from dukat.cli._commands import cli
from dukat.cli._jobfile import parse_job_file

README = Path(__file__).resolve().parents[2] / "README.md"
TEXT = README.read_text()
TOML_SNIPPETS = re.findall(r"```toml\n(.*?)```", TEXT, flags=re.DOTALL)
COMMANDS = [
    line.split("#")[0].strip()
    for block in re.findall(r"```sh\n(.*?)```", TEXT, flags=re.DOTALL)
    for line in block.splitlines()
    if line.startswith("dukat ")
]


def test_the_readme_shows_a_job_file_and_the_commands() -> None:
    assert TOML_SNIPPETS and len(COMMANDS) >= 8


@pytest.mark.parametrize("snippet", TOML_SNIPPETS)
def test_the_readme_job_file_reads_into_a_job(snippet: str) -> None:
    job = parse_job_file(snippet, "README.md")
    assert [task.id for task in job.tasks] == ["fetch", "transform", "report"]
    assert job.tasks[0].timeout == 30.0 and job.tasks[0].retry.max_attempts == 3


@pytest.mark.parametrize("line", COMMANDS)
def test_each_readme_command_and_option_exists(line: str) -> None:
    words = shlex.split(line)[1:]
    command: click.Command = cli
    options = {name for param in cli.params for name in getattr(param, "opts", [])}
    for word in words:
        if isinstance(command, click.Group) and word in command.commands:
            command = command.commands[word]
            options |= {name for param in command.params for name in getattr(param, "opts", [])}
        elif word.startswith("-") and word != "-":
            assert word in options, f"{line}: no option {word}"
    assert command is not cli, f"{line}: no command"
