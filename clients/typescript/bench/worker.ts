// The dispatch benchmark's TypeScript worker (bench/dispatch.py): the public client's Worker
// with a no-op handler, serving a queue until SIGTERM, which drains it.
//
//   node dist/bench/worker.js ADDRESS IN_FLIGHT [QUEUE]
//
// Prints `ready` once a daemon has welcomed it.
import { connect } from "@dukat/client";

const [address, inFlight, queue = "bench"] = process.argv.slice(2);
await using client = connect(address);
const empty = new Uint8Array();
const worker = client.worker(queue, async () => empty, { concurrency: Number(inFlight) });
await worker.untilConnected();
console.log("ready");
process.once("SIGTERM", () => void worker.drain());
await worker.done;
