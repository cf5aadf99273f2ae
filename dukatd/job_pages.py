"""ListJobs pages: which jobs a page holds, and the token that says where the next one starts.

A page ends at the page size or when the next job would take it past `page_bytes` (a share
of the daemon's message limit), whichever comes first, and always holds at least one job: a
listing of jobs with big labels comes in more pages, never in a message too big to send.

Page tokens are opaque to clients: base64url (unpadded) of a version byte, the `created_at`
of the page's last job (a big-endian double) and its id (UTF-8). The id finds the place in
the listing; if retention has dropped that job by the next call, the time still does (jobs
are listed newest first, in submission order). Anything that does not decode into exactly
that is INVALID_ARGUMENT naming `page_token`: a token is never parsed further than its fixed
layout, nor longer than `MAX_PAGE_TOKEN`.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections.abc import Callable, Sequence

from dukat import convert
from dukat.core.results import JobSnapshot
from dukat.errors import FieldViolation, ValidationError
from dukat.v1 import job_pb2

__all__ = [
    "MAX_PAGE_TOKEN",
    "fill_page",
    "listed_job",
    "page_bytes_for",
    "page_start",
    "page_token",
]

_VERSION = 1
_HEAD = struct.Struct(">Bd")  # version, created_at of the page's last job
MAX_JOB_ID_BYTES = 64  # the daemon's ids are 32 hex digits; a token carries no more than this
MAX_PAGE_TOKEN = 128
"""Longest page token accepted, in characters (the daemon's are 55)."""


def page_bytes_for(max_message_bytes: int) -> int:
    """The bytes of jobs one ListJobs response carries at most: all but a sixteenth of a
    message, which leaves room for the token and the framing (at least 64 bytes)."""
    return max_message_bytes - max_message_bytes // 16


def page_token(job: JobSnapshot) -> str:
    raw = _HEAD.pack(_VERSION, job.created_at or 0.0) + job.job_id.encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def page_start(jobs: Sequence[JobSnapshot], token: str) -> int:
    """Where the page after `token` starts in `jobs` (newest first); 0 for no token."""
    if not token:
        return 0
    created_at, job_id = _decode(token)
    for index, job in enumerate(jobs):
        if job.job_id == job_id:
            return index + 1
    for index, job in enumerate(jobs):
        if job.created_at is not None and job.created_at < created_at:
            return index
    return len(jobs)


def fill_page(
    jobs: Sequence[JobSnapshot],
    start: int,
    size: int,
    page_bytes: int,
    listed: Callable[[JobSnapshot], job_pb2.Job],
) -> tuple[list[job_pb2.Job], bool]:
    """The page of `jobs` from `start`: at most `size` jobs and `page_bytes` bytes, at least
    one job if any is left; and whether jobs are left after it. `listed` makes a job's
    message."""
    page: list[job_pb2.Job] = []
    used = 0
    index = start
    while index < len(jobs) and len(page) < size:
        message = listed(jobs[index])
        length = message.ByteSize()
        length += 1 + _varint_size(length)  # the field's tag and length prefix
        if page and used + length > page_bytes:
            break
        page.append(message)
        used += length
        index += 1
    return page, index < len(jobs)


def _decode(token: str) -> tuple[float, str]:
    try:
        if len(token) > MAX_PAGE_TOKEN:
            raise ValueError("too long")
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
        version, created_at = _HEAD.unpack_from(raw)
        encoded = raw[_HEAD.size :]
        job_id = encoded.decode()
        if (
            version != _VERSION
            or not math.isfinite(created_at)
            or not 0 < len(encoded) <= MAX_JOB_ID_BYTES
        ):
            raise ValueError("not a token of this layout")
    except (ValueError, binascii.Error, struct.error):  # UnicodeError is a ValueError
        raise ValidationError(
            "page_token is not one this daemon gave out; pass next_page_token as it came",
            violations=[FieldViolation("page_token", "not a token from ListJobs")],
        ) from None
    return created_at, job_id


def _varint_size(value: int) -> int:
    return max(1, (value.bit_length() + 6) // 7)


def listed_job(job: JobSnapshot) -> job_pb2.Job:
    """A listed job's message: its task counts, no tasks."""
    return convert.job_to_proto(job, with_tasks=False)
