"""The README's "Try it" runs as written on this checkout: `make run` with exec tasks on, then
each `dukat` command against the daemon it started, found on its default socket; and, as the
README says, a daemon stopped in the middle of the pipeline and started again carries it to
its end. Only where things go is changed: the default socket and state directory follow
$XDG_RUNTIME_DIR and $XDG_STATE_HOME, pointed into a temporary directory, and the metrics
port is any free one, so that a daemon of the user's own is left alone."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dukatd.daemon_process import short_tmp

__all__ = ["short_tmp"]

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
TOUR = re.search(r"## Try it\n.*?```sh\n(.*?)```", README, re.DOTALL)
assert TOUR, "the README has a 'Try it' section with commands"
LINES = [line.split("#")[0].strip() for line in TOUR[1].splitlines()]
START, COMMANDS = LINES[0], LINES[1:]


@pytest.fixture
def environment(short_tmp: Path) -> dict[str, str]:
    run, state = short_tmp / "run", short_tmp / "state"
    run.mkdir(mode=0o700)
    return {
        **{
            k: v for k, v in os.environ.items() if not k.startswith(("DUKAT", "RUNTIME_", "STATE_"))
        },
        "XDG_RUNTIME_DIR": str(run),
        "XDG_STATE_HOME": str(state),
        "DUKATD_METRICS_LISTEN": "127.0.0.1:0",
        "COLUMNS": "200",
    }


def start(environment: dict[str, str]) -> subprocess.Popen[str]:
    words = shlex.split(START)
    assignments = dict(word.split("=", 1) for word in words if "=" in word)
    command = [word for word in words if "=" not in word]
    assert command == ["make", "run"], START
    daemon = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**environment, **assignments},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # make and dukatd: one group, stopped together
    )
    deadline = time.monotonic() + 60
    while run(".venv/bin/dukat status", environment).returncode != 0:
        assert daemon.poll() is None, daemon.stderr.read() if daemon.stderr else ""
        assert time.monotonic() < deadline, "the daemon did not answer within 60 s"
        time.sleep(0.2)
    return daemon


def stop(daemon: subprocess.Popen[str]) -> str:
    os.killpg(daemon.pid, signal.SIGTERM)  # what Ctrl-C in its terminal would do: a drain
    _, err = daemon.communicate(timeout=60)
    return err


@pytest.fixture
def daemons(environment: dict[str, str]) -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for daemon in started:
        if daemon.poll() is None:
            os.killpg(daemon.pid, signal.SIGKILL)
        daemon.communicate()  # reaps it and closes its pipe


def run(
    line: str, environment: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        shlex.split(line),
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_tour_runs_as_written(environment: dict[str, str], daemons: list) -> None:
    daemons.append(start(environment))
    outputs = {}
    for line in COMMANDS:
        done = run(line, environment)
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
        outputs[line.split()[1]] = done.stdout
    assert "report" in outputs["run"] and "succeeded" in outputs["run"].lower()
    assert "pipeline" in outputs["jobs"]
    err = stop(daemons[0])
    assert f"export DUKAT_ADDRESS=unix:{environment['XDG_RUNTIME_DIR']}/dukatd.sock" in err


def test_a_daemon_stopped_mid_pipeline_carries_it_on_once_started_again(
    environment: dict[str, str], daemons: list
) -> None:
    daemons.append(start(environment))
    submitted = run(".venv/bin/dukat submit examples/pipeline.toml", environment)
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.strip()
    deadline = time.monotonic() + 30
    while True:  # until its first step runs
        shown = json.loads(run(f".venv/bin/dukat show {job} --output json", environment).stdout)
        if any(task["state"] == "running" for task in shown["tasks"]):
            break
        assert time.monotonic() < deadline, shown
        time.sleep(0.05)
    stop(daemons[0])
    daemons.append(start(environment))
    watched = run(f".venv/bin/dukat watch {job}", environment)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    shown = json.loads(run(f".venv/bin/dukat show {job} --output json", environment).stdout)
    assert shown["state"] == "succeeded"
    assert {task["state"] for task in shown["tasks"]} == {"succeeded"}
