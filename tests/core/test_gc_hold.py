"""The collector's hold on a big job's records (`dukat.core._gc`): taken, let go, nothing lost.

A hold freezes what is alive (`gc.freeze`), so these tests read `gc.get_freeze_count()`: it
is above zero exactly while some hold lasts, and a hold that outlives its job would keep
cyclic garbage from being collected for the rest of the process.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dukat.core import CallableAction, JobSpec, Scheduler, TaskSpec, TaskState
from dukat.core._gc import gc_paused
from dukat.core.parallel_executor import _GC_BATCH, ParallelTaskExecutor, Task
from dukat.errors import CycleError

BIG = 50  # the jobs' size, and the schedulers' gc_hold_min_tasks


class Garbage:
    """An object in a reference cycle with itself: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


def cyclic_garbage() -> weakref.ref[Garbage]:
    return weakref.ref(Garbage())


def big_job(gate: asyncio.Event | None = None, size: int = BIG) -> JobSpec:
    async def wait() -> None:
        if gate is not None:
            await gate.wait()

    action = CallableAction(wait)
    return JobSpec(tasks=tuple(TaskSpec(id=f"t{i}", action=action) for i in range(size)))


@pytest.fixture(autouse=True)
def no_hold_before_or_after() -> Iterator[None]:
    assert gc.get_freeze_count() == 0, "an earlier test left the collector frozen"
    yield
    assert gc.get_freeze_count() == 0, "this test left the collector frozen"


async def test_a_big_job_is_held_while_it_runs_and_let_go_when_it_ends(
    make: Callable[..., Scheduler],
) -> None:
    scheduler = make(gc_hold_min_tasks=BIG)
    gate = asyncio.Event()
    job_id = scheduler.submit(big_job(gate))
    await asyncio.sleep(0)
    assert gc.get_freeze_count() > 0
    assert gc.isenabled()  # paused while the records were built, not after
    gate.set()
    results = await scheduler.wait_results(job_id)
    assert all(result.state is TaskState.SUCCEEDED for result in results.values())
    assert gc.get_freeze_count() == 0


async def test_cyclic_garbage_from_before_a_big_job_is_collected_once_it_ends(
    make: Callable[..., Scheduler],
) -> None:
    scheduler = make(gc_hold_min_tasks=BIG)
    gate = asyncio.Event()
    with gc_paused():  # no collection finds it before the job is built
        garbage = cyclic_garbage()  # garbage already, uncollected
        job_id = scheduler.submit(big_job(gate))
    gc.collect()
    assert garbage() is not None  # frozen with the job's records: delayed...
    gate.set()
    await scheduler.wait(job_id)
    gc.collect()
    assert garbage() is None  # ...never leaked


async def test_overlapping_big_jobs_hold_until_the_last_one_ends(
    make: Callable[..., Scheduler],
) -> None:
    scheduler = make(gc_hold_min_tasks=BIG)
    first_gate, second_gate = asyncio.Event(), asyncio.Event()
    first = scheduler.submit(big_job(first_gate))
    second = scheduler.submit(big_job(second_gate))
    first_gate.set()
    await scheduler.wait(first)
    assert gc.get_freeze_count() > 0
    second_gate.set()
    await scheduler.wait(second)
    assert gc.get_freeze_count() == 0


async def test_a_cancelled_big_job_lets_go(make: Callable[..., Scheduler]) -> None:
    scheduler = make(gc_hold_min_tasks=BIG)
    job_id = scheduler.submit(big_job(asyncio.Event()))
    await asyncio.sleep(0)
    scheduler.cancel(job_id)
    await scheduler.wait(job_id)
    assert gc.get_freeze_count() == 0


async def test_closing_the_scheduler_lets_go_of_its_running_big_jobs(
    make: Callable[..., Scheduler],
) -> None:
    scheduler = make(gc_hold_min_tasks=BIG)
    scheduler.submit(big_job(asyncio.Event()))
    await asyncio.sleep(0)
    await scheduler.close()
    assert gc.get_freeze_count() == 0


async def test_a_small_job_or_no_threshold_leaves_the_collector_alone(
    make: Callable[..., Scheduler],
) -> None:
    for scheduler, size in (
        (make(gc_hold_min_tasks=BIG), BIG - 1),
        (make(gc_hold_min_tasks=None), 500),
    ):
        gate = asyncio.Event()
        job_id = scheduler.submit(big_job(gate, size))
        await asyncio.sleep(0)
        assert gc.get_freeze_count() == 0
        gate.set()
        await scheduler.wait_results(job_id)
        assert gc.get_freeze_count() == 0


async def test_a_big_job_refused_for_a_cycle_leaves_the_collector_on(
    make: Callable[..., Scheduler],
) -> None:
    scheduler = make(gc_hold_min_tasks=BIG)
    action = CallableAction(asyncio.sleep, (0,))
    tasks = [TaskSpec(id=f"t{i}", action=action, dependencies=(f"t{i + 1}",)) for i in range(BIG)]
    tasks.append(TaskSpec(id=f"t{BIG}", action=action, dependencies=("t0",)))
    with pytest.raises(CycleError):
        scheduler.submit(JobSpec(tasks=tuple(tasks)))
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


async def noop() -> None:
    return None


async def filled(executor: ParallelTaskExecutor) -> ParallelTaskExecutor:
    """`executor` with one batch of added tasks: as many as make it hold the collector."""
    for i in range(_GC_BATCH):
        await executor.add_task(Task(f"t{i}", noop))
    return executor


async def test_an_executor_holds_while_tasks_are_added_and_lets_go_after_running_them() -> None:
    executor = await filled(ParallelTaskExecutor(max_concurrency=8))
    assert gc.get_freeze_count() > 0
    assert len(await executor.execute_all()) == _GC_BATCH
    assert gc.get_freeze_count() == 0


class Owner:
    """Holds an executor that holds it back (through `on_event`): a reference cycle."""

    def __init__(self) -> None:
        self.executor = ParallelTaskExecutor(max_concurrency=8, on_event=self.on_event)

    def on_event(self, event: object) -> None:
        pass


@pytest.mark.parametrize("kept", ["dropped", "in a cycle"])
async def test_an_executor_never_run_holds_no_longer_than_the_loop_step_it_was_filled_in(
    kept: str,
) -> None:
    executor: Any
    if kept == "in a cycle":
        owner = Owner()
        executor = await filled(owner.executor)
        del owner
    else:
        executor = await filled(ParallelTaskExecutor(max_concurrency=8))
    assert gc.get_freeze_count() > 0
    del executor
    await asyncio.sleep(0)
    assert gc.get_freeze_count() == 0


async def test_an_executor_on_a_scheduler_told_to_leave_the_collector_alone_does() -> None:
    executor = await filled(ParallelTaskExecutor(scheduler=Scheduler(gc_hold_min_tasks=None)))
    assert gc.get_freeze_count() == 0
    assert len(await executor.execute_all()) == _GC_BATCH
    assert gc.get_freeze_count() == 0
    await executor.close()
