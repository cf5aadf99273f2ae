"""Hostile or out-of-range input against a real dukatd (`dukatd.app.serve` in the test's loop,
real gRPC on a unix socket): refused with INVALID_ARGUMENT or RESOURCE_EXHAUSTED naming the
field or the limit, and never able to spoil what other clients see."""

from __future__ import annotations

from pathlib import Path

import dukat
from dukat.actions import DispatchAction
from dukat.core.spec import JobSpec, TaskSpec
from dukat.core.states import JobState
from dukatd.config import Config
from tests.dukatd.in_loop import served

KIB = 1024


def config_for(directory: Path, **options: object) -> Config:
    defaults: dict[str, object] = {
        "listen": (f"unix:{directory}/d.sock",),
        "ephemeral": True,
        "metrics_listen": None,
    }
    return Config(**{**defaults, **options})


def big_labels(n: int, size: int) -> dict[str, str]:
    """About `size` characters of labels, in 64 labels of the longest values allowed."""
    per_value = min(1024, size // 64)
    return {f"k{i:02}": f"{n}-{i}-".ljust(per_value, "x") for i in range(64)}


# -- ListJobs ---------------------------------------------------------------------------------


async def test_list_jobs_pages_by_size_and_the_client_gets_every_job(short_tmp: Path):
    # Twelve jobs of 64 KiB of labels each are 768 KiB: over a 256 KiB message thrice.
    config = config_for(short_tmp, max_message_bytes=256 * KIB)
    async with served(config), dukat.connect(config.listen[0]) as client:
        submitted = []
        for n in range(12):
            spec = JobSpec(
                tasks=(TaskSpec("a", DispatchAction("nobody-serves-this")),),
                labels=big_labels(n, 64 * KIB),
            )
            submitted.append((await client.submit(spec)).job_id)
        listed = [job async for job in client.jobs(state=JobState.RUNNING)]
        assert [job.job_id for job in listed] == submitted[::-1]
        assert all(len(job.labels) == 64 for job in listed)
