"""The real `dukat` (a subprocess) against a real dukatd with exec on."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from dukat.actions import DispatchAction
from dukat.client import connect
from dukat.core.spec import JobSpec, TaskSpec
from tests.cli.conftest import SCRIPT, Dukat
from tests.dukatd.daemon_process import DaemonProcess

REPO = Path(__file__).resolve().parents[2]

PIPELINE = """
[job]
labels = { team = "data" }

[tasks.fetch]
run = "echo fetching; echo '::progress 0.5 half way'; echo fetched"

[tasks.transform]
argv = ["sh", "-c", "echo transforming"]
dependencies = ["fetch"]
resources = { cpu = 0.5, licence = 1 }
breaker = "api"

[tasks.report]
run = "echo done"
dependencies = ["transform"]
trigger_rule = "all_done"
"""

FAILING = """
[tasks.ok]
run = "echo fine"

[tasks.broken]
run = "echo first; echo 'the last words' >&2; exit 3"
retry = { max_attempts = 2, initial_backoff = "0s" }

[tasks.after]
run = "echo never"
dependencies = ["broken"]
"""

SLOW = """
[job]
labels = { kind = "slow" }

[tasks.slow]
run = "echo started; sleep 60"

[tasks.then]
run = "echo never"
dependencies = ["slow"]
"""


async def running_job(dukat: Dukat, process: asyncio.subprocess.Process) -> str:
    """The id `dukat run` printed first, once the job's first task is running."""
    assert process.stdout is not None
    line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
    assert line.startswith("job "), line
    job_id = line.split()[1]
    while "started" not in (await asyncio.wait_for(process.stdout.readline(), 30)).decode():
        pass
    return job_id


async def job_state(dukat: Dukat, job_id: str) -> str:
    done = await dukat("show", job_id, "-o", "json")
    assert done.code == 0, done.err
    return json.loads(done.out)["state"]


# -- run: to the end, with its exit status ----------------------------------------------------


async def test_run_shows_each_task_and_exits_0_when_the_job_succeeds(dukat: Dukat) -> None:
    done = await dukat("run", dukat.file(PIPELINE))
    assert done.code == 0, done.err
    lines = done.out.splitlines()
    assert lines[0].startswith("job ")
    assert "fetch: 50% half way" in lines and "fetch | fetched" in lines
    assert [line.split()[:2] for line in lines if line.startswith("✓")] == [
        ["✓", "fetch"],
        ["✓", "transform"],
        ["✓", "report"],
    ]
    assert lines[-1].endswith(" succeeded: 3 succeeded in " + lines[-1].rsplit(" ", 1)[-1])


async def test_run_exits_1_and_says_why_when_a_task_fails(dukat: Dukat) -> None:
    done = await dukat("run", dukat.file(FAILING))
    assert done.code == 1, done.err
    out = done.out
    assert "broken: attempt 1 failed, retrying" in out
    assert "✗ broken" in out and "exited with code 3; stderr ends: the last words" in out
    assert "⊘ after" in out and "skipped: upstream 'broken' failed" in out
    assert "✓ ok" in out
    assert "failed: 1 succeeded, 1 failed, 1 skipped" in out.splitlines()[-1]


async def test_run_exits_1_when_its_job_is_cancelled(dukat: Dukat) -> None:
    process = await dukat.start("run", dukat.file(SLOW))
    job_id = await running_job(dukat, process)
    cancelled = await dukat("cancel", job_id, "--reason", "enough")
    assert (cancelled.code, cancelled.out) == (0, f"cancelled 2 tasks of job {job_id}\n")
    out, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1
    assert "⊘ slow" in out.decode() and f"job {job_id} cancelled" in out.decode()


async def test_ctrl_c_leaves_the_job_running_and_says_how_to_watch_it(dukat: Dukat) -> None:
    process = await dukat.start("run", dukat.file(SLOW))
    job_id = await running_job(dukat, process)
    process.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 130
    assert f"job {job_id} keeps running" in err.decode()
    assert f"dukat watch {job_id}" in err.decode() and f"dukat cancel {job_id}" in err.decode()
    assert await job_state(dukat, job_id) == "running"
    await dukat("cancel", job_id)


