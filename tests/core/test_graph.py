"""DependencyGraph: the documented API, cycles refused as they close, the incremental API."""

from __future__ import annotations

import graphlib
import itertools
import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dukat.core.graph import DependencyGraph, cycle_from, find_cycle, topological_order
from dukat.errors import CycleError, ValidationError


def diamond() -> DependencyGraph:
    """The documented example: task1 -> (task2, task3) -> task4."""
    graph = DependencyGraph()
    graph.add_dependency("task2", "task1")
    graph.add_dependency("task3", "task1")
    graph.add_dependency("task4", "task2")
    graph.add_dependency("task4", "task3")
    return graph


def assert_is_cycle_of(graph_edges: dict[str, set[str]], cycle: tuple[str, ...]) -> None:
    """`cycle` is a closed path in which each task depends on the next one."""
    assert len(cycle) >= 2
    assert cycle[0] == cycle[-1]
    for task, upstream in itertools.pairwise(cycle):
        assert upstream in graph_edges.get(task, set()), f"{task} does not depend on {upstream}"


# -- the documented API ---------------------------------------------------------------------


def test_documented_example_returns_task2_and_task3_after_task1():
    assert diamond().get_ready_tasks({"task1"}) == {"task2", "task3"}


def test_get_ready_tasks_with_nothing_completed_returns_the_roots():
    assert diamond().get_ready_tasks(set()) == {"task1"}


def test_get_ready_tasks_needs_every_dependency_completed():
    graph = diamond()
    assert graph.get_ready_tasks({"task1", "task2"}) == {"task3"}
    assert graph.get_ready_tasks({"task1", "task2", "task3"}) == {"task4"}


def test_get_ready_tasks_leaves_out_completed_tasks():
    everything = {"task1", "task2", "task3", "task4"}
    assert diamond().get_ready_tasks(everything) == set()


def test_get_ready_tasks_accepts_any_collection():
    graph = diamond()
    assert graph.get_ready_tasks(["task1"]) == {"task2", "task3"}
    assert graph.get_ready_tasks(frozenset({"task1"})) == {"task2", "task3"}
    assert graph.get_ready_tasks(("task1", "task2")) == {"task3"}


def test_get_ready_tasks_ignores_completed_names_it_does_not_know():
    assert diamond().get_ready_tasks({"task1", "elsewhere"}) == {"task2", "task3"}


def test_get_ready_tasks_returns_a_new_set_each_time():
    graph = diamond()
    first = graph.get_ready_tasks({"task1"})
    first.add("intruder")
    assert graph.get_ready_tasks({"task1"}) == {"task2", "task3"}


def test_dependencies_and_dependents_read_back_the_edges():
    graph = diamond()
    assert graph.dependencies("task4") == {"task2", "task3"}
    assert graph.dependencies("task1") == frozenset()
    assert graph.dependents("task1") == {"task2", "task3"}
    assert graph.dependents("task4") == frozenset()


def test_dependencies_of_an_unknown_task_is_a_key_error_naming_it():
    with pytest.raises(KeyError, match="'ghost'"):
        diamond().dependencies("ghost")
    with pytest.raises(KeyError, match="'ghost'"):
        diamond().dependents("ghost")


def test_tasks_len_contains_and_iteration_follow_insertion_order():
    graph = diamond()
    assert graph.tasks == {"task1", "task2", "task3", "task4"}
    assert len(graph) == 4
    assert "task3" in graph
    assert "task9" not in graph
    assert list(graph) == ["task2", "task1", "task3", "task4"]


def test_add_task_adds_a_task_without_dependencies_once():
    graph = DependencyGraph()
    graph.add_task("alone")
    graph.add_task("alone")
    assert len(graph) == 1
    assert graph.get_ready_tasks(set()) == {"alone"}


