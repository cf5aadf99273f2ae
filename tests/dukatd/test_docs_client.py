"""docs/python-client.md's snippet runs as written against a real dukatd; and so does each
embedded snippet of the docs that can run through a daemon (`DUKAT_ADDRESS`), with the same
output as embedded (tests/test_docs_snippets.py runs them embedded)."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

import dukat
from tests.test_docs_snippets import EMBEDDED_ENV, SNIPPETS

CLIENT_DOC = Path(__file__).resolve().parents[2] / "docs" / "python-client.md"
CLIENT_SNIPPET = next(
    block
    for block in re.findall(r"```py\n(.*?)```", CLIENT_DOC.read_text(), flags=re.DOTALL)
    if "dukat.connect" in block
)


# Those that read DUKAT_ADDRESS: the assistant runs through the daemon it names.
DAEMON_SNIPPETS = [snippet for snippet in SNIPPETS if "get_async_assistant(" in snippet]


async def run_snippet(snippet: str, env: dict[str, str]) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-W",
        "error",
        "-c",
        snippet,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()


def test_the_docs_have_snippets_that_run_both_ways() -> None:
    assert DAEMON_SNIPPETS


@pytest.mark.parametrize(
    "snippet", DAEMON_SNIPPETS, ids=[f"snippet{SNIPPETS.index(s)}" for s in DAEMON_SNIPPETS]
)
async def test_an_embedded_snippet_runs_the_same_through_a_daemon(daemons, snippet):
    daemon = await daemons().serving()
    embedded = await run_snippet(snippet, EMBEDDED_ENV)
    remote = await run_snippet(snippet, {**EMBEDDED_ENV, "DUKAT_ADDRESS": daemon.address})
    assert remote == embedded and remote.strip()
    async with dukat.connect(daemon.address) as client:  # it did go through the daemon
        assert [job async for job in client.jobs()]


async def test_the_client_snippet_runs_against_a_daemon(daemons):
    daemon = await daemons().serving()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-W",
        "error",
        "-c",
        CLIENT_SNIPPET,
        env={**os.environ, "DUKAT_ADDRESS": daemon.address},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    lines = stdout.decode().splitlines()
    assert lines[-1] == "JobState.SUCCEEDED"
    assert any("TaskStateChanged" in line for line in lines)
