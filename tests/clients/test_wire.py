"""clients/README.md's commands for every other language run as written against a real dukatd,
which they find by server reflection over its unix socket: buf curl (.venv/bin, from buf-bin)
and grpcurl (`make grpcurl`: .tools/bin) submit an exec job, watch it, get it and cancel
another; both reach a daemon that wants a token.

The commands read `$DUKAT_ADDRESS` (and `$DUKAT_TOKEN_FILE`), as a user has them exported
after dukatd's start-up hint, and `jq`.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import dukat
from dukat.core import JobState
from tests.clients.programs import REPO, run
from tests.clients.readme import blocks, section
from tests.dukatd.daemon_process import DaemonProcess

WIRE = blocks("sh", section("## Every other language"))
TOOLS = {"buf": REPO / ".venv" / "bin" / "buf", "grpcurl": REPO / ".tools" / "bin" / "grpcurl"}


@pytest.fixture(scope="module")
def path() -> str:
    """PATH with buf and grpcurl first."""
    if not TOOLS["grpcurl"].exists():
        pytest.fail("no .tools/bin/grpcurl: run `make grpcurl`")
    if shutil.which("jq") is None:
        pytest.fail("the README's commands read job ids with jq, which is not installed")
    return os.pathsep.join(
        [str(TOOLS["buf"].parent), str(TOOLS["grpcurl"].parent), os.environ["PATH"]]
    )


def the_block(*words: str) -> str:
    """The one block of the section whose commands are all of `words`' tools."""
    (block,) = [b for b in WIRE if {tool for tool in TOOLS if f"{tool} " in b} == set(words)]
    return block


def documents(printed: str) -> Iterator[Any]:
    """The JSON documents a tool printed one after the other, with camelCase keys (grpcurl
    writes the .proto's names, buf curl protobuf's JSON names)."""
    decoder = json.JSONDecoder()
    printed = printed.strip()
    while printed:
        document, end = decoder.raw_decode(printed)
        yield camel(document)
        printed = printed[end:].lstrip()


def camel(value: Any) -> Any:
    if isinstance(value, dict):
        return {re.sub(r"_(\w)", lambda m: m[1].upper(), k): camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camel(item) for item in value]
    return value


@pytest.mark.parametrize("tool", ["buf", "grpcurl"])
async def test_submit_watch_get_and_cancel_by_reflection(
    tool: str, daemon: DaemonProcess, path: str
) -> None:
    printed = await run(
        ["sh", "-e", "-c", the_block(tool)], env={"DUKAT_ADDRESS": daemon.address, "PATH": path}
    )

    watched, got, cancelled = (
        [d for d in documents(printed) if key in d] for key in ("events", "job", "cancelledCount")
    )
    events = [event for message in watched for event in message["events"]]
    job_id = events[0]["jobId"]
    # What the README says the task sees: progress from stdout, its ids and its cwd.
    assert [e["progress"] for e in events if "progress" in e] == [
        {"taskId": "hello", "fraction": 0.5, "message": "half way"}
    ]
    said = f"hello, attempt 1 of job {job_id}, in /tmp"
    assert [e["output"]["text"] for e in events if "output" in e] == [said]
    assert events[-1]["jobState"]["state"] == "JOB_STATE_SUCCEEDED"
    ((job,),) = [[g["job"] for g in got]]
    assert (job["jobId"], job["state"]) == (job_id, "JOB_STATE_SUCCEEDED")
    stdout = base64.b64decode(job["tasks"][0]["result"]["exec"]["stdout"]).decode()
    assert stdout == f"::progress 0.5 half way\n{said}\n"
    assert cancelled == [{"cancelledCount": 1}]
    # The job the README cancels is the newest, and ends cancelled for its reason.
    async with dukat.connect(daemon.address) as client:
        newest = await anext(client.jobs())
        nap = await client.job(newest.job_id).wait()
    assert nap.state is JobState.CANCELLED
    assert nap.message == "1 of 1 tasks cancelled: not needed"


async def test_both_tools_reach_a_daemon_that_wants_a_token(path: str) -> None:
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="dukatd-clients-") as directory:
        token_file = Path(directory) / "token"
        token_file.write_text("s3cret-token\n")
        token_file.chmod(0o600)
        daemon = DaemonProcess(Path(directory), ("--token-file", str(token_file))).start()
        try:
            await daemon.serving()
            env = {"DUKAT_ADDRESS": daemon.address, "DUKAT_TOKEN_FILE": str(token_file)}
            printed = await run(
                ["sh", "-e", "-c", the_block("buf", "grpcurl")], env=env | {"PATH": path}
            )
        finally:
            daemon.kill()

    statuses = [d["status"] for d in documents(printed)]
    assert [status["listen"] for status in statuses] == [[daemon.address]] * 2
