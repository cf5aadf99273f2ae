// Where the client dials: the address given, else $DUKAT_ADDRESS, else the socket dukatd itself
// listens on by default; a socket's path without `unix:` is refused with the fix in words.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

import { resolveAddress } from "../src/address.js";
import { CALL_RECONNECT, connect, defaultAddress, exec, UnavailableError } from "../src/index.js";
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
  assert.equal(resolveAddress(undefined, env), "unix:/from/env.sock");
  assert.equal(
    resolveAddress(undefined, { XDG_RUNTIME_DIR: "/run/user/7" }),
    "unix:/run/user/7/dukatd.sock",
  );
  assert.equal(resolveAddress("unix:///abs/d.sock", {}), "unix:///abs/d.sock");
  assert.equal(resolveAddress("[::1]:7070", {}), "[::1]:7070");
  assert.equal(resolveAddress("dns:///daemon.example:7070", {}), "dns:///daemon.example:7070");
});

test("an empty address, or a socket's path without unix:, is refused saying how to write it", async () => {
  await using daemon = await Dukatd.start();
  const socket = daemon.address.slice("unix:".length);
  const refused = (address: string | undefined, env: NodeJS.ProcessEnv, fix: RegExp): void => {
    assert.throws(
      () => resolveAddress(address, env),
      (error: unknown) => error instanceof TypeError && fix.test(error.message),
    );
  };

  refused(
    socket,
    {},
    new RegExp(`^address '${socket}' is a unix socket's path .* write 'unix:${socket}'$`),
  );
  refused("./d.sock", {}, /write 'unix:\.\/d\.sock'/);
  refused("../run/d", {}, /write 'unix:\.\.\/run\/d'/);
  refused("dukatd.sock", {}, /write 'unix:dukatd\.sock'/);
  refused("~/d.sock", {}, new RegExp(`write 'unix:${homedir()}/d\\.sock'`));
  refused(undefined, { DUKAT_ADDRESS: socket }, /^DUKAT_ADDRESS '.*' is a unix socket's path/);
  refused("  ", {}, /^address must name a daemon, like 'unix:/);
  // And connect() says so at once, before any call.
  assert.throws(() => connect(socket), /write 'unix:/);
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

test("a daemon that is not there is said within connectWithin, with the address and the fix", async () => {
  const nowhere = mkdtempSync("/tmp/dukat-ts-none-");
  try {
    const address = `unix:${nowhere}/d.sock`;
    await using client = connect(address, { reconnect: { connectWithin: 300 } });
    const started = performance.now();

    const error = await client.getJob("any").catch((e: unknown) => e);

    assert.ok(error instanceof UnavailableError, String(error));
    assert.equal(error.codeName, "UNAVAILABLE");
    assert.match(error.message, new RegExp(`^cannot reach dukatd at ${address} \\(tried for `));
    assert.match(error.message, /Is dukatd running\? Start it with `dukatd`/);
    assert.ok(performance.now() - started < 3_000, "given up on after connectWithin, not 30 s");
    assert.equal(CALL_RECONNECT.connectWithin, 5_000); // the default, as the Python client's
  } finally {
    rmSync(nowhere, { recursive: true, force: true });
  }
});
