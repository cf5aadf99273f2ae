"""dukat.convert's bounds: every bounded field, at its bound (kept) and past it (refused with
its path, or, for a journal, brought within it). The daemon's side: test_hostile_input.py."""

from __future__ import annotations

import math

import pytest
from google.protobuf import duration_pb2

from dukat import convert
from dukat.errors import TaskFailedRemotely, ValidationError
from dukat.v1 import breaker_pb2, job_pb2, work_pb2

N = convert.MAX_NAME
FOREVER = duration_pb2.Duration(seconds=2**63 - 1)
AT_MOST = duration_pb2.Duration(seconds=convert.MAX_DURATION)


def task(**fields: object) -> job_pb2.TaskSpec:
    fields.setdefault("dispatch", job_pb2.DispatchAction(queue="q"))
    return job_pb2.TaskSpec(id="t", **fields)


def exec_task(**fields: object) -> job_pb2.TaskSpec:
    fields.setdefault("argv", ["true"])
    return job_pb2.TaskSpec(id="t", exec=job_pb2.ExecAction(**fields))


def labels(count: int = 1, key: int = 1, value: int = 1) -> dict[str, str]:
    return {f"{n}".rjust(key, "k"): "v" * value for n in range(count)}


def custom(name: str, amount: float = 1.0) -> job_pb2.ResourceRequirement:
    return job_pb2.ResourceRequirement(type=job_pb2.RESOURCE_TYPE_CUSTOM, name=name, amount=amount)


def retry(**fields: object) -> job_pb2.RetryPolicy:
    return job_pb2.RetryPolicy(max_attempts=2, **fields)


# (path refused, the job at the bound, the job past it)
JOBS = {
    "job.labels": (
        job_pb2.JobSpec(tasks=[task()], labels=labels(count=convert.MAX_LABELS, key=N)),
        job_pb2.JobSpec(tasks=[task()], labels=labels(count=convert.MAX_LABELS + 1)),
    ),
    "job.labels ": (  # a key too long
        job_pb2.JobSpec(tasks=[task()], labels=labels(key=N)),
        job_pb2.JobSpec(tasks=[task()], labels=labels(key=N + 1)),
    ),
    "job.labels['0']": (
        job_pb2.JobSpec(tasks=[task()], labels=labels(value=convert.MAX_LABEL_VALUE)),
        job_pb2.JobSpec(tasks=[task()], labels=labels(value=convert.MAX_LABEL_VALUE + 1)),
    ),
    "job.tasks[0].labels['0']": (
        job_pb2.JobSpec(tasks=[task(labels=labels(value=convert.MAX_LABEL_VALUE))]),
        job_pb2.JobSpec(tasks=[task(labels=labels(value=convert.MAX_LABEL_VALUE + 1))]),
    ),
    "job.tasks[0].description": (
        job_pb2.JobSpec(tasks=[task(description="d" * convert.MAX_TEXT)]),
        job_pb2.JobSpec(tasks=[task(description="d" * (convert.MAX_TEXT + 1))]),
    ),
    "job.tasks[0].dispatch.queue": (
        job_pb2.JobSpec(tasks=[task(dispatch=job_pb2.DispatchAction(queue="q" * N))]),
        job_pb2.JobSpec(tasks=[task(dispatch=job_pb2.DispatchAction(queue="q" * (N + 1)))]),
    ),
    "job.tasks[0].dispatch.content_type": (
        job_pb2.JobSpec(
            tasks=[task(dispatch=job_pb2.DispatchAction(queue="q", content_type="c" * N))]
        ),
        job_pb2.JobSpec(
            tasks=[task(dispatch=job_pb2.DispatchAction(queue="q", content_type="c" * (N + 1)))]
        ),
    ),
    "job.tasks[0].circuit_breaker": (
        job_pb2.JobSpec(tasks=[task(circuit_breaker="b" * convert.MAX_BREAKER_NAME)]),
        job_pb2.JobSpec(tasks=[task(circuit_breaker="b" * (convert.MAX_BREAKER_NAME + 1))]),
    ),
    "job.tasks[0].resources": (
        job_pb2.JobSpec(tasks=[task(resources=[custom("r", 0.001)] * convert.MAX_RESOURCES)]),
        job_pb2.JobSpec(tasks=[task(resources=[custom("r", 0.001)] * (convert.MAX_RESOURCES + 1))]),
    ),
    "job.tasks[0].resources[0].name": (
        job_pb2.JobSpec(tasks=[task(resources=[custom("r" * N)])]),
        job_pb2.JobSpec(tasks=[task(resources=[custom("r" * (N + 1))])]),
    ),
    "job.tasks[0].timeout": (
        job_pb2.JobSpec(tasks=[task(timeout=AT_MOST)]),
        job_pb2.JobSpec(tasks=[task(timeout=FOREVER)]),
    ),
    "job.tasks[0].timeout ": (  # nanos out of range
        job_pb2.JobSpec(tasks=[task(timeout=duration_pb2.Duration(seconds=1, nanos=999_999_999))]),
        job_pb2.JobSpec(
            tasks=[task(timeout=duration_pb2.Duration(seconds=1, nanos=1_000_000_000))]
        ),
    ),
    "job.tasks[0].timeout  ": (  # nanos of the other sign
        job_pb2.JobSpec(tasks=[task(timeout=duration_pb2.Duration(nanos=5))]),
        job_pb2.JobSpec(tasks=[task(timeout=duration_pb2.Duration(seconds=5, nanos=-5))]),
    ),
    "job.tasks[0].retry.initial_backoff": (
        job_pb2.JobSpec(tasks=[task(retry=retry(initial_backoff=AT_MOST, max_backoff=AT_MOST))]),
        job_pb2.JobSpec(tasks=[task(retry=retry(initial_backoff=FOREVER, max_backoff=AT_MOST))]),
    ),
    "job.tasks[0].retry.max_backoff": (
        job_pb2.JobSpec(tasks=[task(retry=retry(max_backoff=AT_MOST))]),
        job_pb2.JobSpec(tasks=[task(retry=retry(max_backoff=FOREVER))]),
    ),
    "job.tasks[0].exec.argv": (
        job_pb2.JobSpec(tasks=[exec_task(argv=["x"] * convert.MAX_ARGV)]),
        job_pb2.JobSpec(tasks=[exec_task(argv=["x"] * (convert.MAX_ARGV + 1))]),
    ),
    "job.tasks[0].exec.argv[1]": (
        job_pb2.JobSpec(tasks=[exec_task(argv=["echo", "a" * convert.MAX_ARG])]),
        job_pb2.JobSpec(tasks=[exec_task(argv=["echo", "a" * (convert.MAX_ARG + 1)])]),
    ),
    "job.tasks[0].exec.env": (
        job_pb2.JobSpec(tasks=[exec_task(env=labels(count=convert.MAX_ENV, key=N))]),
        job_pb2.JobSpec(tasks=[exec_task(env=labels(count=convert.MAX_ENV + 1))]),
    ),
    "job.tasks[0].exec.env ": (  # a name too long
        job_pb2.JobSpec(tasks=[exec_task(env=labels(key=N))]),
        job_pb2.JobSpec(tasks=[exec_task(env=labels(key=N + 1))]),
    ),
    "job.tasks[0].exec.env['0']": (
        job_pb2.JobSpec(tasks=[exec_task(env=labels(value=convert.MAX_ARG))]),
        job_pb2.JobSpec(tasks=[exec_task(env=labels(value=convert.MAX_ARG + 1))]),
    ),
    "job.tasks[0].exec.cwd": (
        job_pb2.JobSpec(tasks=[exec_task(cwd="/" * convert.MAX_PATH)]),
        job_pb2.JobSpec(tasks=[exec_task(cwd="/" * (convert.MAX_PATH + 1))]),
    ),
}