def test_adding_the_same_dependency_twice_records_it_once():
    graph = DependencyGraph()
    graph.add_dependency("b", "a")
    graph.add_dependency("b", "a")
    assert graph.dependencies("b") == {"a"}
    assert repr(graph) == "<DependencyGraph tasks:2 dependencies:1>"


def test_repr_counts_tasks_and_dependencies():
    assert repr(diamond()) == "<DependencyGraph tasks:4 dependencies:4>"


# -- cycles ---------------------------------------------------------------------------------


def test_closing_edge_of_a_three_cycle_raises_with_the_path():
    graph = DependencyGraph()
    graph.add_dependency("a", "b")
    graph.add_dependency("b", "c")
    with pytest.raises(CycleError) as caught:
        graph.add_dependency("c", "a")
    assert caught.value.cycle == ("c", "a", "b", "c")
    assert "c -> a -> b -> c" in str(caught.value)


def test_cycle_error_is_a_value_error_and_a_validation_error():
    graph = DependencyGraph()
    graph.add_dependency("a", "b")
    with pytest.raises(ValueError, match=r"^dependency cycle: b -> a -> b$") as caught:
        graph.add_dependency("b", "a")
    assert isinstance(caught.value, ValidationError)


def test_two_cycle_path_reads_in_dependency_direction():
    graph = DependencyGraph()
    graph.add_dependency("a", "b")  # a depends on b
    with pytest.raises(CycleError) as caught:
        graph.add_dependency("b", "a")  # b depends on a
    assert caught.value.cycle == ("b", "a", "b")


def test_cycle_error_names_the_task_whose_edge_closed_it():
    graph = DependencyGraph()
    graph.add_dependency("a", "b")
    with pytest.raises(CycleError) as caught:
        graph.add_dependency("b", "a")
    assert caught.value.task_id == "b"
    assert caught.value.violations[0].field == "dependencies"


def test_cycle_found_through_a_long_detour_gives_the_whole_path():
    graph = DependencyGraph()
    chain = [f"t{i}" for i in range(6)]
    for task, upstream in itertools.pairwise(chain):
        graph.add_dependency(task, upstream)  # t0 <- t1 <- ... <- t5
    graph.add_dependency("side", "t3")
    with pytest.raises(CycleError) as caught:
        graph.add_dependency("t5", "t0")
    assert caught.value.cycle == ("t5", "t0", "t1", "t2", "t3", "t4", "t5")


def test_graph_is_unchanged_after_a_refused_edge():
    graph = diamond()
    before = {task: graph.dependencies(task) for task in graph}
    with pytest.raises(CycleError):
        graph.add_dependency("task1", "task4")
    assert {task: graph.dependencies(task) for task in graph} == before
    assert graph.dependents("task4") == frozenset()
    assert repr(graph) == "<DependencyGraph tasks:4 dependencies:4>"
    assert graph.static_order()[0] == "task1"


def test_self_dependency_is_a_cycle_of_one_and_adds_nothing():
    graph = DependencyGraph()
    with pytest.raises(CycleError) as caught:
        graph.add_dependency("a", "a")
    assert caught.value.cycle == ("a", "a")
    assert "a -> a" in str(caught.value)
    assert "a" not in graph


def test_edges_that_only_look_circular_are_accepted():
    # Two paths to the same task make a diamond, not a cycle.
    graph = diamond()
    graph.add_dependency("task4", "task1")
    assert graph.dependencies("task4") == {"task1", "task2", "task3"}


@given(st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7)), max_size=40))
def test_random_edges_keep_the_graph_acyclic_and_every_refusal_names_a_real_cycle(edges):
    graph = DependencyGraph()
    accepted: dict[str, set[str]] = {}
    for task_number, upstream_number in edges:
        task, upstream = f"n{task_number}", f"n{upstream_number}"
        try:
            graph.add_dependency(task, upstream)
        except CycleError as error:
            # The cycle runs through the refused edge, then existing edges back to the start.
            assert error.cycle[:2] == (task, upstream)
            assert_is_cycle_of(
                {**accepted, task: {*accepted.get(task, set()), upstream}}, error.cycle
            )
        else:
            accepted.setdefault(task, set()).add(upstream)
    # What was accepted is a DAG, and graphlib agrees on it.
    order = graph.static_order()
    position = {task: index for index, task in enumerate(order)}
    for task, upstreams in accepted.items():
        for upstream in upstreams:
            assert position[upstream] < position[task]
    graphlib.TopologicalSorter(accepted).prepare()


