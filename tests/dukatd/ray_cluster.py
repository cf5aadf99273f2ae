"""A real Ray cluster of several nodes on this host, on loopback, for the Ray executor's tests.

The cluster (`ray.cluster_utils.Cluster`) lives in a process of its own, `python
tests/dukatd/ray_cluster.py`, so that Ray's processes, threads and warnings stay out of
pytest's. It starts a head, says its address, then takes one JSON command a line on stdin
and answers each with one JSON line:

    {"op": "add", "name": "alpha", "num_cpus": 2, "resources": {"alpha": 2}} -> {"node_id": ...}
    {"op": "remove", "name": "alpha"}                                        -> {"removed": ...}

At the end of stdin it shuts the whole cluster down. Every node listens on 127.0.0.1 only:
`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` (in `RAY_ENV`, for the daemons too) keeps Ray from
rewriting a loopback address into the host's outside one. Health checks are quick, so that a
node removed is known for dead within a second or two.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

__all__ = ["RAY_ENV", "RayCluster"]

RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "500",
    "RAY_health_check_failure_threshold": "2",
    "RAY_DEDUP_LOGS": "0",
}
"""The environment of the cluster and of every process that connects to it."""


class RayCluster:
    """The controlling end, in the test process."""

    def __init__(self) -> None:
        self._temp = tempfile.TemporaryDirectory(dir="/tmp", prefix="dkr-")
        self.log_path = Path(self._temp.name) / "cluster.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, __file__, self._temp.name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env={**os.environ, **RAY_ENV},
        )
        self.address: str = self._answer()["address"]
        self.node_ids: dict[str, str] = {}

    def add(self, name: str, num_cpus: int, resources: dict[str, float]) -> str:
        """Start a node; its Ray node id."""
        answer = self._ask(
            {"op": "add", "name": name, "num_cpus": num_cpus, "resources": resources}
        )
        self.node_ids[name] = answer["node_id"]
        return answer["node_id"]

    def remove(self, name: str) -> None:
        """Kill every process of the node (raylet, workers), as a lost machine would be."""
        self._ask({"op": "remove", "name": name})
        del self.node_ids[name]

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            assert self.process.stdout is not None
            self.process.stdout.close()
            self._log.close()
            self._temp.cleanup()

    def _ask(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        self.process.stdin.flush()
        return self._answer()

    def _answer(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the Ray cluster process ended:\n{self.log_path.read_text()}")
        return json.loads(line)


def _serve(temp_dir: str, out: IO[str]) -> None:
    from ray.cluster_utils import Cluster

    common = {"node_ip_address": "127.0.0.1", "include_dashboard": False}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={**common, "num_cpus": 1, "temp_dir": temp_dir},
    )
    nodes = {}
    out.write(json.dumps({"address": cluster.address}) + "\n")
    out.flush()
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "add":
            node = cluster.add_node(
                **common, num_cpus=command["num_cpus"], resources=command["resources"]
            )
            nodes[command["name"]] = node
            answer = {"node_id": node.node_id}
        else:
            cluster.remove_node(nodes.pop(command["name"]), allow_graceful=False)
            answer = {"removed": command["name"]}
        out.write(json.dumps(answer) + "\n")
        out.flush()
    cluster.shutdown()


if __name__ == "__main__":
    # Answers on a copy of stdout; Ray's own output (and its processes') goes to the log.
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    _serve(sys.argv[1], answers)
