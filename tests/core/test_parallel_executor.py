"""The documented `ParallelTaskExecutor` API, used exactly as its users write it."""

from __future__ import annotations

import asyncio
import threading

import pytest

from dukat.core.async_assistant import AsyncAssistant
from dukat.core.parallel_executor import (
    DependencyGraph,
    ParallelTaskExecutor,
    ResourcePool,
    ResourceRequirement,
    ResourceType,
    RetryPolicy,
    Task,
    TaskResult,
    TaskState,
)
from dukat.core.scheduler import Scheduler
from dukat.errors import CycleError, NotFoundError, ValidationError
from tests.helpers import Gauge, Probe, settle, wait_for


async def noop() -> None:
    return None


async def boom() -> None:
    raise ValueError("boom")


def test_documented_dependency_graph_example():
    graph = DependencyGraph()
    for task, upstream in [("task2", "task1"), ("task3", "task1"), ("task4", "task2")]:
        graph.add_dependency(task, upstream)
    graph.add_dependency("task4", "task3")
    assert graph.get_ready_tasks({"task1"}) == {"task2", "task3"}


async def test_documented_example_runs_dependencies_and_resources():
    executor = ParallelTaskExecutor(max_concurrency=3)

    async def fetch(url: str, *, retries: int) -> str:
        return f"{url} x{retries}"

    def parse(text: str) -> str:
        return text.upper()

    await executor.add_task(
        Task("fetch", fetch, description="download", args=("page",), kwargs={"retries": 2})
    )
    await executor.add_task(
        Task("parse", parse, description="parse it", args=("done",)),
        dependencies=["fetch"],
        resource_requirements=[
            ResourceRequirement(ResourceType.CPU, 0.5),
            ResourceRequirement(ResourceType.MEMORY, 0.3),
        ],
    )
    results = await executor.execute_all()
    assert set(results) == {"fetch", "parse"}
    fetched, parsed = results["fetch"], results["parse"]
    assert isinstance(parsed, TaskResult)
    assert (fetched.state, fetched.result, fetched.error) == (TaskState.SUCCEEDED, "page x2", None)
    assert (parsed.state, parsed.result, parsed.attempts) == (TaskState.SUCCEEDED, "DONE", 1)
    assert fetched.finished_at <= parsed.started_at <= parsed.finished_at
    assert all(u.used == 0 for u in executor.scheduler.resources.usage().values())


async def test_task_failures_are_results_not_exceptions():
    executor = ParallelTaskExecutor(max_concurrency=3)
    await executor.add_task(Task("bad", boom))
    await executor.add_task(Task("after", noop), dependencies=["bad"])
    await executor.add_task(Task("ok", noop))
    results = await executor.execute_all()
    assert results["bad"].state is TaskState.FAILED
    assert isinstance(results["bad"].error, ValueError)
    assert results["after"].state is TaskState.SKIPPED and "'bad'" in results["after"].message
    assert results["ok"].state is TaskState.SUCCEEDED


async def test_plain_function_runs_in_a_thread():
    executor = ParallelTaskExecutor(max_concurrency=3)
    await executor.add_task(Task("t", threading.get_ident))
    results = await executor.execute_all()
    assert results["t"].state is TaskState.SUCCEEDED
    assert results["t"].result != threading.get_ident()


async def test_max_concurrency_is_respected():
    executor = ParallelTaskExecutor(max_concurrency=3)
    gauge = Gauge()

    async def work() -> None:
        with gauge.hold():
            for _ in range(5):
                await asyncio.sleep(0)

    for i in range(9):
        await executor.add_task(Task(f"t{i}", work))
    results = await executor.execute_all()
    assert {r.state for r in results.values()} == {TaskState.SUCCEEDED}
    assert gauge.peak == 3


async def test_custom_resource_in_the_executors_pool_is_a_concurrency_group():
    executor = ParallelTaskExecutor(max_concurrency=3, resource_pool=ResourcePool({"licence": 1}))
    gauge = Gauge()

    async def work() -> None:
        with gauge.hold():
            for _ in range(5):
                await asyncio.sleep(0)

    seat = [ResourceRequirement(ResourceType.CUSTOM, 1, name="licence")]
    for i in range(3):
        await executor.add_task(Task(f"t{i}", work), resource_requirements=seat)
    results = await executor.execute_all()
    assert {r.state for r in results.values()} == {TaskState.SUCCEEDED}
    assert gauge.peak == 1


def test_the_pool_is_resources_as_for_the_scheduler_and_resource_pool_still_names_it():
    pool = ResourcePool({"licence": 1})
    for executor in (
        ParallelTaskExecutor(resources=pool),
        ParallelTaskExecutor(resource_pool=pool),  # the name it was documented with first
        AsyncAssistant(resources=pool),
        AsyncAssistant(resource_pool=pool),
    ):
        assert executor.scheduler.resources is pool
    with pytest.raises(TypeError, match="give one of them"):
        ParallelTaskExecutor(resources=pool, resource_pool=pool)