@pytest.mark.parametrize("path", list(JOBS))
def test_a_job_field_at_its_bound_is_kept_and_past_it_refused_naming_it(path: str):
    at_bound, past = JOBS[path]
    convert.job_spec_from_proto(at_bound)
    with pytest.raises(ValidationError) as raised:
        convert.job_spec_from_proto(past)
    assert [v.field for v in raised.value.violations] == [path.strip()]
    assert path.startswith("job.labels") or raised.value.task_id == "t"


@pytest.mark.parametrize("path", list(JOBS))
def test_a_journaled_job_past_a_bound_is_kept_and_the_field_reported(path: str):
    _, past = JOBS[path]
    reported: list[tuple[str, str]] = []
    spec = convert.job_spec_from_proto(past, lenient=lambda *problem: reported.append(problem))
    assert [field for field, _ in reported] == [path.strip()]
    (kept,) = spec.tasks
    if path.endswith("timeout") and past.tasks[0].timeout == FOREVER:
        assert kept.timeout == convert.MAX_DURATION  # numbers are brought to the bound
    if path.endswith("backoff"):
        assert kept.retry is not None
        assert kept.retry.max_backoff == convert.MAX_DURATION
    if path.endswith("description"):
        assert kept.description == past.tasks[0].description  # strings are kept whole


NOT_FINITE = [math.nan, math.inf, -math.inf]


@pytest.mark.parametrize("value", NOT_FINITE)
@pytest.mark.parametrize(
    ("path", "make"),
    [
        ("job.tasks[0].resources[0].amount", lambda v: task(resources=[custom("r", v)])),
        ("job.tasks[0].retry.multiplier", lambda v: task(retry=retry(multiplier=v))),
        ("job.tasks[0].retry.jitter", lambda v: task(retry=retry(jitter=v))),
    ],
)
def test_numbers_that_are_not_finite_are_refused(path, make, value):
    with pytest.raises(ValidationError) as raised:
        convert.job_spec_from_proto(job_pb2.JobSpec(tasks=[make(value)]))
    assert [v.field for v in raised.value.violations] == [path]


