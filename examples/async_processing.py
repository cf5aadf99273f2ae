"""A tour of dukat's embedded engine, printing what happens as it happens.

    python examples/async_processing.py
    DUKAT_ADDRESS=unix:$XDG_RUNTIME_DIR/dukatd.sock python examples/async_processing.py

With DUKAT_ADDRESS set, section 6 runs through that dukatd daemon (the AsyncAssistant's
remote mode: the daemon schedules, the callables still run here) and prints the same.

1. a DAG with dependencies and resources, with progress reported from inside the tasks
2. retries with exponential backoff
3. a circuit breaker that trips, fails calls fast, half-opens and recovers
4. a failure that skips its dependents while independent work and a clean-up step go on
5. cancelling a running task and everything downstream of it
6. the same through the AsyncAssistant's task dicts
"""

from __future__ import annotations

import asyncio
import os
import time

from dukat.core import (
    CircuitBreaker,
    Event,
    RetryPolicy,
    TaskProgress,
    TaskStateChanged,
    TriggerRule,
    report_progress,
)
from dukat.core.async_assistant import get_async_assistant
from dukat.core.parallel_executor import (
    ParallelTaskExecutor,
    ResourceRequirement,
    ResourceType,
    Task,
    TaskResult,
)

STARTED = time.monotonic()


def say(text: str) -> None:
    print(f"{time.monotonic() - STARTED:6.2f}s  {text}", flush=True)


def show(event: Event) -> None:
    """Print the events worth seeing: progress and the interesting state changes."""
    if isinstance(event, TaskProgress):
        say(f"  {event.task_id}: {event.fraction:.0%} {event.message}")
    elif isinstance(event, TaskStateChanged) and event.state.value not in {"pending", "ready"}:
        why = f" ({event.message})" if event.message not in {"", event.state.value} else ""
        say(f"  {event.task_id} -> {event.state.value}{why}")


def summary(results: dict[str, TaskResult]) -> None:
    for task_id, result in results.items():
        value = result.result if result.succeeded else result.message
        say(f"  = {task_id:<14} {result.state.value:<10} attempts={result.attempts}  {value}")


async def fetch(source: str, rows: int) -> int:
    for step in range(1, 4):
        await asyncio.sleep(0.05)
        report_progress(step / 3, f"{source}: page {step}/3")
    return rows


async def join(left: int, right: int) -> int:
    await asyncio.sleep(0.05)
    return left + right


async def dag_with_resources() -> None:
    say("1. a DAG: two fetches share the network, the join needs CPU and memory")
    executor = ParallelTaskExecutor(max_concurrency=3, on_event=show)
    network = [ResourceRequirement(ResourceType.NETWORK, 0.5)]
    await executor.add_task(
        Task("fetch_users", fetch, args=("users", 120)), resource_requirements=network
    )
    await executor.add_task(
        Task("fetch_orders", fetch, args=("orders", 480)), resource_requirements=network
    )
    await executor.add_task(
        Task("join", join, args=(120, 480), description="join users with orders"),
        dependencies=["fetch_users", "fetch_orders"],
        resource_requirements=[
            ResourceRequirement(ResourceType.CPU, 0.5),
            ResourceRequirement(ResourceType.MEMORY, 0.3),
        ],
    )
    await executor.add_task(Task("report", lambda: "report.pdf"), dependencies=["join"])
    summary(await executor.execute_all())


async def retries() -> None:
    say("2. retries: a flaky call succeeds on its third attempt")
    attempts = 0

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ConnectionError(f"connection reset (attempt {attempts})")
        return "payload"

    executor = ParallelTaskExecutor(on_event=show)
    policy = RetryPolicy(max_attempts=4, initial_backoff=0.05, multiplier=2.0, jitter=0.1)
    await executor.add_task(Task("flaky", flaky, retry=policy))
    summary(await executor.execute_all())


async def circuit_breaker() -> None:
    say("3. a circuit breaker: two failures open it, calls then fail fast")
    breaker = CircuitBreaker("payments", failure_threshold=2, timeout_seconds=0.3)
    breaker.add_listener(
        lambda t: say(f"  breaker {t.name}: {t.from_state.name} -> {t.to_state.name} ({t.reason})")
    )
    outage = True

    async def charge(order: int) -> str:
        await asyncio.sleep(0.01)
        if outage:
            raise TimeoutError(f"payments did not answer for order {order}")
        return f"order {order} charged"

    executor = ParallelTaskExecutor(max_concurrency=1, on_event=show)
    for order in range(4):
        await executor.add_task(
            Task(f"charge_{order}", charge, args=(order,), circuit_breaker=breaker)
        )
    summary(await executor.execute_all())

    say("   the downstream recovers; a task that waits for the breaker runs once it half-opens")
    outage = False
    await executor.add_task(
        Task("charge_retry", charge, args=(0,), circuit_breaker=breaker, wait_for_breaker=True)
    )
    summary(await executor.execute_all())
    say(f"   breaker is {breaker.state.name}")


async def failure_propagation() -> None:
    say("4. a failure skips its dependents; the independent branch and the clean-up still run")

    async def transform() -> None:
        raise ValueError("bad row 17")

    executor = ParallelTaskExecutor(on_event=show)
    await executor.add_task(Task("extract", fetch, args=("warehouse", 10)))
    await executor.add_task(Task("transform", transform), dependencies=["extract"])
    await executor.add_task(Task("load", lambda: "loaded"), dependencies=["transform"])
    await executor.add_task(Task("audit", lambda: "audited"))
    await executor.add_task(
        Task("cleanup", lambda: "temp files removed"),
        dependencies=["load"],
        trigger_rule=TriggerRule.ALL_DONE,
    )
    summary(await executor.execute_all())


async def cancellation() -> None:
    say("5. cancellation: a slow task is cancelled, and its downstream with it")

    async def slow() -> None:
        try:
            for step in range(100):
                report_progress(step / 100, "crunching")
                await asyncio.sleep(0.02)
        except asyncio.CancelledError:
            say("  slow: got CancelledError, cleaning up")
            raise

    executor = ParallelTaskExecutor(on_event=show)
    await executor.add_task(Task("slow", slow))
    await executor.add_task(Task("after_slow", lambda: "never"), dependencies=["slow"])
    await executor.add_task(Task("quick", fetch, args=("cache", 1)))
    running = asyncio.create_task(executor.execute_all())
    await asyncio.sleep(0.15)
    say(f"  cancelling 'slow': {executor.cancel('slow')} tasks cancelled")
    summary(await running)


async def assistant() -> None:
    where = os.environ.get("DUKAT_ADDRESS")
    how = f"through dukatd at {where}" if where else "embedded"
    say(f"6. the same engine through the AsyncAssistant's task dicts ({how})")

    async def plan() -> list[str]:
        await asyncio.sleep(0.02)
        return ["search", "summarise"]

    async def act() -> str:
        await asyncio.sleep(0.02)
        return "done"

    async with await get_async_assistant(model_name="demo", max_parallel_tasks=2) as helper:
        results = await helper.execute_tasks_in_parallel(
            [
                {"task_id": "plan", "func": plan, "description": "make a plan"},
                {
                    "task_id": "act",
                    "func": act,
                    "dependencies": ["plan"],
                    "retry": 2,
                    "timeout": 5,
                    "resource_requirements": {ResourceType.CPU: 0.25},
                },
            ]
        )
    summary(results)


async def main() -> None:
    for section in (
        dag_with_resources,
        retries,
        circuit_breaker,
        failure_propagation,
        cancellation,
        assistant,
    ):
        await section()
        print()


if __name__ == "__main__":
    asyncio.run(main())
