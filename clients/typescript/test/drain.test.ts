// A worker drains (WorkerUpdate.draining): it is assigned nothing more, finishes what it holds,
// hands in the results and leaves with the stream ended OK; nothing it held is lost or run
// twice. A drain with a grace aborts what outlasts it, which the daemon runs again elsewhere.
import assert from "node:assert/strict";
import { test } from "node:test";

import { connect, dispatch } from "../src/index.js";
import { gate, sharedDaemon, until } from "./dukatd.js";

const { daemon, client } = await sharedDaemon();

test("a worker drained mid-job finishes what it holds and loses nothing", async () => {
  const { promise: released, open: release } = gate();
  const first: string[] = [];
  const draining = client.worker(
    "drain",
    async (task) => {
      first.push(task.taskId);
      await released;
      return Buffer.from(`first #${task.attempt}`);
    },
    { concurrency: 4 },
  );
  const handle = await client.submit(
    Array.from({ length: 12 }, (_, i) => dispatch(`t${i}`, "drain", "", { retry: 3 })),
  );
  await until("the worker holds four attempts", () => draining.inFlight === 4);

  const drained = draining.drain();
  release();
  await drained;

  assert.equal(draining.connected, false);
  assert.equal(first.length, 4, "nothing assigned once it said it was draining");
  assert.equal(draining.completed, 4, "every result it held was handed in");
  const second = client.worker("drain", async (task) => Buffer.from(`second #${task.attempt}`), {
    concurrency: 4,
  });
  try {
    const done = await handle.wait();

    assert.equal(done.state, "SUCCEEDED");
    assert.ok(
      done.tasks.every((t) => t.attempts === 1),
      "no attempt lost, none run twice",
    );
    const byFirst = done.tasks.filter(
      (t) =>
        t.result?.type === "dispatch" && Buffer.from(t.result.payload).toString() === "first #1",
    );
    assert.deepEqual(
      byFirst.map((t) => t.id),
      first,
    );
  } finally {
    await second.stop();
  }
});

test("a drain's grace aborts what outlasts it; the daemon runs it again elsewhere", async () => {
  const reasons: unknown[] = [];
  const stubborn = client.worker("grace", async (_task, signal) => {
    await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
    reasons.push(signal.reason);
    return new Uint8Array();
  });
  const handle = await client.submit([dispatch("slow", "grace", "", { retry: 2 })]);
  await until("the attempt runs", () => stubborn.inFlight === 1);

  await stubborn.drain({ grace: 100 });

  assert.equal(reasons.length, 1);
  const other = client.worker("grace", async (task) => Buffer.from(`#${task.attempt}`));
  try {
    const done = await handle.wait();
    assert.equal(done.state, "SUCCEEDED");
    assert.equal(done.tasks[0]?.attempts, 2);
  } finally {
    await other.stop();
  }
});

test("a worker drained while not connected just stops", async () => {
  await using nowhere = connect(`unix:${daemon.directory}/nobody.sock`);
  const worker = nowhere.worker("q", async (task) => task.payload);

  await worker.drain();

  assert.equal(worker.connected, false);
});