# -- the incremental API --------------------------------------------------------------------


def test_prepare_returns_the_roots_and_mark_done_the_tasks_it_unblocked():
    graph = diamond()
    assert graph.prepare() == ["task1"]
    assert sorted(graph.mark_done("task1")) == ["task2", "task3"]
    assert graph.mark_done("task2") == []
    assert graph.mark_done("task3") == ["task4"]
    assert graph.mark_done("task4") == []


def test_is_active_until_every_task_is_done():
    graph = diamond()
    graph.prepare()
    for task in ["task1", "task2", "task3"]:
        graph.mark_done(task)
        assert graph.is_active()
    graph.mark_done("task4")
    assert not graph.is_active()


def test_empty_graph_prepares_to_nothing_and_is_not_active():
    graph = DependencyGraph()
    assert graph.prepare() == []
    assert not graph.is_active()


def test_roots_come_out_of_prepare_in_insertion_order():
    graph = DependencyGraph()
    for task in ["c", "a", "b"]:
        graph.add_task(task)
    assert graph.prepare() == ["c", "a", "b"]


def test_mark_done_before_prepare_says_to_call_prepare():
    with pytest.raises(ValueError, match=r"prepare\(\) must be called"):
        diamond().mark_done("task1")


def test_is_active_before_prepare_says_to_call_prepare():
    with pytest.raises(ValueError, match=r"prepare\(\) must be called"):
        diamond().is_active()


def test_prepare_twice_is_refused():
    graph = diamond()
    graph.prepare()
    with pytest.raises(ValueError, match="already called"):
        graph.prepare()


def test_no_tasks_or_dependencies_can_be_added_after_prepare():
    graph = diamond()
    graph.prepare()
    with pytest.raises(ValueError, match=r"after prepare\(\)"):
        graph.add_task("late")
    with pytest.raises(ValueError, match=r"after prepare\(\)"):
        graph.add_dependency("late", "task4")
    assert "late" not in graph


def test_mark_done_twice_is_refused_and_does_not_unblock_twice():
    graph = DependencyGraph()
    graph.add_dependency("child", "a")
    graph.add_dependency("child", "b")
    graph.prepare()
    assert graph.mark_done("a") == []
    with pytest.raises(ValueError, match="'a' was already marked done"):
        graph.mark_done("a")
    # Had the second call counted, child would be ready before b is done.
    assert graph.mark_done("b") == ["child"]


def test_mark_done_of_a_task_whose_dependencies_are_not_done_is_refused():
    graph = diamond()
    graph.prepare()
    with pytest.raises(ValueError, match="'task2' is not ready"):
        graph.mark_done("task2")
    # The refusal changed nothing: task1 still unblocks task2 and task3.
    assert sorted(graph.mark_done("task1")) == ["task2", "task3"]


def test_mark_done_of_an_unknown_task_is_a_key_error():
    graph = diamond()
    graph.prepare()
    with pytest.raises(KeyError, match="'ghost'"):
        graph.mark_done("ghost")


def test_incremental_run_visits_every_task_once_after_its_dependencies():
    graph = diamond()
    graph.add_dependency("task5", "task4")
    graph.add_task("loner")
    ready = list(graph.prepare())
    finished: list[str] = []
    while ready:
        task = ready.pop(0)
        assert graph.dependencies(task) <= set(finished)
        finished.append(task)
        ready.extend(graph.mark_done(task))
    assert sorted(finished) == sorted(graph.tasks)
    assert not graph.is_active()


