// examples/jobs.ts: a diamond of exec tasks, watched to its end; a job the daemon refuses.
import { connect, exec, InvalidArgumentError, job } from "@dukat/client";

await using client = connect(); // $DUKAT_ADDRESS, else the socket dukatd listens on by default

const handle = await client.submit(
  job(
    [
      exec("fetch", ["sh", "-c", "echo fetched"]),
      exec("left", ["sh", "-c", "echo left"], { dependencies: ["fetch"], resources: { cpu: 0.5 } }),
      exec("right", ["sh", "-c", "echo right"], {
        dependencies: ["fetch"],
        retry: { maxAttempts: 3, initialBackoff: 500 }, // milliseconds, as every duration here
      }),
      exec("join", ["sh", "-c", "echo joined"], {
        dependencies: ["left", "right"],
        timeout: 30_000,
      }),
    ],
    { labels: { team: "data" } },
  ),
);
for await (const event of handle.watch()) {
  // Resumed by itself, from the last event seen, if the daemon restarts meanwhile.
  if (event.type === "TaskOutput") console.log(event.sequence, event.taskId, event.text.trim());
}
const done = await handle.wait();
console.log(done.state, `${done.taskCounts.SUCCEEDED} of ${done.tasks.length} tasks`);

try {
  await client.submit([exec("report", ["true"], { dependencies: ["fetch"] })]); // not in this job
} catch (error) {
  if (!(error instanceof InvalidArgumentError)) throw error;
  for (const { field, description } of error.violations) console.log(field, description);
}