async def test_a_daemon_that_stays_away_ends_run_saying_how_to_follow_the_job_again(
    dukat: Dukat,
) -> None:
    process = await dukat.start("run", dukat.file(SLOW))  # DUKAT_CONNECT_TIMEOUT is 2s here
    job_id = await running_job(dukat, process)
    dukat.daemon.kill()
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1
    assert f"job {job_id} goes on in the daemon" in err.decode()
    assert f"`dukat watch {job_id}` follows it again" in err.decode()


async def test_ctrl_c_with_cancel_on_interrupt_cancels_the_job(dukat: Dukat) -> None:
    process = await dukat.start("run", "--cancel-on-interrupt", dukat.file(SLOW))
    job_id = await running_job(dukat, process)
    process.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 130
    assert f"job {job_id} cancelled" in err.decode()
    assert await job_state(dukat, job_id) == "cancelled"


async def test_run_json_gives_one_event_object_per_line(dukat: Dukat) -> None:
    done = await dukat("run", "--output", "json", dukat.file(PIPELINE))
    assert done.code == 0, done.err
    events = [json.loads(line) for line in done.out.splitlines()]
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "job_state" and events[0]["state"] == "running"
    assert events[-1] == {**events[-1], "type": "job_state", "state": "succeeded"}
    assert {
        "type": "progress",
        "task_id": "fetch",
        "fraction": 0.5,
        "message": "half way",
    }.items() <= next(e for e in events if e["type"] == "progress").items()
    assert {(e["task_id"], e["text"]) for e in events if e["type"] == "output"} >= {
        ("fetch", "fetching"),
        ("report", "done"),
    }


# -- submit, watch, show, logs, jobs ----------------------------------------------------------


async def test_submit_from_stdin_then_watch_show_logs_and_jobs(dukat: Dukat) -> None:
    submitted = await dukat("submit", "-", input=PIPELINE)
    assert submitted.code == 0, submitted.err
    job_id = submitted.out.strip()
    watched = await dukat("watch", job_id)
    assert watched.code == 0, watched.err
    assert "✓ report" in watched.out and f"job {job_id} succeeded" in watched.out

    shown = await dukat("show", job_id)
    assert shown.code == 0, shown.err
    assert f"job {job_id}" in shown.out and "labels: team=data" in shown.out
    rows = {line.split()[1]: line.split()[2:4] for line in shown.out.splitlines() if "✓" in line}
    assert rows == {name: ["succeeded", "1"] for name in ("fetch", "transform", "report")}

    logs = await dukat("logs", job_id, "fetch")
    assert (logs.code, logs.out) == (0, "fetching\nfetched\n")
    followed = await dukat("logs", "-f", job_id, "report")
    assert (followed.code, followed.out) == (0, "done\n")

    failed = await dukat("run", dukat.file(FAILING))
    failed_id = failed.out.split()[1]
    listed = await dukat("jobs", "--output", "json")
    assert [j["job_id"] for j in map(json.loads, listed.out.splitlines())] == [failed_id, job_id]
    by_label = await dukat("jobs", "-o", "json", "--label", "team=data", "--state", "succeeded")
    (only,) = map(json.loads, by_label.out.splitlines())
    assert only["job_id"] == job_id and only["counts"]["succeeded"] == 3
    table = await dukat("jobs", "--state", "failed")
    assert table.code == 0 and failed_id in table.out and job_id not in table.out
    assert "1/3" not in table.out and "3/3" in table.out  # every task ended, one failed


