// Watches under the daemon's limits: refused a Watch (RESOURCE_EXHAUSTED) wait() polls GetJob;
// a job dropped by retention as it ends comes back as its events left it; each connection is a
// client of its own.
import assert from "node:assert/strict";
import { test } from "node:test";

import { connect, dispatch, job, NotFoundError, ResourceExhaustedError } from "../src/index.js";
import { Dukatd, sharedDaemon, until } from "./dukatd.js";

const { daemon } = await sharedDaemon({
  args: ["--max-watch-streams-per-client", "1"],
  metrics: true,
});

/** Watch streams open on `daemon` now. */
async function openWatches(daemon: Dukatd): Promise<number> {
  const method = { grpc_method: "Watch" };
  const started = await daemon.metric("grpc_server_started_total", method);
  return started - (await daemon.metric("grpc_server_handled_total", method));
}

test("wait() polls GetJob while the daemon refuses it a Watch", async () => {
  await using client = connect(daemon.address);
  const first = await client.submit([dispatch("t", "nobody-serves")]); // never ends
  const second = await client.submit([dispatch("t", "poll")]);
  const holder = first.watch(); // the client's one Watch
  await holder.next();

  const polling = client.job(second.jobId).wait(); // refused a Watch: polls
  const refused = { grpc_method: "Watch", grpc_code: "ResourceExhausted" };
  await until(
    "the Watch of wait() is refused",
    async () => (await daemon.metric("grpc_server_handled_total", refused)) > 0,
  );
  const worker = client.worker("poll", async () => Buffer.from("done"));
  try {
    const done = await polling;

    assert.equal(done.state, "SUCCEEDED");
    assert.equal(done.jobId, second.jobId);
    assert.equal(await openWatches(daemon), 1, "only the holder's");
  } finally {
    await worker.stop();
    await holder.return();
  }
});

test("wait() gives the end of a job that retention drops as it ends", async () => {
  await using dropping = await Dukatd.start({
    args: ["--retain-finished-jobs", "0"],
    metrics: true,
  });
  await using client = connect(dropping.address);
  const handle = await client.submit(job([dispatch("t", "drop")], { labels: { team: "data" } }));
  const seen = await handle.get();
  const waiting = handle.wait();
  await until("wait() watches", async () => (await openWatches(dropping)) === 1);

  const worker = client.worker("drop", async () => new Uint8Array());
  try {
    const done = await waiting;

    await assert.rejects(handle.get(), NotFoundError); // gone: wait's answer came from events
    assert.equal(done.jobId, handle.jobId);
    assert.equal(done.state, "SUCCEEDED");
    assert.deepEqual(done.labels, { team: "data" });
    assert.equal(done.message, "1 tasks succeeded");
    assert.deepEqual(done.createdAt, seen.createdAt);
    assert.ok(done.finishedAt !== undefined && seen.createdAt !== undefined);
    assert.ok(done.finishedAt >= seen.createdAt);
    assert.ok(done.lastSequence > seen.lastSequence);
    assert.deepEqual(done.tasks, []);
  } finally {
    await worker.stop();
  }
});

test("each connection is a client of its own for the daemon's per-client watch limit", async () => {
  // On a unix socket every peer looks alike: only the dukat-client-id tells two clients apart.
  await using greedy = connect(daemon.address);
  await using other = connect(daemon.address);
  const handle = await greedy.submit([dispatch("t", "nobody-serves")]);
  const held = handle.watch();
  await held.next();
  try {
    await assert.rejects(handle.watch().next(), ResourceExhaustedError);

    const watched = other.watch(handle.jobId);
    await watched.next(); // another client's count: not refused
    await watched.return();
  } finally {
    await held.return();
  }
});
