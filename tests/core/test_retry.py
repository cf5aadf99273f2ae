"""RetryPolicy: validated options, which failures earn another attempt, and how long to wait."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random

import pytest

from dukat.core.retry import RetryPolicy
from dukat.errors import CircuitBreakerError, TaskTimeoutError, ValidationError


class Flaky(Exception):
    pass


class VeryFlaky(Flaky):
    pass


# -- validation -----------------------------------------------------------------------------


def test_defaults_mean_a_single_attempt():
    policy = RetryPolicy()
    assert policy.max_attempts == 1
    assert not policy.should_retry(Flaky(), attempt=1)


def test_policy_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        RetryPolicy().max_attempts = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_attempts", 0),
        ("max_attempts", -1),
        ("max_attempts", 2.5),
        ("max_attempts", "3"),
        ("max_attempts", True),
        ("max_attempts", None),
        ("initial_backoff", -0.1),
        ("initial_backoff", math.nan),
        ("initial_backoff", math.inf),
        ("initial_backoff", "1"),
        ("initial_backoff", None),
        ("initial_backoff", True),
        ("max_backoff", -1.0),
        ("max_backoff", math.nan),
        ("max_backoff", math.inf),
        ("max_backoff", "60"),
        ("multiplier", 0.5),
        ("multiplier", 0),
        ("multiplier", math.nan),
        ("multiplier", math.inf),
        ("multiplier", "2"),
        ("jitter", -0.1),
        ("jitter", 1.5),
        ("jitter", math.nan),
        ("jitter", "0.1"),
    ],
)
def test_each_bad_field_is_a_validation_error_naming_it(field, value):
    with pytest.raises(ValidationError, match=rf"retry {field} .*not {value!r}") as caught:
        RetryPolicy(**{field: value})
    assert [v.field for v in caught.value.violations] == [field]


def test_validation_error_is_a_value_error():
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_max_backoff_below_initial_backoff_is_refused():
    with pytest.raises(ValidationError, match="max_backoff must be at least initial_backoff"):
        RetryPolicy(initial_backoff=10, max_backoff=5)


@pytest.mark.parametrize(
    "policy",
    [
        {"max_attempts": 1},
        {"initial_backoff": 0, "max_backoff": 0},
        {"initial_backoff": 5, "max_backoff": 5},
        {"multiplier": 1},
        {"jitter": 0},
        {"jitter": 1},
        {"max_attempts": 10, "initial_backoff": 0.25, "max_backoff": 30, "multiplier": 3},
    ],
)
def test_boundary_values_are_accepted(policy):
    RetryPolicy(**policy)


@pytest.mark.parametrize("retry_on", ["ValueError", 42, None, [ValueError]])
def test_retry_on_must_be_exception_types_or_a_predicate(retry_on):
    with pytest.raises(ValidationError, match="retry_on"):
        RetryPolicy(retry_on=retry_on)


def test_retry_on_tuple_may_only_hold_exception_types():
    with pytest.raises(ValidationError, match="retry_on"):
        RetryPolicy(retry_on=(ValueError, "OSError"))


# -- should_retry ---------------------------------------------------------------------------


def test_retries_until_max_attempts_is_reached():
    policy = RetryPolicy(max_attempts=3)
    assert policy.should_retry(Flaky(), attempt=1)
    assert policy.should_retry(Flaky(), attempt=2)
    assert not policy.should_retry(Flaky(), attempt=3)
    assert not policy.should_retry(Flaky(), attempt=4)


def test_by_default_every_exception_is_retried():
    policy = RetryPolicy(max_attempts=2)
    for error in [ValueError(), OSError(), TaskTimeoutError("t", 1.0), CircuitBreakerError("b", 1)]:
        assert policy.should_retry(error, attempt=1), error


@pytest.mark.parametrize(
    "error", [asyncio.CancelledError(), KeyboardInterrupt(), SystemExit(1), GeneratorExit()]
)
def test_base_exceptions_that_are_not_errors_are_never_retried(error):
    assert not RetryPolicy(max_attempts=5, retry_on=(BaseException,)).should_retry(error, 1)
    assert not RetryPolicy(max_attempts=5, retry_on=lambda _: True).should_retry(error, 1)


def test_only_listed_exception_types_and_their_subclasses_are_retried():
    policy = RetryPolicy(max_attempts=3, retry_on=(Flaky, TimeoutError))
    assert policy.should_retry(Flaky(), 1)
    assert policy.should_retry(VeryFlaky(), 1)
    assert policy.should_retry(TaskTimeoutError("t", 1.0), 1)  # a TimeoutError
    assert not policy.should_retry(ValueError(), 1)


def test_an_empty_tuple_retries_nothing():
    assert not RetryPolicy(max_attempts=3, retry_on=()).should_retry(Flaky(), 1)


def test_a_single_exception_type_means_that_type_not_a_predicate():
    # An exception class is callable; it must not be called as a predicate (which is truthy).
    policy = RetryPolicy(max_attempts=3, retry_on=Flaky)
    assert policy.should_retry(VeryFlaky(), 1)
    assert not policy.should_retry(ValueError(), 1)


def test_a_predicate_decides_which_errors_are_retried():
    policy = RetryPolicy(max_attempts=3, retry_on=lambda error: "temporary" in str(error))
    assert policy.should_retry(OSError("temporary glitch"), 1)
    assert not policy.should_retry(OSError("disk on fire"), 1)


def test_a_predicate_result_is_taken_for_its_truth():
    policy = RetryPolicy(max_attempts=3, retry_on=lambda error: error.args and error.args[0])
    assert policy.should_retry(Flaky(1), 1) is True
    assert policy.should_retry(Flaky(0), 1) is False


def test_the_attempt_limit_wins_over_the_predicate():
    calls = []
    policy = RetryPolicy(max_attempts=2, retry_on=lambda error: calls.append(error) or True)
    assert not policy.should_retry(Flaky(), attempt=2)
    assert calls == []


# -- backoff --------------------------------------------------------------------------------


def test_backoff_grows_by_the_multiplier_without_jitter():
    policy = RetryPolicy(
        max_attempts=10, initial_backoff=0.5, multiplier=3, max_backoff=1000, jitter=0
    )
    assert [policy.backoff(n) for n in range(1, 6)] == [0.5, 1.5, 4.5, 13.5, 40.5]


def test_backoff_with_multiplier_one_is_constant():
    policy = RetryPolicy(initial_backoff=2, multiplier=1, jitter=0)
    assert {policy.backoff(n) for n in range(1, 50)} == {2}


def test_backoff_is_capped_at_max_backoff():
    policy = RetryPolicy(initial_backoff=1, multiplier=2, max_backoff=10, jitter=0)
    assert [policy.backoff(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


@pytest.mark.parametrize("multiplier", [2, 2.0])
def test_zero_initial_backoff_retries_at_once_forever(multiplier):
    policy = RetryPolicy(initial_backoff=0, multiplier=multiplier, max_backoff=60, jitter=0.5)
    assert policy.backoff(1) == 0
    assert policy.backoff(5000) == 0


def test_jitter_spreads_each_wait_within_its_fraction():
    policy = RetryPolicy(initial_backoff=10, multiplier=2, max_backoff=1000, jitter=0.2)
    rng = random.Random(1234)
    for attempt in range(1, 5):
        base = 10 * 2 ** (attempt - 1)
        waits = [policy.backoff(attempt, rng) for _ in range(500)]
        assert all(base * 0.8 <= wait <= base * 1.2 for wait in waits), attempt
        # Spread out, both below and above the base: not a constant offset.
        assert min(waits) < base * 0.85
        assert max(waits) > base * 1.15


def test_jitter_never_goes_above_max_backoff():
    policy = RetryPolicy(initial_backoff=10, multiplier=2, max_backoff=15, jitter=1)
    rng = random.Random(7)
    waits = [policy.backoff(attempt, rng) for attempt in range(1, 20) for _ in range(50)]
    assert max(waits) <= 15
    assert min(waits) >= 0


def test_jitter_spreads_waits_that_reached_the_cap_below_it():
    # Capped first, then spread: retries of many tasks at the cap do not all come together.
    policy = RetryPolicy(initial_backoff=10, multiplier=2, max_backoff=15, jitter=0.5)
    rng = random.Random(11)
    waits = [policy.backoff(8, rng) for _ in range(500)]
    assert all(7.5 <= wait <= 15 for wait in waits)
    assert min(waits) < 9
    assert len(set(waits)) > 100


def test_full_jitter_stays_non_negative():
    policy = RetryPolicy(initial_backoff=1, max_backoff=1, jitter=1)
    rng = random.Random(99)
    assert all(0 <= policy.backoff(1, rng) <= 1 for _ in range(1000))


def test_jitter_with_the_same_seed_is_reproducible():
    policy = RetryPolicy(initial_backoff=1, max_backoff=100, jitter=0.3)
    first = [policy.backoff(n, random.Random(5)) for n in range(1, 8)]
    second = [policy.backoff(n, random.Random(5)) for n in range(1, 8)]
    assert first == second
    assert first != [policy.backoff(n, random.Random(6)) for n in range(1, 8)]


def test_no_jitter_means_no_randomness_is_drawn():
    class NoRandom(random.Random):
        def random(self) -> float:
            raise AssertionError("jitter=0 must not draw a random number")

    policy = RetryPolicy(initial_backoff=1, jitter=0)
    assert policy.backoff(1, NoRandom()) == 1


@pytest.mark.parametrize("attempt", [1_000, 10**6, 10**9, 10**18])
@pytest.mark.parametrize("multiplier", [2, 2.0, 10])
def test_huge_attempt_numbers_give_the_cap_quickly_without_overflow(attempt, multiplier):
    policy = RetryPolicy(initial_backoff=1, multiplier=multiplier, max_backoff=30, jitter=0)
    assert policy.backoff(attempt) == 30


def test_huge_attempt_numbers_with_jitter_stay_within_the_cap():
    policy = RetryPolicy(initial_backoff=1, multiplier=2, max_backoff=30, jitter=0.1)
    wait = policy.backoff(10**9, random.Random(3))
    assert 27 <= wait <= 30