async def test_logs_follows_a_running_task_until_it_ends(dukat: Dukat) -> None:
    job = """
    [tasks.talk]
    run = "echo one; read line; echo two; echo 'on stderr' >&2"
    """
    submitted = await dukat("submit", dukat.file(job))
    job_id = submitted.out.strip()
    follow = await dukat.start("logs", "-f", job_id, "talk")
    assert follow.stdout is not None
    assert await asyncio.wait_for(follow.stdout.readline(), 30) == b"one\n"
    # The task waits for input it will never get (stdin is /dev/null: read fails at once),
    # so it has ended by now or will shortly; -f ends with it.
    out, err = await asyncio.wait_for(follow.communicate(), 30)
    assert follow.returncode == 0
    assert out == b"two\n" and err == b"on stderr\n"


async def test_show_and_logs_of_unknown_jobs_and_tasks_are_one_line_errors(dukat: Dukat) -> None:
    for args in (["show", "nope"], ["logs", "nope", "x"], ["cancel", "nope"]):
        done = await dukat(*args)
        assert done.code == 1 and done.err == "dukat: not found: no job 'nope'\n", (args, done)
    job_id = (await dukat("submit", dukat.file(PIPELINE))).out.strip()
    done = await dukat("logs", job_id, "nothing")
    assert done.code == 1 and done.err.startswith(f"dukat: job {job_id!r} has no task 'nothing'")


# -- rerun -------------------------------------------------------------------------------------


def flaky_pipeline(directory: Path, *, shape: str = "rows") -> str:
    """Four steps that note each run in ran.txt; the third fails until `flag` says fixed."""
    ran, flag = directory / "ran.txt", directory / "flag"
    if not flag.exists():
        flag.write_text("broken\n")
    return f"""
[tasks.extract]
run = "echo extract >> {ran}"

[tasks.shape]
run = "echo shape {shape} >> {ran}"
dependencies = ["extract"]

[tasks.load]
run = "echo load >> {ran}; grep -qx fixed {flag}"
dependencies = ["shape"]

[tasks.report]
run = "echo report >> {ran}"
dependencies = ["load"]
"""


def ran(dukat: Dukat) -> list[str]:
    return (dukat.directory / "ran.txt").read_text().splitlines()


async def test_rerun_runs_a_failed_job_again_from_where_it_failed(dukat: Dukat) -> None:
    failed = await dukat("run", dukat.file(flaky_pipeline(dukat.directory)))
    assert failed.code == 1, failed.err
    old = failed.out.split()[1]
    (dukat.directory / "flag").write_text("fixed\n")
    done = await dukat("rerun", old)
    assert done.code == 0, done.err
    lines = done.out.splitlines()
    new = lines[0].split()[1]
    assert lines[0] == f"job {new} (a rerun of {old})" and new != old
    assert f"✓ extract  carried over from job {old}" in lines
    assert f"✓ shape  carried over from job {old}" in lines
    assert [line.split()[:2] for line in lines if line.startswith("✓")][2:] == [
        ["✓", "load"],
        ["✓", "report"],
    ]
    assert lines[-1].startswith(f"job {new} succeeded: 4 succeeded in ")
    assert ran(dukat) == ["extract", "shape rows", "load", "load", "report"]
    shown = await dukat("show", new)
    assert f"carried over from job {old}" in shown.out
    logs = await dukat("logs", new, "extract")
    assert logs.code == 0 and logs.out == ""
    assert f"carried it over from job {old} (dukat logs {old} extract)" in logs.err
    document = json.loads((await dukat("show", new, "-o", "json")).out)
    assert {t["id"]: t["carried_from"] for t in document["tasks"]} == {
        "extract": old,
        "shape": old,
        "load": "",
        "report": "",
    }


async def test_rerun_with_a_corrected_file_runs_what_changed_and_what_follows(
    dukat: Dukat,
) -> None:
    failed = await dukat("run", dukat.file(flaky_pipeline(dukat.directory)))
    old = failed.out.split()[1]
    (dukat.directory / "flag").write_text("fixed\n")
    corrected = dukat.file(flaky_pipeline(dukat.directory, shape="v2"), "fixed.toml")
    done = await dukat("rerun", old, corrected)
    assert done.code == 0, done.err
    assert f"✓ extract  carried over from job {old}" in done.out.splitlines()
    assert ran(dukat) == ["extract", "shape rows", "load", "shape v2", "load", "report"]