async def test_retry_option_gives_more_attempts():
    executor = ParallelTaskExecutor(max_concurrency=3)
    calls = 0

    async def flaky() -> int:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("try again")
        return calls

    policy = RetryPolicy(max_attempts=3, initial_backoff=0.0, max_backoff=0.0, jitter=0.0)
    await executor.add_task(Task("t", flaky, retry=policy))
    result = (await executor.execute_all())["t"]
    assert (result.state, result.result, result.attempts) == (TaskState.SUCCEEDED, 3, 3)


# -- errors, each naming the task -----------------------------------------------------------


async def test_duplicate_id_is_rejected_at_add_task():
    executor = ParallelTaskExecutor(max_concurrency=3)
    await executor.add_task(Task("a", noop))
    with pytest.raises(ValidationError, match="'a'") as caught:
        await executor.add_task(Task("a", noop))
    assert caught.value.task_id == "a"


async def test_cycle_is_rejected_at_add_task_as_soon_as_it_closes():
    executor = ParallelTaskExecutor(max_concurrency=3)
    await executor.add_task(Task("a", noop), dependencies=["c"])
    await executor.add_task(Task("b", noop), dependencies=["a"])
    with pytest.raises(CycleError, match="c -> b -> a -> c") as caught:
        await executor.add_task(Task("c", noop), dependencies=["b"])
    assert caught.value.cycle == ("c", "b", "a", "c")
    await executor.add_task(Task("c", noop))  # the rejected one left nothing behind
    results = await executor.execute_all()
    assert {r.state for r in results.values()} == {TaskState.SUCCEEDED}


async def test_rejected_add_task_leaves_no_dependency_behind():
    executor = ParallelTaskExecutor(max_concurrency=3)
    await executor.add_task(Task("a", noop), dependencies=["z"])
    with pytest.raises(CycleError):
        await executor.add_task(Task("z", noop), dependencies=["y", "a"])
    await executor.add_task(Task("z", noop))
    await executor.add_task(Task("y", noop), dependencies=["a"])  # z, a, y: no cycle
    results = await executor.execute_all()
    assert {r.state for r in results.values()} == {TaskState.SUCCEEDED}


async def test_a_cycle_rejected_once_is_rejected_again():
    executor = ParallelTaskExecutor(max_concurrency=3)
    await executor.add_task(Task("a", noop), dependencies=["c"])
    for _ in range(2):
        with pytest.raises(CycleError, match="c -> a -> c"):
            await executor.add_task(Task("c", noop), dependencies=["a"])
    await executor.add_task(Task("c", noop))
    assert set(await executor.execute_all()) == {"a", "c"}


async def test_unknown_dependency_is_rejected_at_execute_all():
    executor = ParallelTaskExecutor(max_concurrency=3)
    calls: list[str] = []

    async def work() -> None:
        calls.append("ran")

    await executor.add_task(Task("ok", work))
    await executor.add_task(Task("a", work), dependencies=["ghost"])
    with pytest.raises(ValidationError, match="'ghost'") as caught:
        await executor.execute_all()
    assert caught.value.task_id == "a" and "'a'" in str(caught.value)
    assert calls == [] and executor.scheduler.jobs() == []


@pytest.mark.parametrize(
    "requirement",
    [
        ResourceRequirement(ResourceType.CPU, 2.0),
        ResourceRequirement(ResourceType.CUSTOM, 1, name="licence"),
    ],
    ids=["above-capacity", "unknown-custom"],
)
async def test_impossible_requirement_is_rejected_at_add_task(requirement):
    executor = ParallelTaskExecutor(max_concurrency=3)
    with pytest.raises(ValidationError, match="'a'") as caught:
        await executor.add_task(Task("a", noop), resource_requirements=[requirement])
    assert caught.value.task_id == "a"


# -- cancellation ---------------------------------------------------------------------------


async def test_cancelling_the_caller_cancels_the_job():
    events = []
    executor = ParallelTaskExecutor(max_concurrency=3, on_event=events.append)
    probe = Probe()
    await executor.add_task(Task("a", probe.task("a")))
    await executor.add_task(Task("b", noop), dependencies=["a"])
    running = asyncio.create_task(executor.execute_all())
    await wait_for(lambda: probe.started)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(running, 10)
    assert probe.cancelled == ["a"]
    assert events[-1].state.name == "CANCELLED"  # the job's terminal event
    assert executor.scheduler.running == 0


