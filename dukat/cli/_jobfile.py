"""Job files: a job written in TOML, read into the engine's `JobSpec` of exec tasks.

    [job]
    labels = { team = "data" }
    max_concurrency = 4

    [tasks.fetch]
    run = "curl -fsS https://example.org > data.json"  # a shell line (sh -c)
    retry = 3                              # or { max_attempts = 3, initial_backoff = "1s" }
    timeout = "30s"

    [tasks.transform]
    argv = ["python", "transform.py", "data.json"]
    dependencies = ["fetch"]

Keys are the engine's words (`TaskSpec`, `ExecAction`, `RetryPolicy`), and their values are
checked by the engine's own types and `validate_job`; this module only maps TOML onto them and
says where a problem is: every problem of the file at once, each as `FILE: [tasks.NAME] key:
what is wrong`, unknown keys with a "did you mean" when one is close.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dukat.actions import ExecAction
from dukat.core.graph import topological_order
from dukat.core.resources import ResourceRequirement, ResourceType
from dukat.core.retry import RetryPolicy
from dukat.core.spec import (
    DEFAULT_MAX_INTERRUPTIONS,
    MAX_INTERRUPTIONS,
    JobSpec,
    TaskSpec,
    validate_job,
)
from dukat.core.states import TriggerRule
from dukat.defaults import parse_duration
from dukat.errors import CycleError, JobFileError, ValidationError

__all__ = ["JobFileError", "Problem", "parse_job_file", "where_in_file"]

JOB_KEYS = ("labels", "max_concurrency", "fail_fast")
TASK_KEYS = (
    "run",
    "argv",
    "description",
    "dependencies",
    "retry",
    "max_interruptions",
    "timeout",
    "resources",
    "breaker",
    "wait_for_breaker",
    "priority",
    "env",
    "cwd",
    "trigger_rule",
    "labels",
)
RETRY_KEYS = ("max_attempts", "initial_backoff", "max_backoff", "multiplier", "jitter")
_BUILTIN = {t.value: t for t in ResourceType if t is not ResourceType.CUSTOM}
# The engine's field paths (validate_job's, the daemon's) back to the file's keys.
_ENGINE_FIELD = {"circuit_breaker": "breaker", "action": "run"}
_TASK_PATH = re.compile(r"(?:job\.)?tasks\[(\d+)\]\.?(.*)")


@dataclass(frozen=True, slots=True)
class Problem:
    """One mistake: in which table (`[job]`, `[tasks.fetch]`, or None for the file), which key."""

    table: str | None
    key: str
    description: str

    def __str__(self) -> str:
        place = " ".join(part for part in (self.table, self.key) if part)
        return f"{place}: {self.description}" if place else self.description


def parse_job_file(text: str, source: str, *, max_tasks: int = 1_000_000) -> JobSpec:
    """The job `text` describes (read from `source`, named in errors); JobFileError if not."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise JobFileError(source, [Problem(None, "", f"not valid TOML: {error}")]) from None
    reader = _Reader()
    spec = reader.job(document)
    if reader.problems:
        raise JobFileError(source, reader.problems)
    assert spec is not None
    try:
        validate_job(spec, max_tasks=max_tasks)
        topological_order({t.id: t.dependencies for t in spec.tasks})
    except CycleError as error:
        path = " -> ".join(error.cycle)
        problem = Problem(f"[tasks.{error.cycle[0]}]", "dependencies", f"a cycle: {path}")
        raise JobFileError(source, [problem]) from None
    except ValidationError as error:
        raise JobFileError(source, engine_problems(error, spec)) from None
    return spec


def engine_problems(error: ValidationError, spec: JobSpec) -> list[Problem]:
    """The engine's (or the daemon's) violations of `spec`, placed in the job file."""
    violations = error.violations or []
    if not violations:
        return [Problem(None, "", str(error))]
    return [where_in_file(v.field, v.description, spec) for v in violations]


