"""A smoke test of bench/engine.py's contenders, on a small DAG, so that the script does not
rot: each runs the whole DAG (every contender asserts it did)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[2] / "bench" / "engine.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_engine", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


@pytest.mark.parametrize("contender", ["dukat_dag", "dukat_job_spec", "graphlib_loop"])
def test_each_contender_runs_the_dag(bench, contender: str) -> None:
    graph = bench.layered_dag(1_000)
    assert sum(map(len, graph.values())) > 1_000  # a DAG, not a flat list
    asyncio.run(getattr(bench, contender)(graph))


def test_the_executor_contender_uses_the_face_users_call(bench) -> None:
    source = PATH.read_text()
    face = source[source.index("async def dukat_dag") : source.index("async def dukat_job_spec")]
    assert "await executor.add_task(" in face and "await executor.execute_all()" in face
