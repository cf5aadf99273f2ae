"""`dukat run` on a terminal (a pseudo-terminal, through pexpect): the live view."""

from __future__ import annotations

import pexpect

from tests.cli.conftest import Dukat

JOB = """
[tasks.wait]
run = '''
echo '::progress 0.5 halfway there'
echo still waiting
until [ -e go ]; do sleep 0.05; done
'''
cwd = "{directory}"

[tasks.broken]
run = "echo 'what went wrong' >&2; exit 4"

[tasks.after]
run = "echo after"
dependencies = ["wait"]
"""


async def test_run_on_a_terminal_shows_the_bar_running_tasks_and_finished_lines(
    dukat: Dukat,
) -> None:
    path = dukat.file(JOB.format(directory=dukat.directory))
    screen = pexpect.spawn(
        dukat.argv("run", path)[0],
        dukat.argv("run", path)[1:],
        env=dukat.env,
        cwd=str(dukat.directory),
        encoding="utf-8",
        dimensions=(24, 120),
        timeout=30,
    )
    try:
        screen.expect(r"job [0-9a-f]{32}\r\n")
        # A task that failed collapses to one line, with its error and last output lines.
        screen.expect("✗")
        screen.expect("broken")
        screen.expect("exited with code 4; stderr ends: what went wrong")
        screen.expect("│ what went wrong")
        # The running task, with its progress and latest output line, above the job's bar.
        screen.expect(r"wait\S*\s+50%\s+\S*halfway there · still waiting")
        screen.expect("━")
        screen.expect(r"1/3 tasks")
        (dukat.directory / "go").touch()
        screen.expect("✓")
        screen.expect("wait")
        screen.expect("✓")
        screen.expect("after")
        screen.expect(r"job [0-9a-f]{32} failed: 2 succeeded, 1 failed in ")
        screen.expect(pexpect.EOF)
    finally:
        screen.close()
    assert screen.exitstatus == 1