def where_in_file(field: str, description: str, spec: JobSpec) -> Problem:
    """A violation at the engine's path `field` (`tasks[2].dependencies[0]`, or the daemon's
    `job.tasks[2]...`) as a problem of the file's table and key."""
    match = _TASK_PATH.fullmatch(field)
    if match is None:
        return Problem("[job]", field.removeprefix("job."), description)
    index, rest = int(match[1]), match[2]
    table = f"[tasks.{spec.tasks[index].id}]" if index < len(spec.tasks) else f"tasks[{index}]"
    head, dot, tail = rest.partition(".")
    if head == "exec":  # the daemon's path into the action: job.tasks[0].exec.argv
        rest = tail
    else:
        key = re.sub(r"\[.*", "", head)
        rest = _ENGINE_FIELD.get(key, key) + head[len(key) :] + dot + tail
    return Problem(table, rest, description)


class _Reader:
    """Reads the document, collecting problems instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def problem(self, table: str | None, key: str, description: str) -> None:
        self.problems.append(Problem(table, key, description))

    def unknown(self, table: str | None, given: Mapping[str, Any], known: tuple[str, ...]) -> None:
        for key in given:
            if key not in known:
                self.problem(table, key, f"unknown key{_hint(key, known)}")

    def job(self, document: dict[str, Any]) -> JobSpec | None:
        self.unknown(None, document, ("job", "tasks"))
        job = document.get("job", {})
        if not isinstance(job, dict):
            self.problem(None, "job", "must be a table: [job]")
            job = {}
        self.unknown("[job]", job, JOB_KEYS)
        tasks = document.get("tasks")
        if not isinstance(tasks, dict) or not tasks:
            self.problem(None, "tasks", "a job needs at least one task: [tasks.NAME]")
            tasks = {}
        specs = []
        for name, table in tasks.items():
            if not isinstance(table, dict):
                self.problem(None, f"tasks.{name}", "must be a table: [tasks.NAME]")
                continue
            spec = self.task(name, table)
            if spec is not None:
                specs.append(spec)
        labels = self.check("[job]", "labels", job.get("labels", {}), _labels)
        limit = self.check("[job]", "max_concurrency", job.get("max_concurrency"), _optional_int)
        fail_fast = self.check("[job]", "fail_fast", job.get("fail_fast", False), _bool)
        if self.problems:
            return None
        return JobSpec(
            tasks=tuple(specs), labels=labels, fail_fast=fail_fast, max_concurrency=limit
        )

    def task(self, name: str, table: dict[str, Any]) -> TaskSpec | None:
        where = f"[tasks.{name}]"
        before = len(self.problems)
        self.unknown(where, table, TASK_KEYS)
        action = self.action(where, table)
        fields = {
            "description": self.check(where, "description", table.get("description", ""), _str),
            "dependencies": self.check(
                where, "dependencies", table.get("dependencies", []), _str_list
            ),
            "retry": self.check(where, "retry", table.get("retry"), _retry),
            "max_interruptions": self.check(
                where,
                "max_interruptions",
                table.get("max_interruptions", DEFAULT_MAX_INTERRUPTIONS),
                _max_interruptions,
            ),
            "timeout": self.check(where, "timeout", table.get("timeout"), _optional_duration),
            "resources": self.check(where, "resources", table.get("resources", {}), _resources),
            "circuit_breaker": self.check(where, "breaker", table.get("breaker"), _optional_str),
            "wait_for_breaker": self.check(
                where, "wait_for_breaker", table.get("wait_for_breaker", False), _bool
            ),
            "priority": self.check(where, "priority", table.get("priority", 0), _int),
            "trigger_rule": self.check(
                where, "trigger_rule", table.get("trigger_rule", "all_success"), _trigger_rule
            ),
            "labels": self.check(where, "labels", table.get("labels", {}), _labels),
        }
        if len(self.problems) > before:
            return None
        return TaskSpec(name, action, **fields)

    def action(self, where: str, table: dict[str, Any]) -> ExecAction | None:
        run, argv = table.get("run"), table.get("argv")
        if (run is None) == (argv is None):
            self.problem(where, "run", "give exactly one of run (a shell line) or argv (a list)")
            return None
        key = "run" if run is not None else "argv"
        command = self.check(where, key, run if run is not None else argv, _command)
        env = self.check(where, "env", table.get("env", {}), _labels)
        cwd = self.check(where, "cwd", table.get("cwd"), _optional_str)
        if command is None or env is None:
            return None
        try:
            return ExecAction(command, env=env, cwd=cwd)
        except ValidationError as error:
            for violation in error.violations or []:
                field = key if violation.field.startswith("argv") else violation.field
                self.problem(where, field, violation.description)
            return None

    def check(self, where: str, key: str, value: Any, read: Callable[[Any], Any]) -> Any:
        """`read(value)`, or None with the problem noted (ValueError or ValidationError)."""
        try:
            return read(value)
        except (ValueError, TypeError) as error:
            violations = getattr(error, "violations", None) or []
            if violations and key == "retry":
                for violation in violations:
                    self.problem(where, f"retry.{violation.field}", violation.description)
            else:
                self.problem(where, key, str(error))
            return None


def _hint(key: str, known: tuple[str, ...]) -> str:
    """What an unknown key was likely meant to be, else which keys there are."""
    close = difflib.get_close_matches(key, known, n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"


# -- readers: a TOML value into an engine value, or ValueError saying why not ---------------------


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, not {value!r}")
    return value


def _optional_str(value: Any) -> str | None:
    return None if value is None else _str(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, not {value!r}")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected a whole number, not {value!r}")
    return value


def _max_interruptions(value: Any) -> int:
    count = _int(value)
    if not 0 <= count <= MAX_INTERRUPTIONS:
        raise ValueError(f"expected a whole number from 0 to {MAX_INTERRUPTIONS}, not {count}")
    return count


def _optional_int(value: Any) -> int | None:
    return None if value is None else _int(value)


def _str_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"expected a list of strings, not {value!r}")
    return tuple(value)


def _labels(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError(f'expected a table of strings, like {{ team = "data" }}, not {value!r}')
    return dict(value)


def _command(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("the shell line is empty")
        return ("sh", "-c", value)
    return _str_list(value)


def _duration(value: Any) -> float:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected seconds, like 30 or '30s', not {value!r}")
    return float(value)


def _optional_duration(value: Any) -> float | None:
    return None if value is None else _duration(value)


def _retry(value: Any) -> RetryPolicy | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return RetryPolicy(max_attempts=value)
    if not isinstance(value, dict):
        raise ValueError(f"expected a number of attempts or a table, not {value!r}")
    unknown = [key for key in value if key not in RETRY_KEYS]
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}{_hint(unknown[0], RETRY_KEYS)}")
    fields = dict(value)
    for key in ("initial_backoff", "max_backoff"):
        if key in fields:
            fields[key] = _duration(fields[key])
    return RetryPolicy(**fields)


def _resources(value: Any) -> tuple[ResourceRequirement, ...]:
    if not isinstance(value, dict):
        raise ValueError(f"expected a table of amounts, like {{ cpu = 0.5 }}, not {value!r}")
    requirements = []
    for name, amount in value.items():
        builtin = _BUILTIN.get(name)
        if builtin is not None:
            requirements.append(ResourceRequirement(builtin, amount))
        else:
            requirements.append(ResourceRequirement(ResourceType.CUSTOM, amount, name=name))
    return tuple(requirements)


def _trigger_rule(value: Any) -> TriggerRule:
    try:
        return TriggerRule(value)
    except ValueError:
        known = ", ".join(rule.value for rule in TriggerRule)
        raise ValueError(f"expected one of {known}, not {value!r}") from None
