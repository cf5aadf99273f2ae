"""Dependency graphs of tasks: the documented `DependencyGraph`, and the engine's one
topological order (`topological_order`) and one cycle finder (`cycle_from`), which every
check of a DAG uses: the graph's own as it is built, a job's (`dukat.core._build`), an
executor's as tasks are added (`dukat.core.parallel_executor`), a rerun's walk.

Edges read "task depends on upstream". A cycle is reported as a path in that direction, the
first task repeated at the end: `a -> b -> c -> a` means a depends on b, b on c, c on a. The
path found depends only on the order of the tasks and of their dependencies, never on a
hash seed: a whole DAG's starts from the first task, in its order, that cannot be ordered.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence

from dukat.errors import CycleError

__all__ = ["DependencyGraph", "cycle_from", "find_cycle", "topological_order"]


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
            upstream = self._upstream
            cycle = cycle_from(task, lambda node: (depends_on,) if node == task else upstream[node])
            if cycle is not None:
                raise CycleError(cycle)
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

    def __repr__(self) -> str:
        edges = sum(len(up) for up in self._upstream.values())
        return f"<DependencyGraph tasks:{len(self._upstream)} dependencies:{edges}>"


def topological_order(upstream: Mapping[str, Sequence[str]]) -> list[str]:
    """Order the tasks of `upstream` (task -> its dependencies) so that each follows its own,
    the tasks without any first, each wave in the order of `upstream` (Kahn's algorithm).

    Every dependency must itself be a key. Raises `CycleError` with one cycle's path.
    """
    waiting_on = {task: len(deps) for task, deps in upstream.items()}
    downstream: dict[str, list[str]] = {task: [] for task in upstream}
    for task, deps in upstream.items():
        for dep in deps:
            downstream[dep].append(task)
    order = [task for task, count in waiting_on.items() if count == 0]
    for task in order:  # grows while iterating
        for dependent in downstream[task]:
            waiting_on[dependent] -= 1
            if waiting_on[dependent] == 0:
                order.append(dependent)
    if len(order) < len(upstream):
        stuck = [task for task, count in waiting_on.items() if count > 0]  # in their order
        raise CycleError(find_cycle(upstream, stuck))
    return order


def find_cycle(upstream: Mapping[str, Iterable[str]], among: Collection[str]) -> list[str]:
    """One cycle among `among`, tasks Kahn's algorithm could not order, found from the first
    of them in their order (`cycle_from`, following dependencies among them only).

    Every such task has a dependency among them, so there is one: it may leave out the first
    task, when that one only waits on a cycle.
    """
    found = set(among)
    cycle = cycle_from(next(iter(among)), lambda node: [d for d in upstream[node] if d in found])
    assert cycle is not None, "tasks Kahn's algorithm could not order hold a cycle"
    return cycle


def cycle_from(start: str, dependencies: Callable[[str], Iterable[str]]) -> list[str] | None:
    """The first cycle reachable from `start` following `dependencies(task)`, depth first in
    the order they come, as a path each task of which depends on the next, the first
    repeated at the end; None if there is none.

    Checking a new edge (or a new task's edges) on a graph that was acyclic before: start
    from the task it leaves, give only the new edges for it, and any cycle found runs
    through them, beginning with that task.
    """
    on_path: dict[str, int] = {start: 0}  # the path from `start`, task -> its position
    path = [start]
    ways = [iter(dependencies(start))]  # at each step of the path, the dependencies left
    done: set[str] = set()  # explored to the end: no cycle from there
    while ways:
        task = next(ways[-1], None)
        if task is None:
            finished = path.pop()
            del on_path[finished]
            done.add(finished)
            ways.pop()
        elif task in on_path:
            return [*path[on_path[task] :], task]
        elif task not in done:
            on_path[task] = len(path)
            path.append(task)
            ways.append(iter(dependencies(task)))
    return None