# -- breakers ---------------------------------------------------------------------------------

BREAKERS = {
    "config.timeout": (
        breaker_pb2.CircuitBreakerConfig(timeout=AT_MOST),
        breaker_pb2.CircuitBreakerConfig(timeout=FOREVER),
    ),
    "config.timeout ": (
        breaker_pb2.CircuitBreakerConfig(timeout=duration_pb2.Duration(nanos=999_999_999)),
        breaker_pb2.CircuitBreakerConfig(timeout=duration_pb2.Duration(nanos=-1_000_000_000)),
    ),
    "config.window_size": (
        breaker_pb2.CircuitBreakerConfig(
            failure_rate_threshold=0.5, window_size=convert.MAX_WINDOW
        ),
        breaker_pb2.CircuitBreakerConfig(
            failure_rate_threshold=0.5, window_size=convert.MAX_WINDOW + 1
        ),
    ),
    "config.failure_rate_threshold": (
        breaker_pb2.CircuitBreakerConfig(failure_rate_threshold=1.0, window_size=2),
        breaker_pb2.CircuitBreakerConfig(failure_rate_threshold=math.nan, window_size=2),
    ),
    "config.failure_rate_threshold ": (
        breaker_pb2.CircuitBreakerConfig(failure_rate_threshold=1.0, window_size=2),
        breaker_pb2.CircuitBreakerConfig(failure_rate_threshold=math.inf, window_size=2),
    ),
}


@pytest.mark.parametrize("path", list(BREAKERS))
def test_a_breaker_field_at_its_bound_is_kept_and_past_it_refused_naming_it(path: str):
    at_bound, past = BREAKERS[path]
    convert.breaker_config_from_proto(at_bound)
    with pytest.raises(ValidationError) as raised:
        convert.breaker_config_from_proto(past)
    assert [v.field for v in raised.value.violations] == [path.strip()]


def test_a_journaled_breaker_config_is_brought_within_bounds():
    config = convert.breaker_config_from_proto(
        breaker_pb2.CircuitBreakerConfig(failure_rate_threshold=0.5, window_size=4)
    )
    poisoned = type(config)(
        timeout_seconds=float(2**63), failure_rate_threshold=0.5, window_size=2**31 - 1
    )
    reported: list[str] = []
    fixed = convert.breaker_config_within_bounds(poisoned, lambda f, _: reported.append(f))
    assert (fixed.timeout_seconds, fixed.window_size) == (convert.MAX_DURATION, convert.MAX_WINDOW)
    assert reported == ["config.timeout", "config.window_size"]
    assert convert.breaker_config_within_bounds(config, reported.append) is config


# -- work -------------------------------------------------------------------------------------

HELLOS = {
    "hello.queues": (
        work_pb2.WorkerHello(queues=[str(n) for n in range(convert.MAX_QUEUES)], max_in_flight=1),
        work_pb2.WorkerHello(
            queues=[str(n) for n in range(convert.MAX_QUEUES + 1)], max_in_flight=1
        ),
    ),
    "hello.queues ": (
        work_pb2.WorkerHello(queues=["q" * N], max_in_flight=1),
        work_pb2.WorkerHello(queues=["q" * (N + 1)], max_in_flight=1),
    ),
    "hello.worker_id": (
        work_pb2.WorkerHello(worker_id="w" * N, queues=["q"], max_in_flight=1),
        work_pb2.WorkerHello(worker_id="w" * (N + 1), queues=["q"], max_in_flight=1),
    ),
}


@pytest.mark.parametrize("path", list(HELLOS))
def test_a_hello_field_at_its_bound_is_kept_and_past_it_refused_naming_it(path: str):
    at_bound, past = HELLOS[path]
    convert.worker_hello_from_proto(at_bound)
    with pytest.raises(ValidationError) as raised:
        convert.worker_hello_from_proto(past)
    assert [v.field for v in raised.value.violations] == [path.strip()]


def test_a_workers_words_are_cut_never_refused():
    error = convert.work_error_from_proto(
        work_pb2.WorkError(message="m" * 100_000, type="T" * 1000, retryable=True)
    )
    assert len(error.type) == N and error.retryable
    assert len(str(error)) <= N + 2 + convert.MAX_TEXT and str(error).endswith("…")


def test_a_result_the_daemon_does_not_keep_fails_the_attempt_for_good():
    kept = convert.work_success_from_proto(work_pb2.WorkSuccess(payload=b"x" * 10), 10)
    assert kept.payload == b"x" * 10
    for success in (
        work_pb2.WorkSuccess(payload=b"x" * 11),
        work_pb2.WorkSuccess(content_type="c" * (N + 1)),
    ):
        with pytest.raises(TaskFailedRemotely) as raised:
            convert.work_success_from_proto(success, 10)
        assert not raised.value.retryable
