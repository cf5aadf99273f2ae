"""Mistakes a new user of the embedded engine makes, each answered with a hint instead of a
silent surprise: a second `execute_all()`, a string of dependencies, a task added while the
executor runs, and the `retry=3` shorthand."""

from __future__ import annotations

import asyncio

import pytest

from dukat.core import JobSpec, Scheduler, TaskSpec
from dukat.core.async_assistant import AsyncAssistant
from dukat.core.parallel_executor import ParallelTaskExecutor, RetryPolicy, Task, TaskState
from dukat.core.runners import CallableAction
from dukat.errors import ValidationError
from tests.helpers import wait_for


async def noop() -> str:
    return "done"


async def test_a_second_execute_all_without_new_tasks_says_how_to_start_over():
    async with ParallelTaskExecutor() as executor:
        await executor.add_task(Task("fetch", noop))
        first = await executor.execute_all()
        assert first["fetch"].state is TaskState.SUCCEEDED
        with pytest.raises(RuntimeError, match="no task was added since the last execute_all") as e:
            await executor.execute_all()
        assert "add them again with add_task()" in str(e.value)
        assert "new ParallelTaskExecutor" in str(e.value)


async def test_a_second_execute_all_runs_the_tasks_added_since_the_first():
    async with ParallelTaskExecutor() as executor:
        await executor.add_task(Task("fetch", noop))
        await executor.execute_all()
        await executor.add_task(Task("fetch", noop))  # added again: runs again
        await executor.add_task(Task("load", noop), dependencies=["fetch"])
        second = await executor.execute_all()
        assert {task_id: r.state for task_id, r in second.items()} == {
            "fetch": TaskState.SUCCEEDED,
            "load": TaskState.SUCCEEDED,
        }


async def test_an_executor_never_given_a_task_still_returns_nothing():
    async with ParallelTaskExecutor() as executor:
        assert await executor.execute_all() == {}


@pytest.mark.parametrize("dependencies", ["fetch", b"fetch"])
async def test_a_string_of_dependencies_is_refused_by_add_task(dependencies):
    async with ParallelTaskExecutor() as executor:
        await executor.add_task(Task("fetch", noop))
        with pytest.raises(ValidationError) as e:
            await executor.add_task(Task("load", noop), dependencies=dependencies)
    assert e.value.task_id == "load"
    assert f"write dependencies=[{dependencies!r}]" in str(e.value)
    assert [v.field for v in e.value.violations] == ["dependencies"]


async def test_a_string_of_dependencies_is_refused_in_a_task_spec(make):
    scheduler: Scheduler = make()
    fetch = TaskSpec("fetch", CallableAction(noop))
    load = TaskSpec("load", CallableAction(noop), dependencies="fetch")  # type: ignore[arg-type]
    with pytest.raises(ValidationError) as e:
        scheduler.submit(JobSpec(tasks=(fetch, load)))
    assert e.value.task_id == "load"
    assert [(v.field, v.description) for v in e.value.violations] == [
        (
            "tasks[1].dependencies",
            "a string, read as one task id per letter: write dependencies=['fetch']",
        )
    ]


async def test_a_string_of_dependencies_is_refused_in_an_assistant_dict():
    async with AsyncAssistant() as assistant:
        with pytest.raises(ValidationError) as e:
            await assistant.execute_tasks_in_parallel(
                [
                    {"task_id": "fetch", "func": noop},
                    {"task_id": "load", "func": noop, "dependencies": "fetch"},
                ]
            )
    assert e.value.task_id == "load"
    assert "write dependencies=['fetch']" in str(e.value)


async def test_a_task_added_while_execute_all_runs_is_refused():
    gate = asyncio.Event()

    async def held() -> None:
        await gate.wait()

    async with ParallelTaskExecutor() as executor:
        await executor.add_task(Task("held", held))
        running = asyncio.create_task(executor.execute_all())
        await wait_for(lambda: executor.job_id is not None)  # its job is submitted
        with pytest.raises(RuntimeError, match="added while execute_all\\(\\) runs") as e:
            await executor.add_task(Task("late", noop))
        assert "would not join that run" in str(e.value)
        with pytest.raises(RuntimeError, match="already running"):
            await executor.execute_all()
        gate.set()
        results = await running
        assert list(results) == ["held"]
        with pytest.raises(RuntimeError, match="no task was added"):
            await executor.execute_all()  # nothing of the refused task was kept
        await executor.add_task(Task("late", noop))  # after the run: fine
        assert (await executor.execute_all())["late"].succeeded


async def test_add_task_takes_the_assistants_retry_shorthand():
    failures = 0

    async def flaky() -> str:
        nonlocal failures
        if failures < 2:
            failures += 1
            raise OSError("flaky")
        return "ok"

    async with ParallelTaskExecutor() as executor:
        await executor.add_task(
            Task("flaky", flaky), retry={"max_attempts": 3, "initial_backoff": 0}
        )
        result = (await executor.execute_all())["flaky"]
    assert (result.state, result.attempts) == (TaskState.SUCCEEDED, 3)


async def test_a_task_takes_the_retry_shorthand_too():
    async with ParallelTaskExecutor() as executor:
        await executor.add_task(Task("a", noop, retry=3))
        await executor.add_task(Task("b", noop), retry=2)
        spec_of = {spec.id: spec for spec in executor._specs.values()}
    assert spec_of["a"].retry == RetryPolicy(max_attempts=3)
    assert spec_of["b"].retry == RetryPolicy(max_attempts=2)


@pytest.mark.parametrize(
    ("retry", "field", "words"),
    [
        (0, "retry.max_attempts", "must be a whole number of at least 1"),
        ({"attempts": 3}, "retry", "unexpected keyword argument 'attempts'"),
        ("thrice", "retry", "a number of attempts or a dict"),
    ],
)
async def test_a_bad_retry_shorthand_names_the_task(retry, field, words):
    async with ParallelTaskExecutor() as executor:
        with pytest.raises(ValidationError, match=words) as e:
            await executor.add_task(Task("t", noop), retry=retry)
    assert e.value.task_id == "t"
    assert str(e.value).startswith("task 't': ")
    assert [v.field for v in e.value.violations] == [field]
