// A worker outlives its daemon: the same Worker, never restarted by the test, serves the daemon
// that replaces its own on the same socket; keeps a long attempt alive with heartbeats; and
// gives up a stream whose daemon went silent, for a new one once the daemon answers again.
import assert from "node:assert/strict";
import { test } from "node:test";

import { connect, dispatch } from "../src/index.js";
import { Dukatd, text, until } from "./dukatd.js";

// Short heartbeat terms both ways (dukatd's are 10 s and 30 s), so that silence shows soon.
const HEARTBEATS = ["--worker-heartbeat-interval", "100ms", "--worker-heartbeat-timeout", "1s"];
test("a worker reconnects to the daemon that replaces its own, and serves its tasks", async () => {
  await using daemon = await Dukatd.start({
    journaled: true,
    args: ["--shutdown-grace", "100ms"],
  });
  await using client = connect(daemon.address);
  const attempts: number[] = [];
  const aborts: string[] = [];
  const worker = client.worker("q", async (task, signal) => {
    attempts.push(task.attempt);
    if (task.attempt === 1) {
      // Held until the stream under it breaks.
      await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
      aborts.push(String((signal.reason as Error).message));
      return new Uint8Array();
    }
    return Buffer.from(`served on attempt ${task.attempt}`);
  });
  await worker.untilConnected();
  const handle = await client.submit([dispatch("held", "q")]); // interrupted, not failed
  await until("the first attempt runs", () => attempts.length === 1);

  assert.equal(await daemon.terminate(), 0); // a restart, say for an upgrade
  await until("the worker lost its stream", () => !worker.connected);
  assert.equal(aborts.length, 1, "the running handler was aborted");
  await daemon.restart();
  await worker.untilConnected();

  const done = await handle.wait(); // the new daemon ran the interrupted task again
  assert.equal(done.state, "SUCCEEDED");
  assert.equal(
    text(done.tasks[0]?.result?.type === "dispatch" ? done.tasks[0].result.payload : undefined),
    "served on attempt 2",
  );
  assert.deepEqual(attempts, [1, 2]);
  assert.equal(done.tasks[0]?.interruptions, 1);
  await worker.stop();
});

test("heartbeats keep an attempt that outlasts the heartbeat timeout alive", async () => {
  await using daemon = await Dukatd.start({ args: HEARTBEATS });
  await using client = connect(daemon.address);
  const worker = client.worker("long", async (task) => {
    await new Promise((resolve) => setTimeout(resolve, 1_500)); // past the heartbeat timeout
    return Buffer.from(`attempt ${task.attempt}`);
  });
  try {
    const done = await (await client.submit([dispatch("long", "long", "", { retry: 2 })])).wait();

    assert.equal(done.state, "SUCCEEDED");
    assert.equal(done.tasks[0]?.attempts, 1, "never given up for silence");
  } finally {
    await worker.stop();
  }
});

test("a worker gives up a daemon gone silent, and serves it again once it answers", async () => {
  await using daemon = await Dukatd.start({ args: HEARTBEATS });
  await using client = connect(daemon.address);
  const worker = client.worker("q", async (task) => task.payload);
  try {
    await worker.untilConnected();

    daemon.signal("SIGSTOP"); // frozen: its connections stay open, it answers nothing
    try {
      await until("the worker gave its stream up", () => !worker.connected);
    } finally {
      daemon.signal("SIGCONT");
    }
    await worker.untilConnected();

    const done = await (await client.submit([dispatch("after", "q", "back")])).wait();
    assert.equal(done.state, "SUCCEEDED");
  } finally {
    await worker.stop();
  }
});
