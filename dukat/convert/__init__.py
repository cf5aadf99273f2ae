"""The one place where protobuf (dukat.v1) meets the engine's types (dukat.core).

The daemon's servicers and the Python client call these and nothing else to cross the edge
(ARCHITECTURE.md, "Layers"): it lives in `dukat`, not `dukatd`, so that both can. Every
proto enum has ONE table here mapping it to its engine enum; both directions are derived
from it, and tests walk every member both ways.

Validation that only the wire needs (a oneof left unset, an empty argv, an enum number the
engine has no member for) happens here and raises the engine's `ValidationError`, with field
paths as a client wrote them (`job.tasks[3].exec.argv`); so do the wire's bounds on lengths,
counts and durations, one table for every RPC (`_bounds`). Everything else (ids, cycles,
capacities, retry values) is the engine's to check; `at_path` moves its paths under the
request field they came from, so every path a client sees is a proto path.

A package only to keep each file small: import from `dukat.convert`, never its parts.
"""

from dukat.convert._bounds import (
    MAX_ARG,
    MAX_ARGV,
    MAX_BREAKER_NAME,
    MAX_DURATION,
    MAX_ENV,
    MAX_LABEL_VALUE,
    MAX_LABELS,
    MAX_NAME,
    MAX_PATH,
    MAX_QUEUES,
    MAX_RESOURCES,
    MAX_TEXT,
    MAX_WINDOW,
    Problems,
    Report,
    check_count,
    check_labels,
    check_length,
    cut,
)
from dukat.convert._breakers import (
    acquire_to_proto,
    breaker_config_from_proto,
    breaker_config_to_proto,
    breaker_config_within_bounds,
    breaker_to_proto,
)
from dukat.convert._daemon import (
    breaker_status_from_proto,
    daemon_status_from_proto,
    daemon_status_to_proto,
)
from dukat.convert._jobs import (
    event_from_proto,
    event_to_proto,
    job_from_proto,
    job_to_proto,
    task_status_to_proto,
)
from dukat.convert._results import (
    task_failure_from_proto,
    task_failure_to_proto,
    task_result_from_proto,
    task_result_to_proto,
)
from dukat.convert._specs import at_path, job_spec_from_proto, job_spec_to_proto
from dukat.convert._tables import (
    BREAKER_STATES,
    CALL_OUTCOMES,
    JOB_STATES,
    OUTPUT_STREAMS,
    RESOURCE_TYPES,
    TASK_STATES,
    TRIGGER_RULES,
    EnumTable,
)
from dukat.convert._work import (
    task_assignment_to_proto,
    upstream_result_to_proto,
    work_error_from_proto,
    work_success_from_proto,
    worker_hello_from_proto,
    worker_welcome_to_proto,
)

__all__ = [
    "BREAKER_STATES",
    "CALL_OUTCOMES",
    "JOB_STATES",
    "MAX_ARG",
    "MAX_ARGV",
    "MAX_BREAKER_NAME",
    "MAX_DURATION",
    "MAX_ENV",
    "MAX_LABELS",
    "MAX_LABEL_VALUE",
    "MAX_NAME",
    "MAX_PATH",
    "MAX_QUEUES",
    "MAX_RESOURCES",
    "MAX_TEXT",
    "MAX_WINDOW",
    "OUTPUT_STREAMS",
    "RESOURCE_TYPES",
    "TASK_STATES",
    "TRIGGER_RULES",
    "EnumTable",
    "Problems",
    "Report",
    "acquire_to_proto",
    "at_path",
    "breaker_config_from_proto",
    "breaker_config_to_proto",
    "breaker_config_within_bounds",
    "breaker_status_from_proto",
    "breaker_to_proto",
    "check_count",
    "check_labels",
    "check_length",
    "cut",
    "daemon_status_from_proto",
    "daemon_status_to_proto",
    "event_from_proto",
    "event_to_proto",
    "job_from_proto",
    "job_spec_from_proto",
    "job_spec_to_proto",
    "job_to_proto",
    "task_assignment_to_proto",
    "task_failure_from_proto",
    "task_failure_to_proto",
    "task_result_from_proto",
    "task_result_to_proto",
    "task_status_to_proto",
    "upstream_result_to_proto",
    "work_error_from_proto",
    "work_success_from_proto",
    "worker_hello_from_proto",
    "worker_welcome_to_proto",
]
