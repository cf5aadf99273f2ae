// examples/dag.ts: fetch (exec) -> shout (dispatch, served by this program) -> report (exec).
import { connect, dispatch, exec } from "@dukat/client";

await using client = connect(); // $DUKAT_ADDRESS, else dukatd's default socket

// The worker's handler: payload in, result out.
const worker = client.worker("shout", async (task) =>
  Buffer.from(Buffer.from(task.payload).toString().toUpperCase()),
);
const handle = await client.submit([
  exec("fetch", ["echo", "fetched 3 rows"]),
  dispatch("shout", "shout", "hello", { dependencies: ["fetch"] }),
  exec("report", ["echo", "reported"], { dependencies: ["shout"] }),
]);
const done = await handle.wait();
await worker.drain();
for (const task of done.tasks) {
  const said = task.result?.type === "exec" ? task.result.stdout : task.result?.payload;
  console.log(task.id, task.state, said ? Buffer.from(said).toString().trim() : task.error);
}
console.log("job", done.state);
