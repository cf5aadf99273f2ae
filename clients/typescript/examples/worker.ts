// examples/worker.ts: a worker serving dispatch tasks, and a breaker shared with every process.
import { CircuitBreakerError, connect, dispatch } from "@dukat/client";

await using client = connect();

const worker = client.worker(
  "shout",
  async (task, signal) => {
    task.reportProgress(0.5, "shouting"); // batched into the worker's next update
    signal.throwIfAborted(); // aborted: the task was cancelled, or ran past its timeout
    const upstream = task.upstreamResults.map((u) => Buffer.from(u.payload).toString());
    return Buffer.from([Buffer.from(task.payload).toString().toUpperCase(), ...upstream].join(" "));
  },
  { concurrency: 4 },
);
const handle = await client.submit([
  dispatch("hello", "shout", "hello"),
  dispatch("world", "shout", "world", { dependencies: ["hello"] }),
]);
for (const task of (await handle.wait()).tasks) {
  if (task.result?.type === "dispatch")
    console.log(task.id, Buffer.from(task.result.payload).toString());
}
await worker.drain(); // takes nothing new, finishes what it holds, then leaves

const payments = client.breaker("payments");
try {
  console.log(await payments.run(async () => "charged")); // a failure counts, an abort does not
} catch (error) {
  if (!(error instanceof CircuitBreakerError)) throw error;
  console.log(`payments is down; try again in ${error.retryAfter} ms`);
}
