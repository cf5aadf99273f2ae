// The README's examples are examples/*.ts as they are, compiled with the rest, and they run
// against a real dukatd to the output the README shows.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";

import { REPO, sharedDaemon } from "./dukatd.js";

const PACKAGE = join(REPO, "clients/typescript");
const README = readFileSync(join(PACKAGE, "README.md"), "utf8");
const { daemon } = await sharedDaemon({ args: ["--allow-exec"] });

/** The README's fenced blocks of a language ("" for those without one), in order. */
function blocks(language: string): string[] {
  const found: string[] = [];
  let open: { language: string; lines: string[] } | undefined;
  for (const line of README.split("\n")) {
    if (open === undefined && line.startsWith("```")) {
      open = { language: line.slice(3).trim(), lines: [] };
    } else if (open !== undefined && line === "```") {
      if (open.language === language) found.push(open.lines.map((l) => `${l}\n`).join(""));
      open = undefined;
    } else {
      open?.lines.push(line);
    }
  }
  return found;
}

/** Run a compiled example against the daemon: its standard output. */
async function run(example: string): Promise<string> {
  const script = join(PACKAGE, "dist/examples", `${example}.js`);
  const env = { ...process.env, DUKAT_ADDRESS: daemon.address };
  const { stdout } = await promisify(execFile)("node", [script], { env, timeout: 30_000 });
  return stdout;
}

test("the README shows each example as examples/ holds it", () => {
  const shown = blocks("ts");
  assert.deepEqual(
    shown.map((block) => /^\/\/ (examples\/\w+\.ts)/.exec(block)?.[1]),
    ["examples/jobs.ts", "examples/worker.ts"],
  );
  for (const block of shown) {
    const path = /^\/\/ (\S+):/.exec(block)?.[1] ?? "";
    assert.equal(block, readFileSync(join(PACKAGE, path), "utf8"), `${path} differs`);
  }
});

test("each example runs to the output the README shows after it", async () => {
  const outputs = blocks("").map((block) => block.trimEnd().split("\n"));
  const [jobs, worker] = [await run("jobs"), await run("worker")];

  // The jobs example's sequences depend on how the tasks interleave: compare without them.
  const withoutSequence = (line: string): string => line.replace(/^\d+ /, "");
  assert.deepEqual(
    jobs.trimEnd().split("\n").map(withoutSequence).sort(),
    (outputs[0] ?? []).map(withoutSequence).sort(),
  );
  assert.deepEqual(worker.trimEnd().split("\n"), outputs[1]);
});