async def test_cancel_a_task_during_the_run():
    executor = ParallelTaskExecutor(max_concurrency=3)
    probe = Probe()
    await executor.add_task(Task("a", probe.task("a")))
    await executor.add_task(Task("b", noop), dependencies=["a"])
    await executor.add_task(Task("c", probe.task("c", result="c")))
    running = asyncio.create_task(executor.execute_all())
    await wait_for(lambda: len(probe.started) == 2)
    assert executor.cancel("a") == 2
    probe.gate.set()
    results = await asyncio.wait_for(running, 10)
    states = {task_id: r.state for task_id, r in results.items()}
    assert states == {"a": TaskState.CANCELLED, "b": TaskState.CANCELLED, "c": TaskState.SUCCEEDED}
    assert probe.cancelled == ["a"]


async def test_a_cancel_keeps_its_reason_before_and_during_the_run():
    executor = ParallelTaskExecutor(max_concurrency=3)
    probe = Probe()
    await executor.add_task(Task("a", probe.task("a")))
    await executor.add_task(Task("b", noop))
    executor.cancel("b", reason="not today")
    running = asyncio.create_task(executor.execute_all())
    await wait_for(lambda: probe.started)
    assert executor.cancel("a", reason="enough") == 1
    results = await asyncio.wait_for(running, 10)
    assert results["a"].message == "cancelled: enough"
    assert results["b"].message == "cancelled: not today"


async def test_cancelling_the_caller_says_so_in_the_tasks():
    probe = Probe()
    events = []
    executor = ParallelTaskExecutor(max_concurrency=3, on_event=events.append)
    await executor.add_task(Task("a", probe.task("a")))
    running = asyncio.create_task(executor.execute_all())
    await wait_for(lambda: probe.started)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(running, 10)
    assert events[-1].message == "1 of 1 tasks cancelled: its caller was cancelled"


async def test_cancel_before_execute_all_applies_when_it_starts():
    executor = ParallelTaskExecutor(max_concurrency=3)
    calls: list[str] = []

    async def work() -> None:
        calls.append("ran")

    await executor.add_task(Task("a", work))
    await executor.add_task(Task("b", work), dependencies=["a"])
    await executor.add_task(Task("c", work))
    assert executor.cancel("a") == 0
    results = await executor.execute_all()
    assert [results[t].state for t in "abc"] == [
        TaskState.CANCELLED,
        TaskState.CANCELLED,
        TaskState.SUCCEEDED,
    ]
    assert calls == ["ran"]


async def test_two_cancels_before_the_run_both_apply():
    executor = ParallelTaskExecutor(max_concurrency=3)
    for task_id in "abc":
        await executor.add_task(Task(task_id, noop))
    executor.cancel("a")
    executor.cancel("c")
    results = await executor.execute_all()
    assert [results[t].state for t in "abc"] == [
        TaskState.CANCELLED,
        TaskState.SUCCEEDED,
        TaskState.CANCELLED,
    ]


async def test_cancelling_an_unknown_task_before_the_run_runs_nothing():
    executor = ParallelTaskExecutor(max_concurrency=3)
    calls: list[str] = []

    async def work() -> None:
        calls.append("ran")

    await executor.add_task(Task("a", work))
    with pytest.raises(NotFoundError, match="'ghost'"):
        executor.cancel("ghost")  # raising here or in execute_all() are both fine
        await executor.execute_all()
    await settle()
    assert calls == []
    assert executor.scheduler.jobs() == []


async def test_executors_sharing_a_scheduler_get_their_results_with_small_retention():
    scheduler = Scheduler(max_concurrency=4, retain_finished_jobs=1)
    gate = asyncio.Event()

    async def wait_gate() -> str:
        await gate.wait()
        return "done"

    executors = [ParallelTaskExecutor(scheduler=scheduler) for _ in range(2)]
    for executor in executors:
        await executor.add_task(Task("t", wait_gate))
    runs = [asyncio.create_task(executor.execute_all()) for executor in executors]
    await wait_for(lambda: scheduler.running == 2)
    gate.set()  # both jobs end in the same loop step
    outcomes = await asyncio.gather(*runs, return_exceptions=True)
    await scheduler.close()
    assert [o["t"].result if isinstance(o, dict) else o for o in outcomes] == ["done", "done"]


async def test_a_long_cycle_closed_by_a_task_added_in_the_middle_is_rejected():
    executor = ParallelTaskExecutor(max_concurrency=3)
    await executor.add_task(Task("d", noop), dependencies=["c"])
    await executor.add_task(Task("a", noop), dependencies=["e"])
    await executor.add_task(Task("b", noop), dependencies=["a"])
    await executor.add_task(Task("e", noop), dependencies=["d"])  # e <- d <- c, c not yet added
    with pytest.raises(CycleError) as caught:
        await executor.add_task(Task("c", noop), dependencies=["b"])  # c <- b <- a <- e <- d <- c
    assert caught.value.cycle == ("c", "b", "a", "e", "d", "c")
    await executor.add_task(Task("c", noop))
    assert {r.state for r in (await executor.execute_all()).values()} == {TaskState.SUCCEEDED}