# -- whole-graph ordering -------------------------------------------------------------------


def test_static_order_puts_every_task_after_its_dependencies():
    graph = diamond()
    graph.add_task("loner")
    order = graph.static_order()
    assert sorted(order) == ["loner", "task1", "task2", "task3", "task4"]
    for task in order:
        for upstream in graph.dependencies(task):
            assert order.index(upstream) < order.index(task)


def test_static_order_does_not_prepare_the_graph():
    graph = diamond()
    graph.static_order()
    graph.add_task("still-open")
    assert graph.prepare() == ["task1", "still-open"]


def test_topological_order_orders_a_mapping_of_dependencies():
    order = topological_order({"c": ["a", "b"], "b": ["a"], "a": []})
    assert order == ["a", "b", "c"]


def test_topological_order_of_nothing_is_empty():
    assert topological_order({}) == []


def test_topological_order_reports_a_cycle_path_among_the_stuck_tasks():
    upstream = {"root": [], "a": ["root", "c"], "b": ["a"], "c": ["b"], "after": ["a"]}
    with pytest.raises(CycleError) as caught:
        topological_order(upstream)
    cycle = caught.value.cycle
    assert set(cycle) == {"a", "b", "c"}
    assert_is_cycle_of({task: set(deps) for task, deps in upstream.items()}, cycle)


def test_topological_order_reports_a_self_loop():
    with pytest.raises(CycleError) as caught:
        topological_order({"a": ["a"]})
    assert caught.value.cycle == ("a", "a")


def test_find_cycle_walks_dependencies_to_the_first_repeat():
    upstream = {"x": ["a"], "a": ["b"], "b": ["c"], "c": ["a"]}
    # x is stuck only because it waits on the cycle; the cycle itself leaves x out.
    assert find_cycle(upstream, ["x", "a", "b", "c"]) == ["a", "b", "c", "a"]


def test_find_cycle_only_follows_edges_among_the_given_tasks():
    upstream = {"a": ["done", "b"], "b": ["a"], "done": []}
    assert find_cycle(upstream, ["a", "b"]) == ["a", "b", "a"]


CYCLES_IN_ORDER = """
import asyncio

from dukat.core import CallableAction, JobSpec, Scheduler, TaskSpec
from dukat.core.graph import topological_order
from dukat.errors import CycleError

# Two cycles, and tasks waiting on them; ids of one letter hash apart under each seed.
upstream = {"w": ["x"], "x": ["y"], "y": ["x"], "a": ["b"], "b": ["c"], "c": ["a"], "v": ["a"]}
try:
    topological_order(upstream)
except CycleError as error:
    print(" ".join(error.cycle))
tasks = tuple(TaskSpec(t, CallableAction(print), dependencies=tuple(upstream[t])) for t in upstream)


async def submit():
    try:
        Scheduler().submit(JobSpec(tasks))
    except CycleError as error:
        print(" ".join(error.cycle), error.violations[0].field)


asyncio.run(submit())
"""


def test_the_cycle_reported_is_found_from_the_first_stuck_task_whatever_the_hash_seed():
    seen = set()
    for seed in range(6):
        done = subprocess.run(
            [sys.executable, "-c", CYCLES_IN_ORDER],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
        )
        assert done.returncode == 0, done.stderr
        seen.add(done.stdout)
    assert seen == {"x y x\nx y x tasks[1].dependencies\n"}


def test_cycle_from_follows_the_dependencies_in_their_order():
    upstream = {"s": ["p", "q"], "p": ["done"], "q": ["r"], "r": ["q", "s"], "done": []}
    assert cycle_from("s", upstream.__getitem__) == ["q", "r", "q"]
    assert cycle_from("p", upstream.__getitem__) is None
    assert cycle_from("a", {"a": ["a"]}.__getitem__) == ["a", "a"]
