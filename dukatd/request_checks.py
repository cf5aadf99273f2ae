"""Checks of a request's ids and texts that every call of the scheduler's service makes
before anything else: present, and within `dukat.convert`'s bounds (INVALID_ARGUMENT)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from dukat import convert
from dukat.errors import FieldViolation, ValidationError

__all__ = ["bounded", "require_job_id", "task_id_fields"]


def require_job_id(job_id: str) -> None:
    if not job_id:
        raise ValidationError(
            "job_id is empty", violations=[FieldViolation("job_id", "name the job")]
        )
    bounded(("job_id", job_id, convert.MAX_NAME))


def bounded(*fields: tuple[str, str, int]) -> None:
    """INVALID_ARGUMENT naming each (field, value, limit) whose value is longer than its
    limit (`dukat.convert`'s bounds)."""
    problems = convert.Problems()
    report = problems.report()
    for field, value, limit in fields:
        convert.check_length(report, field, value, limit)
    problems.raise_if_any()


def task_id_fields(task_ids: Iterable[str]) -> Iterator[tuple[str, str, int]]:
    for index, task_id in enumerate(task_ids):
        yield f"task_ids[{index}]", task_id, convert.MAX_NAME