async def test_submit_rerun_of_prints_the_new_job_and_rerun_errors_are_one_line(
    dukat: Dukat,
) -> None:
    failed = await dukat("run", dukat.file(flaky_pipeline(dukat.directory)))
    old = failed.out.split()[1]
    submitted = await dukat("submit", "--rerun-of", old)
    assert submitted.code == 0, submitted.err
    new = submitted.out.strip()
    watched = await dukat("watch", new)
    assert watched.code == 1 and f"carried over from job {old}" in watched.out
    assert ran(dukat) == ["extract", "shape rows", "load", "load"]
    unknown = await dukat("rerun", "nope")
    assert unknown.code == 1 and unknown.err.startswith("dukat: not found: rerun_of: no job 'nope'")
    running = (await dukat("submit", dukat.file(SLOW))).out.strip()
    refused = await dukat("rerun", running)
    assert refused.code == 1
    assert refused.err.startswith("dukat: failed precondition: rerun_of: ")
    assert "cancel it or wait" in refused.err
    await dukat("cancel", running)
    neither = await dukat("submit")
    assert neither.code == 2 and "FILE" in neither.err and "--rerun-of" in neither.err


# -- bad job files -----------------------------------------------------------------------------

BAD_FILES = [
    (
        "[tasks.a]\nrun = 'true'\ndependecies = ['b']\n",
        "[tasks.a] dependecies: unknown key; did you mean 'dependencies'?",
    ),
    (
        "[tasks.a]\nrun = 'true'\nargv = ['true']\n",
        "[tasks.a] run: give exactly one of run (a shell line) or argv",
    ),
    (
        "[tasks.a]\nrun = 'true'\ntimeout = '30 sec'\n",
        "[tasks.a] timeout: expected seconds, like 30, 2.5, 500ms",
    ),
    (
        "[tasks.a]\nrun = 'true'\ndependencies = ['b']\n",
        "[tasks.a] dependencies[0]: unknown task 'b'",
    ),
    (
        "[tasks.a]\nrun = 'true'\ndependencies = ['b']\n"
        "[tasks.b]\nrun = 'true'\ndependencies = ['a']\n",
        "[tasks.a] dependencies: a cycle: a -> b -> a",
    ),
    (
        "[tasks.a]\nrun = 'true'\nretry = { max_attempt = 3 }\n",
        "[tasks.a] retry: unknown key 'max_attempt'; did you mean 'max_attempts'?",
    ),
    (
        "[tasks.a]\nrun = 'true'\nretry = 0\n",
        "[tasks.a] retry.max_attempts: must be a whole number of at least 1",
    ),
    (
        "[tasks.a]\nrun = 'true'\ntrigger_rule = 'sometimes'\n",
        "[tasks.a] trigger_rule: expected one of all_success, all_done",
    ),
    (
        "[tasks.a]\nrun = 'true'\nresources = { cpu = -1 }\n",
        "[tasks.a] resources: amount of 'cpu' must be positive",
    ),
    (
        "[job]\nmax_concurency = 2\n[tasks.a]\nrun = 'true'\n",
        "[job] max_concurency: unknown key; did you mean 'max_concurrency'?",
    ),
    ("[job]\nlabels = { team = 'data' }\n", "tasks: a job needs at least one task"),
    ("[tasks.a]\nrun = 'true\n", "not valid TOML: "),
    ("[task.a]\nrun = 'true'\n", "task: unknown key; did you mean 'tasks'?"),
]


@pytest.mark.parametrize(
    ("text", "message"),
    BAD_FILES,
    ids=[m.split(":")[0] + str(i) for i, (_, m) in enumerate(BAD_FILES)],
)
async def test_a_bad_job_file_exits_2_naming_the_file_task_and_key(
    dukat: Dukat, text: str, message: str
) -> None:
    path = dukat.file(text, "bad.toml")
    done = await dukat("run", path)
    assert done.code == 2, done
    assert f"{path}: {message}" in done.err, done.err
    assert "Traceback" not in done.err and done.out == ""


