// The daemon's circuit breakers from TypeScript: one breaker shared by every client, a call
// refused while it is open (CircuitBreakerError with retryAfter), an aborted call counted
// neither way, half-open trial calls.
import assert from "node:assert/strict";
import { test } from "node:test";

import { CircuitBreakerError, connect } from "../src/index.js";
import { sharedDaemon, until } from "./dukatd.js";

const { daemon, client } = await sharedDaemon({
  config: [
    "[breakers.payments]",
    "failure_threshold = 2",
    "timeout_seconds = 60",
    "[breakers.flaky]",
    "failure_threshold = 1",
    "timeout_seconds = 0.2",
    "half_open_max_calls = 1",
  ].join("\n"),
});

const abort = (): never => {
  throw new DOMException("the caller gave up", "AbortError");
};

test("failures open a breaker for every client; aborted calls count neither way", async () => {
  const payments = client.breaker("payments");
  assert.equal(client.breaker("payments"), payments, "one object per name");
  assert.equal(await payments.run(async () => "paid"), "paid");

  await assert.rejects(
    payments.run(() => Promise.reject(new Error("declined"))),
    /declined/,
  );
  await assert.rejects(payments.run(abort), { name: "AbortError" });
  await assert.rejects(payments.run(abort), { name: "AbortError" });
  assert.equal(payments.state, "CLOSED", "one failure of two: the aborts did not count");
  const [listed] = (await client.breakers()).filter((b) => b.name === "payments");
  assert.equal(listed?.consecutiveFailures, 1);
  assert.deepEqual(listed?.config, {
    failureThreshold: 2,
    timeout: 60_000,
    halfOpenMaxCalls: 1,
    successThreshold: 1,
    failureRateThreshold: 0,
    windowSize: 0,
  });
  await assert.rejects(payments.run(() => Promise.reject(new Error("declined again"))));
  assert.equal(payments.state, "OPEN");

  await using other = connect(daemon.address); // another process, as far as the daemon knows
  let called = false;
  const refused = await other
    .breaker("payments")
    .run(async () => (called = true))
    .catch((error: unknown) => error);
  assert.ok(refused instanceof CircuitBreakerError, String(refused));
  assert.equal(refused.breaker, "payments");
  assert.equal(refused.halfOpen, false);
  assert.ok(refused.retryAfter > 50_000 && refused.retryAfter <= 60_000, `${refused.retryAfter}`);
  assert.equal(called, false);

  await payments.reset();
  assert.equal(payments.state, "CLOSED");
  assert.equal(await other.breaker("payments").run(() => 42), 42);
});

test("a half-open breaker lets one trial call through; its success closes it", async () => {
  const flaky = client.breaker("flaky");
  await assert.rejects(flaky.run(() => Promise.reject(new Error("down"))));
  assert.equal(await flaky.refresh(), "OPEN");
  await until("the breaker half-opens", async () => (await flaky.refresh()) === "HALF_OPEN");

  const trial = await flaky.acquire();
  assert.ok(trial !== undefined);
  const second = await flaky.run(async () => "not now").catch((error: unknown) => error);
  assert.ok(second instanceof CircuitBreakerError && second.halfOpen, String(second));

  await trial.success();
  assert.equal(flaky.state, "CLOSED");
  await assert.rejects(trial.success(), TypeError, "a permit reports once");
});
