// TypeScript submits and Python serves: a worker of the Python client (dukat.client) in a
// subprocess runs the dispatch tasks a TypeScript client submits, through one real dukatd.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { test } from "node:test";

import { connect, dispatch, type TaskProgress } from "../src/index.js";
import { Dukatd, PYTHON, PYTHON_HELPERS, REPO } from "./dukatd.js";

test("a TypeScript client's job is served by a Python worker", async () => {
  await using daemon = await Dukatd.start();
  const worker = spawn(PYTHON, [join(PYTHON_HELPERS, "shout_worker.py"), daemon.address, "py"], {
    cwd: REPO,
    stdio: ["ignore", "pipe", "inherit"],
  });
  const exited = once(worker, "exit");
  try {
    const [line] = (await once(createInterface({ input: worker.stdout }), "line")) as [string];
    assert.equal(line, "ready");
    await using client = connect(daemon.address);

    const handle = await client.submit([
      dispatch("hello", "py", "hello"),
      dispatch("world", "py", "world", { dependencies: ["hello"] }),
    ]);
    const progress: TaskProgress[] = [];
    for await (const event of handle.watch()) {
      if (event.type === "TaskProgress") progress.push(event);
    }
    const done = await handle.wait();

    assert.equal(done.state, "SUCCEEDED");
    const payloads = done.tasks.map((t) =>
      t.result?.type === "dispatch" ? Buffer.from(t.result.payload).toString() : undefined,
    );
    assert.deepEqual(payloads, ["HELLO", "WORLD HELLO"]);
    assert.deepEqual(
      progress.map((p) => [p.taskId, p.fraction, p.message]),
      [
        ["hello", 0.5, "shouting in python"],
        ["world", 0.5, "shouting in python"],
      ],
    );
  } finally {
    worker.kill("SIGTERM");
    await exited;
  }
});