async def test_every_problem_of_a_job_file_is_reported_at_once(dukat: Dukat) -> None:
    text = "[tasks.a]\nrun = 'true'\ntimeout = 'x'\npriority = 'high'\n[tasks.b]\ncmd = 'true'\n"
    done = await dukat("submit", "-", input=text)
    assert done.code == 2
    assert done.err.splitlines() == [
        "<stdin>: [tasks.a] timeout: expected seconds, like 30, 2.5, 500ms, 30s, 5m or 1h, not 'x'",
        "<stdin>: [tasks.a] priority: expected a whole number, not 'high'",
        "<stdin>: [tasks.b] cmd: unknown key; did you mean 'cwd'?",
        "<stdin>: [tasks.b] run: give exactly one of run (a shell line) or argv (a list)",
    ]


async def test_a_job_the_daemon_refuses_is_placed_in_the_file_too(dukat: Dukat) -> None:
    """More CPU than the daemon has: only the daemon knows its capacities."""
    path = dukat.file("[tasks.big]\nrun = 'true'\nresources = { cpu = 2 }\n")
    done = await dukat("run", path)
    assert done.code == 2, done
    assert done.err.startswith(f"{path}: [tasks.big] resources")
    assert "Traceback" not in done.err


# -- the daemon itself -------------------------------------------------------------------------


async def test_status_breakers_and_breaker_reset(dukat: Dukat) -> None:
    await dukat("run", dukat.file(PIPELINE))  # makes the breaker "api"
    status = await dukat("status")
    assert status.code == 0, status.err
    out = status.out
    assert "version" in out and dukat.daemon.address in out and "none (ephemeral)" in out
    assert "exec       allowed" in out and "licence" in out and "no workers connected" in out
    assert "0 live, 1 finished held" in out and "api" in out
    breakers = await dukat("breakers")
    assert breakers.out.splitlines()[1].split()[:2] == ["api", "closed"]
    reset = await dukat("breaker", "reset", "api")
    assert (reset.code, reset.out) == (0, "breaker api reset: closed\n")
    missing = await dukat("breaker", "reset", "nope")
    assert missing.code == 1 and missing.err.startswith("dukat: not found:")


def test_status_says_where_exec_tasks_run_on_a_ray_cluster() -> None:
    from rich.console import Console

    from dukat.cli._tables import status_table
    from dukat.daemon_status import DaemonStatus, RayClusterStatus

    def shown(ray: RayClusterStatus) -> str:
        daemon = DaemonStatus("1", 0.0, ("unix:/d.sock",), None, True, 64, 0, 0, 0, ray=ray)
        console = Console(width=120, record=True)
        with console.capture() as captured:
            console.print(status_table(daemon, [], now=1.0))
        return captured.get()

    assert "executor   ray at auto: connected, 3 nodes" in shown(
        RayClusterStatus("auto", True, nodes=3)
    )
    down = shown(RayClusterStatus("10.0.0.1:6379", False, "the Ray bridge exited"))
    assert "executor   ray at 10.0.0.1:6379: unavailable (the Ray bridge exited)" in down


async def test_an_unreachable_daemon_is_one_line_and_exit_1(dukat: Dukat, tmp_path: Path) -> None:
    address = f"unix:{tmp_path}/none.sock"
    done = await dukat("--address", address, "--connect-timeout", "100ms", "jobs")
    assert done.code == 1
    assert done.err.startswith(f"dukat: cannot reach dukatd at {address} (tried for ")
    assert "Is dukatd running?" in done.err
    assert len(done.err.splitlines()) == 1


