"""The public surface, pinned: a rename, a dropped export or a new leak fails here, loudly.

Changing a list below is changing the API users were promised; do it on purpose, in the same
commit as the change and its note in the docs.
"""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
import types
from pathlib import Path

import pytest

import dukat
import dukat.core
import dukat.errors

ROOT = Path(__file__).resolve().parent.parent

DUKAT_ALL = [
    "AsyncAssistant",
    "CircuitBreaker",
    "CircuitBreakerError",
    "CircuitBreakerState",
    "CycleError",
    "DependencyGraph",
    "DukatError",
    "JobSpec",
    "JobState",
    "NotFoundError",
    "ParallelTaskExecutor",
    "ResourcePool",
    "ResourceRequirement",
    "ResourceType",
    "RetryPolicy",
    "Scheduler",
    "Task",
    "TaskResult",
    "TaskSpec",
    "TaskState",
    "TaskTimeoutError",
    "TriggerRule",
    "ValidationError",
    "__version__",
    "connect",
    "current_task",
    "get_async_assistant",
    "report_progress",
]

# Exported by dukat but loaded on first use (module __getattr__), because they import grpc.
DUKAT_LAZY = {"connect": "dukat.client"}

CORE_ALL = [
    "AsyncAssistant",
    "BreakerRegistry",
    "BreakerTransition",
    "CallableAction",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitBreakerError",
    "CircuitBreakerState",
    "Clock",
    "CycleError",
    "DependencyGraph",
    "Event",
    "InProcessRunner",
    "JobProgress",
    "JobSnapshot",
    "JobSpec",
    "JobState",
    "JobStateChanged",
    "ManualClock",
    "ParallelTaskExecutor",
    "ProgressFold",
    "ProgressTracker",
    "ResourcePool",
    "ResourceRequirement",
    "ResourceType",
    "ResourceUsage",
    "RetryPolicy",
    "Runner",
    "RunningTask",
    "Scheduler",
    "Snapshot",
    "SystemClock",
    "Task",
    "TaskContext",
    "TaskFailure",
    "TaskOutput",
    "TaskProgress",
    "TaskResult",
    "TaskSpec",
    "TaskState",
    "TaskStateChanged",
    "TaskStatus",
    "TaskWaiting",
    "TriggerRule",
    "current_task",
    "get_async_assistant",
    "report_progress",
]

# The module paths the documentation promises (ARCHITECTURE.md, "The engine").
DOCUMENTED_MODULES = {
    "dukat.core.parallel_executor": [
        "ParallelTaskExecutor",
        "Task",
        "TaskResult",
        "ResourcePool",
        "ResourceRequirement",
        "ResourceType",
        "DependencyGraph",
    ],
    "dukat.core.circuit_breaker": ["CircuitBreaker", "CircuitBreakerState", "CircuitBreakerError"],
    "dukat.core.async_assistant": ["AsyncAssistant", "get_async_assistant"],
}

# What `dukat.core` must never pull in: the wire, the metrics, the daemon, and the layers
# above the engine (imports point down only).
FORBIDDEN_IN_CORE = ("grpc", "google.protobuf", "prometheus_client", "dukatd", "dukat.v1")


def public_members(module: types.ModuleType) -> list[str]:
    """What `module` shows at its top level, submodules aside (importing one sets it there)."""
    return sorted(
        name
        for name, value in vars(module).items()
        if (not name.startswith("_") or name == "__version__")
        and not isinstance(value, types.ModuleType)
    )


@pytest.mark.parametrize(
    ("module", "expected"), [(dukat, DUKAT_ALL), (dukat.core, CORE_ALL)], ids=["dukat", "core"]
)
def test_all_is_pinned_sorted_and_complete(module: types.ModuleType, expected: list[str]) -> None:
    assert module.__all__ == expected
    assert module.__all__ == sorted(set(module.__all__))
    # Like httpx: everything public at the top is exported, and nothing else is there (lazy
    # names show up at the top only once used).
    lazy = DUKAT_LAZY if module is dukat else {}
    assert sorted(set(public_members(module)) | set(lazy)) == module.__all__


@pytest.mark.parametrize(
    ("module", "expected"), [(dukat, DUKAT_ALL), (dukat.core, CORE_ALL)], ids=["dukat", "core"]
)
def test_every_exported_name_imports(module: types.ModuleType, expected: list[str]) -> None:
    namespace: dict[str, object] = {}
    exec(f"from {module.__name__} import *", namespace)
    assert sorted(name for name in namespace if name != "__builtins__") == sorted(expected)


def test_dukat_reexports_the_engine_objects_themselves() -> None:
    for name in dukat.__all__:
        if name in DUKAT_LAZY:
            module = importlib.import_module(DUKAT_LAZY[name])
            assert getattr(dukat, name) is getattr(module, name), name
        elif name in dukat.core.__all__:
            assert getattr(dukat, name) is getattr(dukat.core, name), name
        elif name != "__version__":
            assert getattr(dukat, name) is getattr(dukat.errors, name), name


@pytest.mark.parametrize(("path", "names"), DOCUMENTED_MODULES.items())
def test_documented_module_paths_export_their_names(path: str, names: list[str]) -> None:
    module = importlib.import_module(path)
    for name in names:
        assert name in module.__all__, f"{path}.__all__ lacks {name}"
        # The same object as the engine's, not a copy that isinstance() would tell apart.
        assert getattr(module, name) is getattr(dukat.core, name), f"{path}.{name}"


