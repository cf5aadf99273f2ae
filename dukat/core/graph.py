"""Dependency graphs of tasks: the documented `DependencyGraph` and whole-DAG validation.

Edges read "task depends on upstream". A cycle is reported as a path in that direction, the
first task repeated at the end: `a -> b -> c -> a` means a depends on b, b on c, c on a.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence

from dukat.errors import CycleError

__all__ = ["DependencyGraph", "find_cycle", "topological_order"]


class DependencyGraph:
    """Tasks and what each depends on, kept acyclic as it is built.

    Two ways to use it: ask `get_ready_tasks(completed)` with the set of finished tasks, or
    drive it incrementally like `graphlib.TopologicalSorter`: `prepare()` returns the tasks
    that can start, and `mark_done(task)` returns the tasks that it made ready.
    """

    def __init__(self) -> None:
        # Ordered sets (dicts with None values) so iteration follows insertion order.
        self._upstream: dict[str, dict[str, None]] = {}
        self._downstream: dict[str, dict[str, None]] = {}
        self._waiting_on: dict[str, int] | None = None  # set by prepare()
        self._done: set[str] = set()

    def add_task(self, task: str) -> None:
        """Add a task that may have no dependencies; adding it again does nothing."""
        self._check_not_prepared()
        self._ensure(task)

    def add_dependency(self, task: str, depends_on: str) -> None:
        """Record that `task` runs only after `depends_on`.

        Raises `CycleError` at once if the edge closes a cycle; the graph is left unchanged.
        """
        self._check_not_prepared()
        if task == depends_on:
            raise CycleError([task, task])
        self._ensure(task)
        self._ensure(depends_on)
        if depends_on in self._upstream[task]:
            return
        # A new edge closes a cycle only if `task` is already upstream of `depends_on`, and
        # that needs `task` to have dependents: building in topological order costs O(1).
        if self._downstream[task]:
            path = self._upstream_path(depends_on, task)
            if path is not None:
                raise CycleError([task, *path])
        self._upstream[task][depends_on] = None
        self._downstream[depends_on][task] = None

    def dependencies(self, task: str) -> frozenset[str]:
        return frozenset(self._upstream[self._known(task)])

    def dependents(self, task: str) -> frozenset[str]:
        return frozenset(self._downstream[self._known(task)])

    @property
    def tasks(self) -> frozenset[str]:
        return frozenset(self._upstream)

    def __contains__(self, task: object) -> bool:
        return task in self._upstream

    def __len__(self) -> int:
        return len(self._upstream)

    def __iter__(self) -> Iterator[str]:
        return iter(self._upstream)

    def get_ready_tasks(self, completed_tasks: Collection[str]) -> set[str]:
        """Tasks not in `completed_tasks` whose dependencies all are."""
        completed = (
            completed_tasks
            if isinstance(completed_tasks, (set, frozenset))
            else set(completed_tasks)
        )
        return {
            task
            for task, upstream in self._upstream.items()
            if task not in completed and all(dep in completed for dep in upstream)
        }

    def prepare(self) -> list[str]:
        """Freeze the graph and return the tasks that have no dependencies."""
        if self._waiting_on is not None:
            raise ValueError("prepare() was already called on this graph")
        self._waiting_on = {task: len(upstream) for task, upstream in self._upstream.items()}
        return [task for task, count in self._waiting_on.items() if count == 0]

    def mark_done(self, task: str) -> list[str]:
        """Mark `task` finished and return the tasks that became ready through it."""
        if self._waiting_on is None:
            raise ValueError("prepare() must be called before mark_done()")
        self._known(task)
        if task in self._done:
            raise ValueError(f"task {task!r} was already marked done")
        if self._waiting_on[task]:
            raise ValueError(f"task {task!r} is not ready: its dependencies are not all done")
        self._done.add(task)
        ready = []
        for dependent in self._downstream[task]:
            self._waiting_on[dependent] -= 1
            if self._waiting_on[dependent] == 0:
                ready.append(dependent)
        return ready

    def is_active(self) -> bool:
        """True while some prepared task is not yet marked done."""
        if self._waiting_on is None:
            raise ValueError("prepare() must be called before is_active()")
        return len(self._done) < len(self._upstream)

    def static_order(self) -> list[str]:
        """Every task, each after all of its dependencies."""
        return topological_order({task: list(up) for task, up in self._upstream.items()})

    def _ensure(self, task: str) -> None:
        if task not in self._upstream:
            self._upstream[task] = {}
            self._downstream[task] = {}

    def _known(self, task: str) -> str:
        if task not in self._upstream:
            raise KeyError(f"unknown task {task!r}")
        return task

    def _check_not_prepared(self) -> None:
        if self._waiting_on is not None:
            raise ValueError("tasks cannot be added after prepare()")

    def _upstream_path(self, start: str, goal: str) -> list[str] | None:
        """A path start -> ... -> goal following dependencies, or None."""
        parent: dict[str, str | None] = {start: None}
        stack = [start]
        while stack:
            node = stack.pop()
            if node == goal:
                path = [node]
                while (previous := parent[path[-1]]) is not None:
                    path.append(previous)
                return path[::-1]
            for upstream in self._upstream[node]:
                if upstream not in parent:
                    parent[upstream] = node
                    stack.append(upstream)
        return None

    def __repr__(self) -> str:
        edges = sum(len(up) for up in self._upstream.values())
        return f"<DependencyGraph tasks:{len(self._upstream)} dependencies:{edges}>"


def topological_order(upstream: Mapping[str, Sequence[str]]) -> list[str]:
    """Order the tasks of `upstream` (task -> its dependencies) so that each follows its own.

    Every dependency must itself be a key. Raises `CycleError` with one cycle's path.
    """
    waiting_on = {task: len(deps) for task, deps in upstream.items()}
    downstream: dict[str, list[str]] = {task: [] for task in upstream}
    for task, deps in upstream.items():
        for dep in deps:
            downstream[dep].append(task)
    order = [task for task, count in waiting_on.items() if count == 0]
    for task in order:  # grows while iterating: Kahn's algorithm
        for dependent in downstream[task]:
            waiting_on[dependent] -= 1
            if waiting_on[dependent] == 0:
                order.append(dependent)
    if len(order) < len(upstream):
        stuck = {task for task, count in waiting_on.items() if count > 0}
        raise CycleError(find_cycle(upstream, stuck))
    return order


def find_cycle(upstream: Mapping[str, Iterable[str]], among: Collection[str]) -> list[str]:
    """One cycle among `among`, tasks Kahn's algorithm could not order.

    Every such task has a dependency among them, so walking dependencies from any of them
    must revisit a task; the walk from that first revisit is the cycle.
    """
    node = next(iter(among))
    seen: dict[str, int] = {}
    walk: list[str] = []
    while node not in seen:
        seen[node] = len(walk)
        walk.append(node)
        node = next(dep for dep in upstream[node] if dep in among)
    return [*walk[seen[node] :], node]
