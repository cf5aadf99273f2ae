// A token-protected daemon (--token-file): the token from a string or a file gets in; none, or
// another, is UnauthenticatedError, for calls and for workers (which it ends: no retry helps).
import assert from "node:assert/strict";
import { test } from "node:test";

import { connect, dispatch, UnauthenticatedError } from "../src/index.js";
import { sharedDaemon } from "./dukatd.js";

const TOKEN = "s3cret-token-for-tests";
const { daemon } = await sharedDaemon({ token: TOKEN });

test("the token, given or read from a file, lets calls and workers in", async () => {
  await using client = connect(daemon.address, { token: TOKEN });
  await using fromFile = connect(daemon.address, { tokenFile: daemon.tokenFile });
  const worker = fromFile.worker("q", async (task) => task.payload);
  try {
    const done = await (await client.submit([dispatch("t", "q", "in")])).wait();
    assert.equal(done.state, "SUCCEEDED");
  } finally {
    await worker.stop();
  }
});

test("no token, or another, is UnauthenticatedError at once", async () => {
  for (const options of [{}, { token: "wrong" }]) {
    await using client = connect(daemon.address, options);
    const started = performance.now();
    await assert.rejects(client.getJob("any"), (error: unknown) => {
      assert.ok(error instanceof UnauthenticatedError, String(error));
      assert.equal(error.codeName, "UNAUTHENTICATED");
      assert.match(error.message, /bearer token/);
      return true;
    });
    assert.ok(performance.now() - started < 5_000, "not retried as if the daemon were away");
  }
});

test("a worker without the token ends with UnauthenticatedError", async () => {
  await using client = connect(daemon.address);
  const worker = client.worker("q", async (task) => task.payload);

  await assert.rejects(worker.done, UnauthenticatedError);
  await assert.rejects(worker.untilConnected(), UnauthenticatedError);
  await assert.rejects(worker.stop(), UnauthenticatedError);
});

test("a token with whitespace, or token and tokenFile together, are refused at connect", () => {
  assert.throws(() => connect(daemon.address, { token: "two words" }), TypeError);
  assert.throws(() => connect(daemon.address, { token: "" }), TypeError);
  assert.throws(
    () => connect(daemon.address, { token: TOKEN, tokenFile: daemon.tokenFile }),
    TypeError,
  );
});
