"""dukat's engine: run DAGs of tasks in-process, with limits, resources, retries and breakers.

Pure asyncio; nothing here imports gRPC, protobuf, prometheus or the daemon.
"""

from dukat.core.async_assistant import AsyncAssistant, get_async_assistant
from dukat.core.breaker import (
    BreakerRegistry,
    BreakerTransition,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerState,
)
from dukat.core.clock import Clock, ManualClock, SystemClock
from dukat.core.context import TaskContext, current_task, report_progress
from dukat.core.events import (
    Event,
    JobStateChanged,
    Snapshot,
    TaskOutput,
    TaskProgress,
    TaskStateChanged,
    TaskWaiting,
)
from dukat.core.graph import DependencyGraph
from dukat.core.parallel_executor import ParallelTaskExecutor, Task
from dukat.core.progress import JobProgress, ProgressFold, ProgressTracker, RunningTask
from dukat.core.resources import ResourcePool, ResourceRequirement, ResourceType, ResourceUsage
from dukat.core.results import JobSnapshot, TaskFailure, TaskResult, TaskStatus
from dukat.core.retry import RetryPolicy
from dukat.core.runners import CallableAction, InProcessRunner, Runner
from dukat.core.scheduler import Scheduler
from dukat.core.spec import JobSpec, TaskSpec
from dukat.core.states import JobState, TaskState, TriggerRule
from dukat.errors import CircuitBreakerError, CycleError

__all__ = [
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
