// The TypeScript side of the cross-language tests (tests/clients/test_crosslang.py), which
// start it against a real dukatd with the Go and Python sides:
//
//   node dist/test/programs/crosslang.js serve ADDRESS QUEUE     a worker, until SIGTERM drains it
//   node dist/test/programs/crosslang.js submit ADDRESS QUEUE    a job for QUEUE's worker, waited for
//   node dist/test/programs/crosslang.js breaker ADDRESS NAME    one call through breaker NAME
//
// Each worker of those tests shouts as the Go client's cmd/dukat-worker-example does: its
// dependencies' payloads, then its own upper-cased, with a progress report on the way. submit
// and breaker print one JSON line of what they saw, for the test to check.
import {
  CircuitBreakerError,
  connect,
  dispatch,
  type DispatchTask,
  NonRetryableError,
} from "../../src/index.js";

const [command, address, name] = process.argv.slice(2);
if (address === undefined || name === undefined) {
  throw new Error("usage: crosslang.js serve|submit|breaker ADDRESS QUEUE|BREAKER");
}
await using client = connect(address);

async function shout(task: DispatchTask): Promise<Uint8Array> {
  task.reportProgress(0.5, `shouting ${task.taskId}`);
  const words = task.upstreamResults.map((upstream) => {
    if (upstream.state !== "SUCCEEDED") {
      throw new NonRetryableError(`upstream ${upstream.taskId} ${upstream.state}`);
    }
    return Buffer.from(upstream.payload).toString();
  });
  return Buffer.from([...words, Buffer.from(task.payload).toString().toUpperCase()].join(" "));
}

switch (command) {
  case "serve": {
    const worker = client.worker(name, shout, { concurrency: 4 });
    process.once("SIGTERM", () => void worker.drain());
    await worker.done;
    break;
  }
  case "submit": {
    const handle = await client.submit([
      dispatch("hello", name, "hello"),
      dispatch("world", name, "world", { dependencies: ["hello"] }),
    ]);
    const progress: [string, number | undefined, string][] = [];
    for await (const event of handle.watch()) {
      if (event.type === "TaskProgress")
        progress.push([event.taskId, event.fraction, event.message]);
    }
    const done = await handle.wait();
    const results = Object.fromEntries(
      done.tasks.map((t) => [
        t.id,
        t.result?.type === "dispatch" ? Buffer.from(t.result.payload).toString() : null,
      ]),
    );
    console.log(JSON.stringify({ state: done.state, results, progress }));
    break;
  }
  case "breaker": {
    let called = false;
    try {
      await client.breaker(name).run(async () => {
        called = true;
      });
      console.log(JSON.stringify({ refused: false, called }));
    } catch (error) {
      if (!(error instanceof CircuitBreakerError)) throw error;
      const { breaker, retryAfter, halfOpen } = error;
      console.log(JSON.stringify({ refused: true, called, breaker, retryAfter, halfOpen }));
    }
    break;
  }
  default:
    throw new Error(`unknown command ${command}: serve, submit or breaker`);
}
