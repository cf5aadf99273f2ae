"""docs/cli.md and the README's commands: the job file reads, every command and option they
show exists, and the reference names every command, option and job-file key there is."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from dukat.cli._commands import cli
from dukat.cli._jobfile import JOB_KEYS, RETRY_KEYS, TASK_KEYS, parse_job_file

ROOT = Path(__file__).resolve().parents[2]
CLI_DOC = (ROOT / "docs" / "cli.md").read_text()
TOML_SNIPPETS = re.findall(r"```toml\n(.*?)```", CLI_DOC, flags=re.DOTALL)
COMMANDS = [
    line.split("#")[0].strip().removeprefix(".venv/bin/")
    for text in (CLI_DOC, (ROOT / "README.md").read_text())
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL)
    for line in block.splitlines()
    if line.startswith(("dukat ", ".venv/bin/dukat "))
]


def test_the_docs_show_a_job_file_and_the_commands() -> None:
    assert TOML_SNIPPETS and len(COMMANDS) >= 12


@pytest.mark.parametrize("snippet", TOML_SNIPPETS)
def test_the_job_file_shown_reads_into_a_job(snippet: str) -> None:
    job = parse_job_file(snippet, "docs/cli.md")
    assert [task.id for task in job.tasks] == ["fetch", "transform", "report"]
    assert job.tasks[0].timeout == 30.0 and job.tasks[0].retry.max_attempts == 3


@pytest.mark.parametrize("line", COMMANDS)
def test_each_command_and_option_shown_exists(line: str) -> None:
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


def commands(group: click.Group, prefix: str = "dukat") -> dict[str, click.Command]:
    found: dict[str, click.Command] = {}
    for name, command in group.commands.items():
        found[f"{prefix} {name}"] = command
        if isinstance(command, click.Group):
            found |= commands(command, f"{prefix} {name}")
    return found


def test_the_reference_names_every_command_and_its_options() -> None:
    table = CLI_DOC[CLI_DOC.index("| command | what | options |") :]
    table = table[: table.index("\n\n")]
    listed: dict[str, str] = {}
    for row in table.splitlines()[2:]:
        cells = re.split(r"(?<!\\)\|", row)  # a cell's own | is escaped: \|
        name = re.match(r" `(dukat [a-z ]+?)(?: [A-Z\[][^`]*)?` ", cells[1])
        assert name, row
        listed[name[1]] = cells[3]
    leaves = {name: c for name, c in commands(cli).items() if not isinstance(c, click.Group)}
    assert set(listed) == set(leaves)
    for name, command in leaves.items():
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                flag = max(param.opts, key=len)
                assert f"`{flag}" in listed[name], f"{name}: {flag} not listed"
    for param in cli.params:  # the global options, in the paragraph after the table
        if isinstance(param, click.Option) and param.name != "help":
            assert f"`{param.opts[0]}" in CLI_DOC, param.opts[0]


def test_the_reference_names_every_job_file_key() -> None:
    job_keys = re.findall(
        r"^\| `([a-z_]+)` \|", CLI_DOC.split("| `[job]` key |")[1].split("\n\n")[0], re.M
    )
    task_keys = re.findall(
        r"^\| `([a-z_]+)` \|", CLI_DOC.split("| task key |")[1].split("\n\n")[0], re.M
    )
    assert job_keys == list(JOB_KEYS)
    assert sorted(task_keys) == sorted(TASK_KEYS)
    retry = CLI_DOC.split("| `retry` |")[1].split("\n")[0]
    for key in RETRY_KEYS:
        assert f"`{key}`" in retry, key
