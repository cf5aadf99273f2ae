# examples/dag.py: fetch (exec) -> shout (dispatch, served by this program) -> report (exec).
import asyncio

import dukat
from dukat.actions import DispatchAction, ExecAction, ExecResult
from dukat.core import JobSpec, TaskSpec


async def shout(task):  # the worker's handler: payload in, result out
    return task.payload.upper()


async def main():
    fetch = TaskSpec("fetch", ExecAction(("echo", "fetched 3 rows")))
    loud = TaskSpec("shout", DispatchAction("shout", b"hello"), dependencies=("fetch",))
    report = TaskSpec("report", ExecAction(("echo", "reported")), dependencies=("shout",))
    # $DUKAT_ADDRESS, else dukatd's default socket; the worker serves queue "shout" meanwhile.
    async with dukat.connect() as client, client.worker("shout", shout):
        handle = await client.submit(JobSpec(tasks=(fetch, loud, report)))
        job = await handle.wait()
    for task in job.tasks:
        if isinstance(task.result, ExecResult):
            said = task.result.stdout.decode().strip()
        else:
            said = task.result.payload.decode() if task.result else task.error
        print(task.id, task.state.name, said)
    print("job", job.state.name)


asyncio.run(main())
