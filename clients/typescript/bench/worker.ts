// The dispatch benchmark's TypeScript worker (bench/dispatch.py): the public client's Worker
// with a no-op handler, serving the queue `bench` until it is killed.
//
//   node dist/bench/worker.js ADDRESS IN_FLIGHT
//
// Prints `ready` once a daemon has welcomed it.
import { connect } from "@dukat/client";

const [address, inFlight] = process.argv.slice(2);
const client = connect(address);
const empty = new Uint8Array();
const worker = client.worker("bench", async () => empty, { concurrency: Number(inFlight) });
await worker.untilConnected();
console.log("ready");
process.once("SIGTERM", () => void client.close().then(() => process.exit(0)));
