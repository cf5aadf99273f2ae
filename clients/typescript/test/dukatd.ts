// A real dukatd from the repository's .venv on a unix socket in a temporary directory, for the
// proof that the generated code and @grpc/grpc-js reach the daemon (as tests/dukatd/
// daemon_process.py does for Python).
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import { credentials } from "@grpc/grpc-js";

import { SchedulerServiceClient } from "../src/gen/dukat/v1/scheduler.js";

// This file runs as clients/typescript/dist/test/dukatd.js.
const REPO = fileURLToPath(new URL("../../../../", import.meta.url));
// Variables of the test's own environment that would change how the daemon runs.
const NOT_INHERITED = new Set(["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS"]);

export class Dukatd {
  readonly address: string;
  readonly client: SchedulerServiceClient;
  private readonly directory: string;
  private readonly logPath: string;
  private readonly process: ChildProcess;
  private readonly exited: Promise<number | null>;

  private constructor(args: readonly string[]) {
    // In /tmp: a unix socket's path must fit in 108 bytes.
    this.directory = mkdtempSync("/tmp/dukatd-ts-");
    this.address = `unix:${join(this.directory, "d.sock")}`;
    this.logPath = join(this.directory, "d.log");
    const env = Object.fromEntries(
      Object.entries(process.env).filter(
        ([name]) => !name.startsWith("DUKATD_") && !NOT_INHERITED.has(name),
      ),
    );
    const log = openSync(this.logPath, "w");
    this.process = spawn(
      join(REPO, ".venv/bin/dukatd"),
      ["--listen", this.address, "--ephemeral", "--metrics-listen", "off", ...args],
      { cwd: REPO, env, stdio: ["ignore", log, log] },
    );
    closeSync(log);
    this.exited = new Promise((resolve) => this.process.once("exit", (code) => resolve(code)));
    // Retry soon after a failed connection (grpc-js waits 1 s by default): the daemon takes a
    // moment to bind its socket.
    this.client = new SchedulerServiceClient(this.address, credentials.createInsecure(), {
      "grpc.initial_reconnect_backoff_ms": 20,
      "grpc.max_reconnect_backoff_ms": 200,
    });
  }

  /** Start a daemon and wait until it accepts connections (it serves from then on: health is
   * SERVING before the server starts); fails with the daemon's log if it exits first. */
  static async serving(args: readonly string[] = [], withinMs = 15_000): Promise<Dukatd> {
    const daemon = new Dukatd(args);
    const ready = new Promise<void>((resolve, reject) =>
      daemon.client.waitForReady(Date.now() + withinMs, (error) =>
        error ? reject(error) : resolve(),
      ),
    );
    try {
      const exited = await Promise.race([ready.then(() => false), daemon.exited.then(() => true)]);
      if (exited) {
        const code = daemon.process.exitCode;
        throw new Error(`dukatd exited with ${code} before serving:\n${daemon.log()}`);
      }
    } catch (error) {
      await daemon.stop();
      throw error;
    }
    return daemon;
  }

  log(): string {
    return readFileSync(this.logPath, "utf8");
  }

  /** SIGKILL if still running, wait for the exit, remove the directory. */
  async stop(): Promise<void> {
    this.client.close();
    if (this.process.exitCode === null && this.process.signalCode === null) {
      this.process.kill("SIGKILL");
    }
    await this.exited;
    rmSync(this.directory, { recursive: true, force: true });
  }
}
