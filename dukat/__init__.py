"""dukat: run many tasks at once, in the right order, within limits.

The engine lives in `dukat.core` (embedded, in-process); its most used names are re-exported
here. Errors live in `dukat.errors`. `dukat.connect` opens a client to the daemon
(`dukat.client`); it is loaded on first use, so that `import dukat` alone never imports grpc.
So is the assistant's remote mode, which this package, above both, plugs into the engine
(`dukat.core.async_assistant.set_remote_factory`): the engine never imports the client.
"""

from dukat.core import (
    AsyncAssistant,
    CircuitBreaker,
    CircuitBreakerState,
    DependencyGraph,
    JobSpec,
    JobState,
    ParallelTaskExecutor,
    ResourcePool,
    ResourceRequirement,
    ResourceType,
    RetryPolicy,
    Scheduler,
    Task,
    TaskResult,
    TaskSpec,
    TaskState,
    TriggerRule,
    current_task,
    get_async_assistant,
    report_progress,
)
from dukat.core import async_assistant as _async_assistant
from dukat.errors import (
    CircuitBreakerError,
    CycleError,
    DukatError,
    NotFoundError,
    TaskTimeoutError,
    ValidationError,
)

__version__ = "0.1.0"

__all__ = [
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


async def _open_remote_assistant(
    address: str, *, model_name: str | None, max_parallel_tasks: int
) -> object:
    """`get_async_assistant(address=...)`: the client's assistant, loaded on first use."""
    from dukat.client import RemoteAssistant

    remote = RemoteAssistant(address, model_name=model_name, max_parallel_tasks=max_parallel_tasks)
    return await remote.open()


_async_assistant.set_remote_factory(_open_remote_assistant)

# Names served from modules that import grpc: loaded by __getattr__ on first use only.
_LAZY = {"connect": "dukat.client"}


def __getattr__(name: str) -> object:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'dukat' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value  # once loaded, a plain attribute like the others
    return value
