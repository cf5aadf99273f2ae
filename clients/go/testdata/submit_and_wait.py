"""Python's side of crosslang_test.go: submit a job of dispatch tasks and wait for it.

    python submit_and_wait.py ADDRESS QUEUE

Prints one JSON line: the job's state, each task's result payload and the progress messages
its watch saw, for the Go test to check against what its worker did.
"""

import asyncio
import json
import sys

import dukat
from dukat.actions import DispatchAction
from dukat.core import JobSpec, TaskSpec
from dukat.core.events import TaskProgress


async def main(address: str, queue: str) -> None:
    async with dukat.connect(address) as client:
        hello = TaskSpec("hello", DispatchAction(queue, b"hello"))
        world = TaskSpec("world", DispatchAction(queue, b"world"), dependencies=("hello",))
        handle = await client.submit(JobSpec(tasks=(hello, world)))
        progress = [e.message async for e in handle.events() if isinstance(e, TaskProgress)]
        job = await handle.wait()
        results = {task.id: task.result.payload.decode() for task in job.tasks if task.result}
        print(json.dumps({"state": job.state.name, "results": results, "progress": progress}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
