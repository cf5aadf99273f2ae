"""The Ray executor's parts that need no cluster: the attempt as it runs on a node (with
real processes), the warden, the resource mapping, and the options.

`dukatd.ray_remote.run_attempt` is what a Ray worker runs; here it runs in a thread of the
test, as a Ray worker's thread would, without Ray. The whole, on a real cluster, is
tests/dukatd/test_ray_executor.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from dukat.core.resources import ResourcePool, ResourceRequirement, ResourceType
from dukat.core.scheduler import Scheduler
from dukatd.config import ConfigError, parse_args
from dukatd.exec_runner import ExecOptions
from dukatd.ray_executor import RayExecutor
from dukatd.ray_remote import RemoteAttempt, run_attempt
from dukatd.ray_resources import ClusterView, ray_options_for
from tests.dukatd.processes import alive, proc_stat


def dead(pids: list[int], within: float = 2.0) -> None:
    """Wait until none of `pids` runs (a killed process takes a moment to be a zombie).
    Sync: `run_attempt` runs its own loop, as in a Ray worker, so no loop may run here."""
    deadline = time.monotonic() + within
    while any(alive(pid) for pid in pids):
        assert time.monotonic() < deadline, f"still running: {pids}"
        time.sleep(0.01)


def attempt(script: str, **kwargs) -> RemoteAttempt:
    return RemoteAttempt(
        argv=("sh", "-c", script),
        env=kwargs.pop("env", {}),
        cwd=kwargs.pop("cwd", None),
        stdin=kwargs.pop("stdin", b""),
        job_id="j1",
        task_id="t1",
        attempt=2,
        options=ExecOptions(kill_grace=kwargs.pop("kill_grace", 3.0)),
    )


def test_an_attempt_yields_its_lines_and_progress_then_its_exit_and_tails():
    items = list(
        run_attempt(
            attempt(
                'echo "$DUKAT_TASK_ID $DUKAT_ATTEMPT $DUKAT_RAY_NODE_ID"; '
                'echo "::progress 0.5 half"; echo oops >&2; exit 4'
            ),
            node_id="n1",
        )
    )
    kind, code, stdout, stderr, last = items[-1]
    events = [event for item in items[:-1] for event in item[1]] + last
    assert (kind, code) == ("exit", 4)
    assert events == [
        ("output", "stdout", "t1 2 n1"),
        ("progress", 0.5, "half"),
        ("output", "stderr", "oops"),
    ]
    assert (stdout, stderr) == (b"t1 2 n1\n::progress 0.5 half\n", b"oops\n")


def test_a_long_attempt_sends_its_lines_while_it_runs():
    running = run_attempt(attempt("echo early; sleep 0.5; echo late"))
    assert next(running) == ("events", [("output", "stdout", "early")])
    *_, last = running
    assert last[:2] == ("exit", 0) and last[4] == [("output", "stdout", "late")]


def test_an_attempt_has_the_stdin_env_and_cwd_it_is_given(tmp_path):
    items = list(
        run_attempt(
            attempt(
                'cat; echo "$GREETING"; pwd',
                env={"GREETING": "hi"},
                cwd=str(tmp_path),
                stdin=b"in\n",
            )
        )
    )
    assert items[-1][2] == f"in\nhi\n{tmp_path}\n".encode()


def test_a_program_that_cannot_start_is_a_spawn_error():
    items = list(run_attempt(RemoteAttempt(("/no/such/program",), {}, None, b"", "j", "t", 1)))
    assert items == [("spawn_error", "No such file or directory: '/no/such/program'")]


def test_a_cancelled_attempt_stops_its_whole_process_tree_and_ends():
    told = threading.Event()
    generator = run_attempt(
        attempt('sleep 300 & sh -c "sleep 301" & echo "pids $$ $!"; wait', kill_grace=1),
        cancelled=told.is_set,
    )
    kind, events = next(generator)
    pids = [int(pid) for pid in events[0][2].split()[1:]]
    assert kind == "events" and all(alive(pid) for pid in pids)
    told.set()
    assert list(generator) == []  # stopped: no outcome, the owner knows it stopped it
    dead(pids)


def test_a_closed_attempt_stops_its_process_too():
    """Ray closes a cancelled generator at a yield (GeneratorExit): the tree goes too."""
    generator = run_attempt(attempt('sleep 300 & echo "pids $$ $!"; wait'))
    pids = [int(pid) for pid in next(generator)[1][0][2].split()[1:]]
    generator.close()
    dead(pids)


def test_the_warden_kills_the_groups_it_was_told_of_when_its_pipe_ends():
    group = subprocess.Popen(["sh", "-c", "sleep 300 & wait"], start_new_session=True)
    warden = subprocess.Popen(
        [sys.executable, "-m", "dukatd.ray_warden"], stdin=subprocess.PIPE, start_new_session=True
    )
    warden.wait()  # its first process exits at once: the warden is nobody's child
    assert warden.stdin is not None
    warden.stdin.write(f"+{group.pid}\n+999999999\n-999999999\n".encode())
    warden.stdin.flush()
    try:
        assert alive(group.pid)
        warden.stdin.close()  # the Ray worker died
        assert group.wait(timeout=5) == -signal.SIGKILL
    finally:
        if group.poll() is None:
            os.killpg(group.pid, signal.SIGKILL)
            group.wait()
    assert proc_stat(group.pid) is None


def test_capacities_are_the_clusters_totals_in_dukats_names_unless_pinned():
    view = ClusterView(pinned={"gpu": 8, "licence": 2})
    view.update(
        [
            ("n1", {"CPU": 2.0, "memory": 1e9, "alpha": 1.0, "node:127.0.0.1": 1.0}),
            ("n2", {"CPU": 4.0, "memory": 2e9, "object_store_memory": 5e8, "alpha": 0.5}),
        ]
    )
    assert view.capacities() == {
        "cpu": 6.0,
        "memory": 3e9,
        "alpha": 1.5,
        "gpu": 8,  # pinned: an autoscaler's maximum
        "licence": 2,
    }
    assert view.names == {"cpu", "gpu", "memory", "alpha"}  # licence is the daemon's own
    assert view.fits_one_node({"cpu": 4, "alpha": 0.5})
    assert not view.fits_one_node({"cpu": 4, "alpha": 1})  # 6 CPUs and 1.5 alpha, not on one
    assert view.fits_one_node({"gpu": 8})  # pinned resources are not checked per node


def test_ray_options_ask_for_the_clusters_resources_and_leave_the_daemons_own_out():
    requirements = [
        ResourceRequirement(ResourceType.CPU, 2),
        ResourceRequirement(ResourceType.GPU, 0.5),
        ResourceRequirement(ResourceType.MEMORY, 1e9),
        ResourceRequirement(ResourceType.CUSTOM, 1, name="alpha"),
        ResourceRequirement(ResourceType.CUSTOM, 1, name="licence"),
        ResourceRequirement(ResourceType.NETWORK, 0.5),
    ]
    assert ray_options_for(requirements, frozenset({"cpu", "gpu", "memory", "alpha"})) == {
        "num_cpus": 2,
        "num_gpus": 0.5,
        "memory": 1e9,
        "resources": {"alpha": 1},
    }
    assert ray_options_for([], frozenset({"cpu"})) == {"num_cpus": 0}


def test_the_ray_executor_is_an_option_and_needs_exec_on():
    config = parse_args(
        ["--allow-exec", "--executor", "ray", "--ray-address", "10.0.0.1:6379"], environ={}
    )
    assert (config.executor, config.ray_address) == ("ray", "10.0.0.1:6379")
    assert (config.ray_refresh_interval, config.ray_connect_timeout) == (10.0, 30.0)
    assert parse_args([], environ={}).executor == "local"
    env = {"DUKATD_EXECUTOR": "ray", "DUKATD_ALLOW_EXEC": "1", "DUKATD_RAY_REFRESH_INTERVAL": "2s"}
    assert parse_args([], environ=env).ray_refresh_interval == 2.0
    with pytest.raises(ConfigError, match="--executor: 'ray' runs exec tasks, which are off"):
        parse_args(["--executor", "ray"], environ={})
    with pytest.raises(ConfigError, match="must be one of local, ray, not 'dask'"):
        parse_args(["--executor", "dask"], environ={})
    with pytest.raises(ConfigError, match="--ray-address: must be auto"):
        parse_args(["--allow-exec", "--executor", "ray", "--ray-address", " "], environ={})


async def test_the_pool_follows_the_cluster_and_a_resource_no_node_has_any_more_goes_to_zero():
    pool = ResourcePool({"licence": 2})
    executor = RayExecutor(
        "127.0.0.1:1", pool, task_spec=Scheduler().task_spec, pinned={"licence": 2}
    )
    executor._on_nodes([("n1", {"CPU": 2.0, "spare": 1.0}), ("n2", {"CPU": 2.0, "spare": 1.0})])
    assert {k: pool.capacities[k] for k in ("cpu", "spare", "licence", "gpu")} == {
        "cpu": 4.0,
        "spare": 2.0,
        "licence": 2.0,
        "gpu": 0.0,
    }
    executor._on_nodes([("n1", {"CPU": 2.0})])  # both spare nodes left
    assert (pool.capacities["cpu"], pool.capacities["spare"]) == (2.0, 0.0)
    assert pool.capacities["licence"] == 2.0  # the daemon's own: not the cluster's to change