@pytest.mark.parametrize("path", ["/tmp/d.sock", "./d.sock", "dukatd.sock"])
async def test_a_socket_path_without_unix_is_a_usage_error_saying_how_to_write_it(
    dukat: Dukat, path: str
) -> None:
    # The long timeout would show if the path were tried as a host name: it is not tried.
    flag = await dukat("--address", path, "--connect-timeout", "60s", "jobs", within=30)
    dukat.env["DUKAT_ADDRESS"] = path
    variable = await dukat("--connect-timeout", "60s", "jobs", within=30)
    for done, where in ((flag, "the address"), (variable, "DUKAT_ADDRESS")):
        assert done.code == 2, done.err
        assert f"{where} {path!r} is a unix socket's path without its scheme" in done.err
        assert f"write 'unix:{path}'" in done.err


def test_python_m_dukat_is_the_same_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dukat", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "Usage: dukat" in done.stdout
    assert SCRIPT.exists()


async def test_the_example_pipeline_runs(dukat: Dukat) -> None:
    done = await dukat("run", str(REPO / "examples" / "pipeline.toml"))
    assert done.code == 0, done.err
    assert "download: 80% part 4 of 4" in done.out and "report | report: 1000 numbers" in done.out
    assert "sum | 500500" in done.out


async def test_logs_of_lines_the_daemon_no_longer_holds_gives_the_tails_it_kept(
    daemons: Callable[..., DaemonProcess], short_tmp: Path
) -> None:
    daemon = await daemons(
        "--allow-exec", "--event-log-length", "10", "--output-tail-bytes", "64", name="short"
    ).serving()
    dukat = Dukat(daemon, short_tmp)
    job = """
    [tasks.chatty]
    run = "seq 1 100; echo 'the end' >&2"
    [tasks.broken]
    run = "seq 1 100; echo 'it broke' >&2; exit 3"
    """
    ran = await dukat("run", "--output", "plain", dukat.file(job))
    assert ran.code == 1, ran.err
    job_id = ran.out.split("job ")[-1].split()[0]
    for task, said in (("chatty", "the end"), ("broken", "it broke")):
        logs = await dukat("logs", job_id, task)
        assert logs.code == 0, logs.err
        assert logs.out.endswith("98\n99\n100\n") and len(logs.out.encode()) <= 64
        assert "no longer holds these lines" in logs.err and logs.err.endswith(f"{said}\n")


async def test_a_daemon_with_a_token_takes_the_token_file(
    daemons: Callable[..., DaemonProcess], short_tmp: Path
) -> None:
    token = short_tmp / "token"
    token.write_text("s3cret-token\n")
    token.chmod(0o600)
    daemon = await daemons("--token-file", str(token), name="t").serving()
    dukat = Dukat(daemon, short_tmp)
    refused = await dukat("jobs")
    assert refused.code == 1 and refused.err.startswith("dukat: unauthenticated: ")
    allowed = await dukat("--token-file", str(token), "jobs")
    assert (allowed.code, allowed.out) == (0, "no jobs\n"), allowed.err
    missing = await dukat("--token-file", str(short_tmp / "none"), "jobs")
    assert missing.code == 2 and "--token-file: cannot read" in missing.err


async def test_show_and_watch_say_what_a_task_nobody_serves_waits_for(dukat: Dukat) -> None:
    waits = "waiting for a worker for queue 'nobody' (none connected)"
    async with connect(dukat.daemon.address) as client:
        tasks = tuple(TaskSpec(f"t{i}", DispatchAction("nobody", b"")) for i in range(3))
        handle = await client.submit(JobSpec(tasks=tasks))
        shown = await dukat("show", handle.job_id)
        assert shown.out.count(waits) == 3, shown.out
        watching = await dukat.start("watch", handle.job_id)
        assert watching.stdout is not None
        seen = b""
        while waits.encode() not in seen:
            seen += await asyncio.wait_for(watching.stdout.readline(), 30)
        await handle.cancel()
        out, _ = await asyncio.wait_for(watching.communicate(), 30)
    assert watching.returncode == 1
    said = (seen + out).decode()
    assert said.count(waits) == 1, said  # one line for the three tasks
