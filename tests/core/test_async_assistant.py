"""The documented `AsyncAssistant` API, used exactly as its users write it."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys

import pytest

from dukat.core.async_assistant import AsyncAssistant, get_async_assistant, set_remote_factory
from dukat.core.circuit_breaker import CircuitBreakerConfig, CircuitBreakerError
from dukat.core.context import current_task
from dukat.core.parallel_executor import ResourceRequirement, ResourceType, TaskState
from dukat.errors import ValidationError
from tests.helpers import Gauge


async def noop() -> None:
    return None


@pytest.fixture(autouse=True)
def embedded(monkeypatch):
    monkeypatch.delenv("DUKAT_ADDRESS", raising=False)


async def test_task_dicts_with_every_documented_key():
    assistant = await get_async_assistant(model_name="m", max_parallel_tasks=2)
    assert isinstance(assistant, AsyncAssistant)

    async def fetch() -> str:
        return "page"

    async def parse() -> str:
        return current_task().upstream_results["fetch"].upper()

    async with assistant:
        results = await assistant.execute_tasks_in_parallel(
            [
                {
                    "func": fetch,
                    "task_id": "fetch",
                    "description": "download",
                    "dependencies": [],
                    "resource_requirements": [ResourceRequirement(ResourceType.CPU, 0.5)],
                    "circuit_breaker": "api",
                    "retry": 3,
                    "timeout": 5,
                },
                {"func": parse, "task_id": "parse", "dependencies": ["fetch"]},
            ]
        )
    assert {t: (r.state, r.result) for t, r in results.items()} == {
        "fetch": (TaskState.SUCCEEDED, "page"),
        "parse": (TaskState.SUCCEEDED, "PAGE"),
    }
    assert "api" in assistant.scheduler.breakers


async def test_model_name_is_the_job_label_model():
    seen = []
    async with await get_async_assistant(model_name="m", max_parallel_tasks=2) as assistant:

        async def look() -> None:
            labelled = assistant.scheduler.jobs(labels={"model": "m"})
            seen.extend(job.job_id for job in labelled)
            seen.append(current_task().job_id)

        await assistant.execute_tasks_in_parallel([{"func": look, "task_id": "look"}])
    assert len(seen) == 2 and seen[0] == seen[1]


async def test_max_parallel_tasks_bounds_concurrency():
    gauge = Gauge()

    async def work() -> None:
        with gauge.hold():
            for _ in range(5):
                await asyncio.sleep(0)

    async with await get_async_assistant(max_parallel_tasks=2) as assistant:
        tasks = [{"func": work, "task_id": f"t{i}"} for i in range(6)]
        results = await assistant.execute_tasks_in_parallel(tasks)
    assert {r.state for r in results.values()} == {TaskState.SUCCEEDED}
    assert gauge.peak == 2


async def test_resource_requirements_are_honoured():
    gauge = Gauge()

    async def work() -> None:
        with gauge.hold():
            for _ in range(5):
                await asyncio.sleep(0)

    async with await get_async_assistant(max_parallel_tasks=2) as assistant:
        tasks = [
            {
                "func": work,
                "task_id": "list",
                "resource_requirements": [ResourceRequirement(ResourceType.CPU, 0.6)],
            },
            {"func": work, "task_id": "mapping", "resource_requirements": {"cpu": 0.6}},
        ]
        await assistant.execute_tasks_in_parallel(tasks)
    assert gauge.peak == 1


async def test_retry_as_a_mapping_gives_more_attempts():
    calls = 0

    async def flaky() -> int:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("try again")
        return calls

    retry = {"max_attempts": 3, "initial_backoff": 0.0, "max_backoff": 0.0, "jitter": 0.0}
    async with await get_async_assistant() as assistant:
        results = await assistant.execute_tasks_in_parallel(
            [{"func": flaky, "task_id": "t", "retry": retry}]
        )
    assert (results["t"].state, results["t"].attempts) == (TaskState.SUCCEEDED, 3)


async def test_named_breaker_guards_the_task():
    calls: list[str] = []

    async def call_api() -> None:
        calls.append("called")

    async with await get_async_assistant() as assistant:
        breaker = assistant.scheduler.breakers.configure(
            "api", CircuitBreakerConfig(failure_threshold=1, timeout_seconds=60)
        )
        breaker.failure(ConnectionError("down"))
        results = await assistant.execute_tasks_in_parallel(
            [{"func": call_api, "task_id": "t", "circuit_breaker": "api"}]
        )
    assert results["t"].state is TaskState.FAILED
    assert isinstance(results["t"].error, CircuitBreakerError)
    assert calls == []


async def test_bad_timeout_is_rejected_naming_the_task():
    async with await get_async_assistant() as assistant:
        with pytest.raises(ValidationError, match="'slow'") as caught:
            await assistant.execute_tasks_in_parallel(
                [{"func": noop, "task_id": "slow", "timeout": 0}]
            )
    assert caught.value.task_id == "slow"


async def test_unknown_key_is_rejected_naming_the_task():
    calls: list[str] = []

    async def work() -> None:
        calls.append("ran")

    async with await get_async_assistant() as assistant:
        with pytest.raises(ValidationError, match="dependecies") as caught:
            await assistant.execute_tasks_in_parallel(
                [
                    {"func": work, "task_id": "ok"},
                    {"func": work, "task_id": "typo", "dependecies": ["ok"]},
                ]
            )
    assert caught.value.task_id == "typo" and "'typo'" in str(caught.value)
    assert calls == []


async def test_coroutine_object_instead_of_function_is_rejected():
    async def work() -> None:
        return None

    async with await get_async_assistant() as assistant:
        with pytest.raises(ValidationError, match="coroutine") as caught:
            await assistant.execute_tasks_in_parallel([{"func": work(), "task_id": "a"}])
    assert caught.value.task_id == "a"
    del caught
    gc.collect()  # a coroutine left unclosed would warn "never awaited" here (an error)


async def test_leaving_the_context_closes_the_assistant():
    async with await get_async_assistant() as assistant:
        await assistant.execute_tasks_in_parallel([{"func": noop, "task_id": "a"}])
    with pytest.raises(RuntimeError, match="closed"):
        await assistant.execute_tasks_in_parallel([{"func": noop, "task_id": "a"}])


async def test_an_address_or_dukat_address_gives_the_remote_assistant(monkeypatch):
    # Remote mode itself is tested against a daemon in tests/client/test_assistant.py.
    monkeypatch.setenv("DUKAT_ADDRESS", "unix:///nonexistent/dukat.sock")
    async with await get_async_assistant(model_name="m") as assistant:
        assert "remote unix:///nonexistent/dukat.sock" in repr(assistant)
    monkeypatch.delenv("DUKAT_ADDRESS")
    async with await get_async_assistant(address="unix:///nonexistent/other.sock") as assistant:
        assert "remote" in repr(assistant)


async def test_an_address_opens_the_remote_assistant_the_layer_above_set(monkeypatch):
    opened = []

    async def factory(address, *, model_name, max_parallel_tasks):
        opened.append((address, model_name, max_parallel_tasks))
        return "remote"

    before = set_remote_factory(factory)
    try:
        assert await get_async_assistant("m", 7, address="unix:/tmp/a.sock") == "remote"
        monkeypatch.setenv("DUKAT_ADDRESS", "unix:/tmp/b.sock")
        assert await get_async_assistant() == "remote"
    finally:
        assert set_remote_factory(before) is factory
    assert opened == [("unix:/tmp/a.sock", "m", 7), ("unix:/tmp/b.sock", None, 5)]


async def test_an_address_without_a_remote_factory_is_a_clear_error():
    before = set_remote_factory(None)
    try:
        with pytest.raises(RuntimeError, match="set_remote_factory"):
            await get_async_assistant(address="unix:/tmp/a.sock")
    finally:
        set_remote_factory(before)


def test_importing_the_assistant_alone_sets_the_clients_factory_without_loading_it():
    """The top package, imported first whatever the user imports, plugs the client in; the
    client (and grpc) load only once an address is given."""
    check = (
        "import sys\n"
        "from dukat.core import async_assistant\n"
        "assert async_assistant._remote_factory is not None\n"
        "loaded = [m for m in ('dukat.client', 'grpc') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