def shape(func: object) -> list[str]:
    """Parameters as the docs write them: `name`, `name=default`, `*` before keyword-only."""
    shown = []
    for parameter in inspect.signature(func).parameters.values():
        if parameter.name == "self":
            continue
        if parameter.kind is parameter.KEYWORD_ONLY and "*" not in shown:
            shown.append("*")
        if parameter.kind is parameter.VAR_KEYWORD:
            shown.append(f"**{parameter.name}")
        elif parameter.default is parameter.empty:
            shown.append(parameter.name)
        else:
            shown.append(f"{parameter.name}={parameter.default!r}")
    return shown


# The documented calls (issue #2 and the docstrings); more parameters may follow these.
DOCUMENTED_CALLS = [
    ("dukat.core.parallel_executor:ParallelTaskExecutor", ["max_concurrency=3"]),
    (
        "dukat.core.parallel_executor:ParallelTaskExecutor.add_task",
        ["task", "dependencies=None", "resource_requirements=None", "**options"],
    ),
    (
        "dukat.core.parallel_executor:Task",
        ["task_id", "func", "description=''", "args=()", "kwargs=None"],
    ),
    ("dukat.core.parallel_executor:ResourcePool", ["capacities=None"]),
    ("dukat.core.parallel_executor:ResourceRequirement", ["type", "amount", "name=None"]),
    ("dukat.core.parallel_executor:DependencyGraph.add_dependency", ["task", "depends_on"]),
    ("dukat.core.parallel_executor:DependencyGraph.get_ready_tasks", ["completed_tasks"]),
    (
        "dukat.core.circuit_breaker:CircuitBreaker",
        [
            "name",
            "failure_threshold=5",
            "timeout_seconds=60.0",
            "*",
            "half_open_max_calls=1",
            "success_threshold=1",
            "failure_rate_threshold=None",
            "window_size=None",
            "clock=None",
        ],
    ),
]


def resolve(target: str) -> object:
    path, _, qualname = target.partition(":")
    found: object = importlib.import_module(path)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


@pytest.mark.parametrize(("target", "documented"), DOCUMENTED_CALLS)
def test_documented_calls_keep_their_parameters(target: str, documented: list[str]) -> None:
    assert shape(resolve(target))[: len(documented)] == documented


def test_get_async_assistant_keeps_its_parameters() -> None:
    shown = shape(resolve("dukat.core.async_assistant:get_async_assistant"))
    assert shown[0] == "model_name=None"
    assert shown[1].startswith("max_parallel_tasks=")  # a default; the docs do not say which
    assert shown[2] == "address=None"


@pytest.mark.parametrize(
    "target",
    [
        "dukat.core.async_assistant:get_async_assistant",
        "dukat.core.async_assistant:AsyncAssistant.execute_tasks_in_parallel",
        "dukat.core.parallel_executor:ParallelTaskExecutor.add_task",
        "dukat.core.parallel_executor:ParallelTaskExecutor.execute_all",
        "dukat.core.parallel_executor:ResourcePool.allocate",
        "dukat.core.parallel_executor:ResourcePool.release",
    ],
)
def test_documented_awaitables_are_coroutine_functions(target: str) -> None:
    assert inspect.iscoroutinefunction(resolve(target))


def test_task_result_has_the_documented_fields() -> None:
    fields = inspect.signature(dukat.TaskResult).parameters
    for name in ["state", "result", "error", "attempts", "started_at", "finished_at"]:
        assert name in fields, name


def test_enums_keep_their_members() -> None:
    # Breaker states are exported as a gauge: their numbers are part of the contract.
    assert {s.name: s.value for s in dukat.CircuitBreakerState} == {
        "CLOSED": 0,
        "OPEN": 1,
        "HALF_OPEN": 2,
    }
    assert [t.name for t in dukat.ResourceType] == [
        "CPU",
        "MEMORY",
        "NETWORK",
        "DISK",
        "GPU",
        "CUSTOM",
    ]
    assert [s.name for s in dukat.TaskState] == [
        "PENDING",
        "READY",
        "RUNNING",
        "RETRYING",
        "SUCCEEDED",
        "FAILED",
        "CANCELLED",
        "SKIPPED",
    ]
    assert [s.name for s in dukat.TriggerRule] == ["ALL_SUCCESS", "ALL_DONE"]


def test_the_error_tree_is_the_documented_one() -> None:
    # As drawn in dukat/errors.py: users catch these by their standard bases too.
    assert issubclass(dukat.ValidationError, dukat.DukatError)
    assert issubclass(dukat.ValidationError, ValueError)
    assert issubclass(dukat.CycleError, dukat.ValidationError)
    assert issubclass(dukat.CircuitBreakerError, dukat.DukatError)
    assert issubclass(dukat.TaskTimeoutError, dukat.DukatError)
    assert issubclass(dukat.TaskTimeoutError, TimeoutError)
    assert issubclass(dukat.NotFoundError, dukat.DukatError)
    assert issubclass(dukat.NotFoundError, LookupError)


def test_the_engine_imports_nothing_from_the_wire_metrics_or_daemon() -> None:
    # A fresh interpreter: this test process may have imported anything by now.
    listing = subprocess.run(
        [sys.executable, "-c", "import dukat.core, sys; print('\\n'.join(sorted(sys.modules)))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    modules = listing.stdout.split()
    assert "dukat.core.scheduler" in modules  # the listing is real
    leaked = [
        module
        for module in modules
        if any(module == banned or module.startswith(f"{banned}.") for banned in FORBIDDEN_IN_CORE)
    ]
    assert not leaked


def test_importing_dukat_imports_no_grpc_until_connect_is_used() -> None:
    code = (
        "import sys, dukat; print('grpc' in sys.modules); "
        "dukat.connect; print('grpc' in sys.modules)"
    )
    shown = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert shown.stdout.split() == ["False", "True"]


def test_an_unknown_attribute_of_dukat_is_still_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        dukat.nope  # noqa: B018
