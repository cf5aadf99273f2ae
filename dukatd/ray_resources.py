"""How the pool counts a Ray cluster's resources, for the Ray executor (`dukatd.ray_executor`).

Ray counts in absolute units, so with this executor so does the pool (amounts are
Ray's: `cpu=2` is two CPUs, `memory` is bytes, custom resources by name):

- `cpu`, `gpu` and `memory` are Ray's CPU, GPU and memory: their capacities are the cluster's
  totals (0 when it has none: a GPU task on a cluster without GPUs is refused at Submit);
- any other name the cluster has (custom resources, `network` or `disk` if its nodes were
  started with them) is that Ray resource, its capacity the cluster's total;
- a name the cluster does not have (`--resource licence=4`, and `network`, `disk` by default)
  is the daemon's own: the pool gates it as always, and Ray never hears of it;
- `--resource NAME=CAPACITY` pins the capacity of a Ray resource too (an autoscaling cluster
  whose nodes come when there is work: give its maximum), and is then not checked per node.

The totals are refreshed every `--ray-refresh-interval`: the pool follows the cluster as it
grows and shrinks (`ResourcePool.set_capacity`: what is held stays held; nothing more is
granted until it fits). The pool bounds what is sent to Ray by the cluster's totals, and Ray
places each attempt on one node: so a task is refused at Submit (INVALID_ARGUMENT naming it)
when its Ray resources fit no single alive node, since Ray would keep it pending forever.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dukat.core.resources import ResourceRequirement

__all__ = ["RAY_BUILTINS", "ClusterView", "dukat_name", "ray_need", "ray_options_for"]

RAY_BUILTINS = {"CPU": "cpu", "GPU": "gpu", "memory": "memory"}
"""Ray's names of the resources that are always the cluster's, and dukat's names of them."""
_IGNORED = frozenset({"object_store_memory"})  # and every name with a colon (node:..., ...)


def dukat_name(ray_name: str) -> str | None:
    """The pool's name of a Ray resource; None for Ray's internal ones (node:IP, ...)."""
    if ":" in ray_name or ray_name in _IGNORED:
        return None
    return RAY_BUILTINS.get(ray_name, ray_name)


@dataclass
class ClusterView:
    """The alive nodes of the cluster, in dukat's names, and what the pool makes of them."""

    nodes: list[tuple[str, dict[str, float]]] = field(default_factory=list)
    pinned: Mapping[str, float] = field(default_factory=dict)

    def update(self, ray_nodes: Iterable[tuple[str, Mapping[str, float]]]) -> None:
        nodes = []
        for node_id, resources in ray_nodes:
            named: dict[str, float] = {}
            for ray_name, amount in resources.items():
                name = dukat_name(ray_name)
                if name is not None:
                    named[name] = amount
            nodes.append((node_id, named))
        self.nodes = nodes

    @property
    def names(self) -> frozenset[str]:
        """The pool's names of the cluster's resources (the built-ins are always among them)."""
        found = {name for _, resources in self.nodes for name in resources}
        return frozenset(found | set(RAY_BUILTINS.values()))

    def capacities(self) -> dict[str, float]:
        """Each Ray resource's capacity in the pool: the cluster's total, unless pinned."""
        totals = dict.fromkeys(RAY_BUILTINS.values(), 0.0)
        for _, resources in self.nodes:
            for name, amount in resources.items():
                totals[name] = totals.get(name, 0.0) + amount
        # Rounded down to the pool's resolution: the pool must never promise more than Ray has.
        capacities = {name: int(total * 1000) / 1000 for name, total in totals.items()}
        capacities.update(self.pinned)
        return capacities

    def fits_one_node(self, need: Mapping[str, float]) -> bool:
        """Whether some alive node has all of `need` (pinned resources are not checked)."""
        checked = {n: a for n, a in need.items() if n not in self.pinned}
        if not checked:
            return True
        return any(
            all(resources.get(name, 0.0) >= amount for name, amount in checked.items())
            for _, resources in self.nodes
        )


def ray_options_for(
    requirements: Iterable[ResourceRequirement], ray_names: frozenset[str]
) -> dict[str, Any]:
    """The Ray task options asking for what a task needs of the cluster's resources (those of
    the daemon's own are left out: the pool alone gates them)."""
    need = ray_need(requirements, ray_names)
    options: dict[str, Any] = {"num_cpus": need.pop("cpu", 0)}
    for name, option in (("gpu", "num_gpus"), ("memory", "memory")):
        if name in need:
            options[option] = need.pop(name)
    if need:  # custom resources, by their names
        options["resources"] = need
    return options


def ray_need(
    requirements: Iterable[ResourceRequirement], ray_names: frozenset[str]
) -> dict[str, float]:
    """What a task needs of the cluster's resources, by name (the daemon's own left out)."""
    need: dict[str, float] = {}
    for requirement in requirements:
        if requirement.key in ray_names:
            need[requirement.key] = need.get(requirement.key, 0.0) + requirement.amount
    return need
