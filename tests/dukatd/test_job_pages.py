"""ListJobs pages by size and their tokens, as units (the daemon's side is in
test_scheduler_service.py and test_hostile_input.py)."""

from __future__ import annotations

import pytest

from dukat import convert
from dukat.core.results import JobSnapshot
from dukat.core.states import JobState
from dukat.errors import ValidationError
from dukatd.job_pages import MAX_PAGE_TOKEN, fill_page, page_start, page_token


def snapshot(n: int, label_bytes: int = 0) -> JobSnapshot:
    return JobSnapshot(
        job_id=f"{n:032x}",
        state=JobState.RUNNING,
        tasks=(),
        labels={"big": "x" * label_bytes} if label_bytes else {},
        created_at=1_700_000_000.0 + n,
    )


def listed(job: JobSnapshot):
    return convert.job_to_proto(job, with_tasks=False)


def test_a_page_ends_before_its_bytes_would_overflow_and_holds_one_job_at_least():
    jobs = [snapshot(n, label_bytes=1000) for n in range(5)]
    one = listed(jobs[0]).ByteSize() + 3
    page, more = fill_page(jobs, 0, 100, 2 * one, listed)
    assert [job.job_id for job in page] == [jobs[0].job_id, jobs[1].job_id] and more
    page, more = fill_page(jobs, 3, 100, 10, listed)  # smaller than any job: one each
    assert [job.job_id for job in page] == [jobs[3].job_id] and more
    page, more = fill_page(jobs, 4, 100, 10, listed)
    assert len(page) == 1 and not more
    page, more = fill_page(jobs, 0, 2, 10**9, listed)  # the count still ends a page
    assert len(page) == 2 and more


def test_a_token_finds_its_job_or_else_its_time():
    jobs = [snapshot(n) for n in range(5, 0, -1)]  # newest first
    token = page_token(jobs[1])
    assert len(token) <= MAX_PAGE_TOKEN
    assert page_start(jobs, token) == 2
    assert page_start(jobs[:1] + jobs[2:], token) == 1  # the job was dropped since
    assert page_start(jobs, "") == 0


@pytest.mark.parametrize("token", ["x", "A" * (MAX_PAGE_TOKEN + 1), "[[[[", "a b"])
def test_a_token_that_does_not_decode_names_page_token(token: str):
    with pytest.raises(ValidationError) as raised:
        page_start([snapshot(1)], token)
    assert [v.field for v in raised.value.violations] == ["page_token"]
