"""dukat: run many tasks at once, in the right order, within limits.

The engine lives in `dukat.core` (embedded, in-process); its most used names are re-exported
here. Errors live in `dukat.errors`.
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
    "current_task",
    "get_async_assistant",
    "report_progress",
]
