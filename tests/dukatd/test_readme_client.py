"""The README's client snippet runs as written against a real dukatd."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
CLIENT_SNIPPET = next(
    block
    for block in re.findall(r"```py\n(.*?)```", README.read_text(), flags=re.DOTALL)
    if "dukat.connect" in block
)


async def test_the_readme_client_snippet_runs_against_a_daemon(daemons):
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
