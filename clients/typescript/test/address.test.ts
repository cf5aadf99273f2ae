// Where the client dials: the address given, else $DUKAT_ADDRESS, else the socket dukatd itself
// listens on by default; a socket's path without `unix:` is refused with the fix in words.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { resolveAddress } from "../src/address.js";
import { connect, defaultAddress, exec } from "../src/index.js";
import { Dukatd } from "./dukatd.js";

const uid = process.getuid?.();

test("the default socket is dukatd's: $RUNTIME_DIRECTORY, else $XDG_RUNTIME_DIR, else /tmp", () => {
  assert.equal(
    defaultAddress({ RUNTIME_DIRECTORY: "/run/dukatd:/run/other", XDG_RUNTIME_DIR: "/run/user/7" }),
    "unix:/run/dukatd/dukatd.sock",
  );
  assert.equal(
    defaultAddress({ RUNTIME_DIRECTORY: "relative", XDG_RUNTIME_DIR: "/run/user/7" }),
    "unix:/run/user/7/dukatd.sock",
  );
  assert.equal(defaultAddress({ XDG_RUNTIME_DIR: "" }), `unix:/tmp/dukatd-${uid}/dukatd.sock`);
});

test("an address given wins over $DUKAT_ADDRESS, which wins over the default", () => {
  const env = { DUKAT_ADDRESS: "unix:/from/env.sock", XDG_RUNTIME_DIR: "/run/user/7" };
  assert.equal(resolveAddress("localhost:7070", env), "localhost:7070");
  assert.equal(resolveAddress("  ", env), "unix:/from/env.sock");
  assert.equal(
    resolveAddress(undefined, { XDG_RUNTIME_DIR: "/run/user/7" }),
    "unix:/run/user/7/dukatd.sock",
  );
  assert.equal(resolveAddress("unix:///abs/d.sock", {}), "unix:///abs/d.sock");
  assert.equal(resolveAddress("[::1]:7070", {}), "[::1]:7070");
});

test("a socket's path without unix: is refused, saying how to write it", async () => {
  await using daemon = await Dukatd.start();
  const path = daemon.address.slice("unix:".length);

  for (const address of [path, "./d.sock"]) {
    assert.throws(
      () => connect(address),
      (error: unknown) => {
        assert.ok(error instanceof TypeError);
        assert.match(error.message, /write unix:\//);
        return true;
      },
    );
  }
});

test("connect() with no address finds a daemon on its default socket", async () => {
  const runtime = mkdtempSync("/tmp/dukat-ts-run-");
  const names = ["RUNTIME_DIRECTORY", "XDG_RUNTIME_DIR", "DUKAT_ADDRESS"];
  const saved = Object.fromEntries(names.map((name) => [name, process.env[name]]));
  try {
    await using daemon = await Dukatd.start({
      defaultListen: true,
      env: { RUNTIME_DIRECTORY: "", XDG_RUNTIME_DIR: runtime },
      args: ["--allow-exec"],
    });
    for (const name of names) delete process.env[name];
    process.env["XDG_RUNTIME_DIR"] = runtime;
    await using client = connect();

    assert.equal(client.address, `unix:${join(runtime, "dukatd.sock")}`);
    assert.equal(client.address, daemon.address);
    const done = await (await client.submit([exec("t", ["true"])])).wait();
    assert.equal(done.state, "SUCCEEDED");
  } finally {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
    rmSync(runtime, { recursive: true, force: true });
  }
});
