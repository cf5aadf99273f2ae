"""dukat.display: the terminal view of a tracker, wrapped around an embedded execute_all()."""

from __future__ import annotations

import io
import subprocess
import sys

from dukat.core import JobState, ParallelTaskExecutor, Task, report_progress
from dukat.display import format_duration, show_progress
from dukat.errors import TaskInterruptedError


async def step(fraction: float) -> str:
    report_progress(fraction, f"at {fraction:.0%}")
    return "ok"


async def fail() -> None:
    raise RuntimeError("no luck")


async def test_show_progress_around_execute_all_prints_each_task_and_a_summary() -> None:
    out = io.StringIO()
    async with ParallelTaskExecutor(max_concurrency=2) as executor:
        await executor.add_task(Task("a", step, args=(0.5,)))
        await executor.add_task(Task("b", fail))
        await executor.add_task(Task("c", step, args=(1.0,)), dependencies=["b"])
        async with show_progress(executor, file=out) as tracker:
            results = await executor.execute_all()
    assert results["a"].succeeded and tracker.progress.state is JobState.FAILED
    lines = out.getvalue().splitlines()
    assert "a: started" in lines and "a: 50% at 50%" in lines
    assert any(line.startswith("✓ a  ") for line in lines)
    assert any(
        line.startswith("✗ b  ") and "failed: RuntimeError: no luck" in line for line in lines
    )
    assert "⊘ c  skipped: upstream 'b' failed" in lines
    assert lines[-1].startswith(f"job {executor.job_id} failed: 1 succeeded, 1 failed, 1 skipped")


async def test_show_progress_of_an_executor_given_nothing_to_run_shows_nothing() -> None:
    out = io.StringIO()
    async with ParallelTaskExecutor() as executor, show_progress(executor, file=out):
        assert await executor.execute_all() == {}
    assert out.getvalue() == ""


def test_the_engine_never_imports_rich() -> None:
    code = "import dukat, dukat.core, sys; assert 'rich' not in sys.modules, 'rich imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_durations_read_at_a_glance() -> None:
    shown = [format_duration(s) for s in (None, 0.04, 9.96, 12.4, 185, 3720)]
    assert shown == ["-", "0.0s", "10.0s", "12s", "3m05s", "1h02m"]


async def test_an_interrupted_attempt_reads_as_interrupted_not_failed() -> None:
    calls: list[int] = []

    async def cut_off_once() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise TaskInterruptedError("its node went away", cause="node_lost")
        return "ok"

    out = io.StringIO()
    async with ParallelTaskExecutor() as executor:
        await executor.add_task(Task("load", cut_off_once))
        async with show_progress(executor, file=out):
            results = await executor.execute_all()
    assert results["load"].succeeded and results["load"].interruptions == 1
    lines = out.getvalue().splitlines()
    assert "load: attempt 1 interrupted (its node went away), 1 of 3; running again" in lines
    assert not any("failed" in line for line in lines), lines
