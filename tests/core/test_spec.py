"""validate_job: a whole job checked at once, each problem naming its task and field."""

from __future__ import annotations

import pytest

from dukat.core.retry import RetryPolicy
from dukat.core.spec import MAX_ID_LENGTH, JobSpec, TaskSpec, validate_job
from dukat.errors import ValidationError


def check(*tasks: TaskSpec) -> dict[str, int]:
    return validate_job(JobSpec(tasks=tasks), max_tasks=100)


def task(task_id: object, *dependencies: str, **fields: object) -> TaskSpec:
    return TaskSpec(task_id, "an action", dependencies=dependencies, **fields)  # type: ignore[arg-type]


def problems(*tasks: TaskSpec) -> tuple[ValidationError, list[tuple[str, str]]]:
    with pytest.raises(ValidationError) as caught:
        check(*tasks)
    error = caught.value
    return error, [(v.field, v.description) for v in error.violations]


def test_a_valid_job_gives_each_task_its_position() -> None:
    assert check(task("b"), task("a", "b"), task("c", "a", "b")) == {"b": 0, "a": 1, "c": 2}


def test_dependencies_may_come_after_their_task() -> None:
    assert check(task("late", "early"), task("early")) == {"late": 0, "early": 1}


@pytest.mark.parametrize(
    ("bad_id", "named", "description"),
    [
        ("", None, "a task needs a non-empty id"),
        (7, None, "a task needs a non-empty id"),
        (["a", "list"], None, "a task needs a non-empty id"),  # unhashable
        ("x" * (MAX_ID_LENGTH + 1), "x" * (MAX_ID_LENGTH + 1), "longer than 256 characters"),
        ("a", "a", "duplicate task id 'a'"),
    ],
    ids=["empty", "not-a-string", "unhashable", "too-long", "duplicate"],
)
def test_a_bad_id_is_named_with_its_position(bad_id, named, description) -> None:
    error, found = problems(task("a"), task("b", "a"), task(bad_id))
    assert found == [("tasks[2].id", description)]
    assert error.task_id == named


def test_a_string_subclass_is_an_id_like_any_other() -> None:
    class Name(str):
        pass

    assert check(task(Name("a")), task("b", "a")) == {"a": 0, "b": 1}


def test_a_task_with_a_good_and_a_bad_dependency_has_the_bad_one_named() -> None:
    error, found = problems(task("a"), task("b", "a", "ghost", "b"))
    assert found == [
        ("tasks[1].dependencies[1]", "unknown task 'ghost'"),
        ("tasks[1].dependencies[2]", "a task cannot depend on itself"),
    ]
    assert (
        str(error)
        == "task 'b': tasks[1].dependencies[1]: unknown task 'ghost' (and 1 more problem)"
    )


def test_every_problem_of_the_job_is_listed_ids_first() -> None:
    _, found = problems(
        task("a", timeout=0, retry="thrice", priority=True),
        task("a"),
        task("c", circuit_breaker=""),
    )
    assert found == [
        ("tasks[1].id", "duplicate task id 'a'"),
        ("tasks[0].timeout", "must be a positive number of seconds, not 0"),
        ("tasks[0].retry", "must be a RetryPolicy, not 'thrice'"),
        ("tasks[0].priority", "must be a whole number, not True"),
        ("tasks[2].circuit_breaker", "must be a breaker name"),
    ]


def test_good_optional_fields_pass() -> None:
    assert check(task("a", timeout=0.5, retry=RetryPolicy(max_attempts=2), priority=-3)) == {"a": 0}


def test_a_task_that_is_not_a_task_spec_is_named() -> None:
    _, found = problems(task("a"), ("b", "an action"))  # type: ignore[arg-type]
    assert found == [("tasks[1]", "not a TaskSpec: tuple")]


def test_an_id_that_cannot_be_hashed_or_compared_is_a_bad_id_not_a_crash() -> None:
    class Awkward:
        def __hash__(self) -> int:
            raise RuntimeError("no hash")

    _, found = problems(task("a"), task(Awkward()))
    assert found == [("tasks[1].id", "a task needs a non-empty id")]


def test_a_str_subclass_id_and_a_duplicate_are_told_apart() -> None:
    class Name(str):
        pass

    _, found = problems(task(Name("a")), task("b"), task("b"))
    assert found == [("tasks[2].id", "duplicate task id 'b'")]
