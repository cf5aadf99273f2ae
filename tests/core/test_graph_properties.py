"""Property-based tests of dependency graphs: acyclic as they are built, cycles reported true."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dukat.core import (
    CallableAction,
    CycleError,
    DependencyGraph,
    JobSpec,
    JobState,
    Scheduler,
    TaskSpec,
    TaskState,
)

DEADLOCK_SECONDS = 5.0  # generous: a healthy example ends in milliseconds
LICENCE = "licence"  # the custom resource of every example: a small concurrency group
RUNS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

TERMINAL = frozenset(s for s in TaskState if s.is_terminal)
ST = TaskState


# -- DependencyGraph: acyclic as it is built --------------------------------------------------

NODES = st.sampled_from("abcdefg")


def reaches(edges: set[tuple[str, str]], start: str, goal: str) -> bool:
    """Whether `start` depends on `goal`, directly or not (edges are (task, depends_on))."""
    seen, stack = set(), [start]
    while stack:
        node = stack.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            stack.extend(dep for task, dep in edges if task == node)
    return False


def assert_real_cycle(cycle: tuple[str, ...], edges: set[tuple[str, str]]) -> None:
    assert len(cycle) >= 2
    assert cycle[0] == cycle[-1]
    assert len(set(cycle[:-1])) == len(cycle) - 1, f"{cycle} repeats a task inside"
    for task, dep in itertools.pairwise(cycle):
        assert (task, dep) in edges, f"{task} -> {dep} of {cycle} is no dependency"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(NODES, NODES), max_size=30))
def test_dependency_graph_stays_acyclic_and_reports_real_cycles(
    insertions: list[tuple[str, str]],
) -> None:
    graph = DependencyGraph()
    edges: set[tuple[str, str]] = set()
    for task, dep in insertions:
        before = {node: graph.dependencies(node) for node in graph}
        try:
            graph.add_dependency(task, dep)
        except CycleError as error:
            assert task == dep or reaches(edges, dep, task), "a cycle that is not there"
            assert_real_cycle(error.cycle, edges | {(task, dep)})
            assert (task, dep) in set(itertools.pairwise(error.cycle))
            assert " -> ".join(error.cycle) in str(error)
            assert {node: graph.dependencies(node) for node in graph} == before
            continue
        assert task != dep and not reaches(edges, dep, task), "a cycle was let in"
        edges.add((task, dep))
        assert {(t, d) for t in graph for d in graph.dependencies(t)} == edges
        order = graph.static_order()
        position = {node: index for index, node in enumerate(order)}
        assert sorted(order) == sorted(graph)
        assert all(position[d] < position[t] for t, d in edges)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(NODES, NODES), max_size=20), st.randoms(use_true_random=False))
def test_dependency_graph_releases_each_task_after_its_dependencies(
    insertions: list[tuple[str, str]], rng: random.Random
) -> None:
    graph = DependencyGraph()
    for task, dep in insertions:
        graph.add_task(task)
        with contextlib.suppress(CycleError):
            graph.add_dependency(task, dep)
    ready = set(graph.prepare())
    assert ready == graph.get_ready_tasks(set())
    done: set[str] = set()
    while ready:
        task = rng.choice(sorted(ready))
        ready.discard(task)
        assert graph.dependencies(task) <= done
        done.add(task)
        newly = graph.mark_done(task)
        assert not ready & set(newly), "a task released twice"
        ready.update(newly)
        assert ready == graph.get_ready_tasks(done)
    assert done == set(graph) and not graph.is_active()


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(NODES, st.sets(NODES, max_size=3), min_size=1))
def test_submit_runs_a_dag_or_names_a_real_cycle(upstream: dict[str, set[str]]) -> None:
    upstream = {t: {d for d in deps if d in upstream and d != t} for t, deps in upstream.items()}
    edges = {(t, d) for t, deps in upstream.items() for d in deps}
    has_cycle = any(reaches(edges, d, t) for t, d in edges)
    finished: list[str] = []

    async def body(task_id: str) -> None:
        finished.append(task_id)

    async def submit() -> None:
        async with Scheduler() as scheduler:
            spec = JobSpec(
                tuple(
                    TaskSpec(t, CallableAction(body, (t,)), dependencies=tuple(sorted(deps)))
                    for t, deps in upstream.items()
                )
            )
            try:
                job_id = scheduler.submit(spec, job_id="job")
            except CycleError as error:
                assert has_cycle
                assert_real_cycle(error.cycle, edges)
                assert error.task_id == error.cycle[0]
                assert "job" not in scheduler, "a rejected job was kept"
                return
            assert not has_cycle
            async with asyncio.timeout(DEADLOCK_SECONDS):
                assert await scheduler.wait(job_id) is JobState.SUCCEEDED
            position = {task: index for index, task in enumerate(finished)}
            assert sorted(finished) == sorted(upstream)
            assert all(position[d] < position[t] for t, d in edges)

    asyncio.run(submit())
