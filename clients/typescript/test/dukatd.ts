// A real dukatd from the repository's .venv, on a unix socket in a temporary directory, for the
// client's tests (as tests/dukatd/daemon_process.py does for Python's): started and awaited
// until it serves, stopped by signal and started again on the same socket and state directory,
// killed and cleaned up at the end; and the small helpers the test files share.
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after } from "node:test";
import { fileURLToPath } from "node:url";

import { Client as GrpcClient, credentials } from "@grpc/grpc-js";

import { type Client, connect } from "../src/index.js";

// This file runs as clients/typescript/dist/test/dukatd.js.
export const REPO = fileURLToPath(new URL("../../../../", import.meta.url));
export const PYTHON = join(REPO, ".venv/bin/python");
/** Python helpers of the tests (sources: they are not compiled). */
export const PYTHON_HELPERS = join(REPO, "clients/typescript/test/python");
// Variables of the test's own environment that would change how the daemon runs.
const NOT_INHERITED = new Set(["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS"]);

export interface DukatdOptions {
  /** More flags for dukatd. */
  readonly args?: readonly string[];
  /** Keep a journal in the temporary directory (`--state-dir`) rather than `--ephemeral`:
   * what is accepted survives a restart. */
  readonly journaled?: boolean;
  /** Write this token to a file and start with `--token-file`. */
  readonly token?: string;
  /** Serve /metrics on a free port of 127.0.0.1 (`Dukatd.metric` reads it); default off. */
  readonly metrics?: boolean;
  /** The daemon's configuration file (TOML), written to the directory: `--config`. */
  readonly config?: string;
  /** Variables added to the daemon's environment. */
  readonly env?: Readonly<Record<string, string>>;
  /** Listen where dukatd listens by default (no --listen) under `env`. */
  readonly defaultListen?: boolean;
}

export class Dukatd {
  /** The temporary directory, which holds the socket (and the journal, the token). */
  readonly directory: string;
  readonly address: string;
  readonly tokenFile: string | undefined;
  private readonly argv: readonly string[];
  private readonly env: NodeJS.ProcessEnv;
  private process: ChildProcess | undefined;
  private exited: Promise<number | null> = Promise.resolve(null);
  private starts = 0;

  private constructor(options: DukatdOptions) {
    // In /tmp: a unix socket's path must fit in 108 bytes.
    this.directory = mkdtempSync("/tmp/dukatd-ts-");
    this.address = options.defaultListen
      ? `unix:${options.env?.["XDG_RUNTIME_DIR"]}/dukatd.sock`
      : `unix:${join(this.directory, "d.sock")}`;
    const args = [
      ...(options.defaultListen ? [] : ["--listen", this.address]),
      ...(options.journaled ? ["--state-dir", join(this.directory, "state")] : ["--ephemeral"]),
      "--metrics-listen",
      options.metrics ? "127.0.0.1:0" : "off",
    ];
    if (options.token !== undefined) {
      this.tokenFile = join(this.directory, "token");
      writeFileSync(this.tokenFile, `${options.token}\n`, { mode: 0o600 });
      args.push("--token-file", this.tokenFile);
    }
    if (options.config !== undefined) {
      const file = join(this.directory, "dukatd.toml");
      writeFileSync(file, options.config);
      args.push("--config", file);
    }
    args.push(...(options.args ?? []));
    this.argv = [join(REPO, ".venv/bin/dukatd"), ...args];
    this.env = {
      ...Object.fromEntries(
        Object.entries(process.env).filter(
          ([name]) => !name.startsWith("DUKATD_") && !NOT_INHERITED.has(name),
        ),
      ),
      ...options.env,
    };
  }

  /** Start a daemon and wait until it serves; fails with its log if it exits first. */
  static async start(options: DukatdOptions = {}): Promise<Dukatd> {
    const daemon = new Dukatd(options);
    try {
      await daemon.launch();
    } catch (error) {
      await daemon.stop();
      throw error;
    }
    return daemon;
  }

  get pid(): number {
    const pid = this.process?.pid;
    if (pid === undefined) throw new Error("dukatd is not running");
    return pid;
  }

  get running(): boolean {
    return (
      this.process !== undefined &&
      this.process.exitCode === null &&
      this.process.signalCode === null
    );
  }

  log(): string {
    return readFileSync(this.logPath(), "utf8");
  }

  /** The sum of a metric's samples whose labels include `labels`, from /metrics. */
  async metric(name: string, labels: Readonly<Record<string, string>> = {}): Promise<number> {
    const url = /metrics on (http:\S+)/.exec(this.log())?.[1];
    if (url === undefined) throw new Error("dukatd serves no metrics: start it with metrics");
    const wanted = Object.entries(labels).map(([label, value]) => `${label}="${value}"`);
    let sum = 0;
    for (const line of (await (await fetch(url)).text()).split("\n")) {
      const match = /^(\w+)(?:\{(.*)\})? (\S+)$/.exec(line);
      if (match?.[1] === name && wanted.every((pair) => (match[2] ?? "").includes(pair))) {
        sum += Number(match[3]);
      }
    }
    return sum;
  }

  signal(name: NodeJS.Signals): void {
    this.process?.kill(name);
  }

  /** SIGTERM (the daemon drains) and its exit status. */
  async terminate(): Promise<number | null> {
    this.signal("SIGTERM");
    return this.exited;
  }

  /** Start it again, same flags, socket and state directory (after `terminate`). */
  async restart(): Promise<void> {
    if (this.running) throw new Error("dukatd is still running: terminate it first");
    await this.launch();
  }

  /** SIGKILL if still running, wait for the exit, remove the directory. */
  async stop(): Promise<void> {
    if (this.running) this.signal("SIGKILL");
    await this.exited;
    rmSync(this.directory, { recursive: true, force: true });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  private logPath(): string {
    return join(this.directory, `d-${this.starts}.log`);
  }

  private async launch(withinMs = 15_000): Promise<void> {
    this.starts += 1;
    const log = openSync(this.logPath(), "w");
    const [program, ...args] = this.argv as [string, ...string[]];
    const child = spawn(program, args, { cwd: REPO, env: this.env, stdio: ["ignore", log, log] });
    closeSync(log);
    this.process = child;
    this.exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
    // The daemon binds its socket only once it serves. Retry soon after a failed connection
    // (grpc-js waits 1 s by default): it takes a moment to start.
    const probe = new GrpcClient(this.address, credentials.createInsecure(), {
      "grpc.initial_reconnect_backoff_ms": 20,
      "grpc.max_reconnect_backoff_ms": 100,
    });
    try {
      const ready = new Promise<boolean>((resolve, reject) =>
        probe.waitForReady(Date.now() + withinMs, (error) =>
          error ? reject(error) : resolve(true),
        ),
      );
      if (!(await Promise.race([ready, this.exited.then(() => false)]))) {
        throw new Error(`dukatd exited with ${child.exitCode} before serving:\n${this.log()}`);
      }
    } finally {
      probe.close();
    }
  }
}

/** Poll `condition` until it holds; fail after `withinMs` saying what was awaited. */
export async function until(
  what: string,
  condition: () => boolean | Promise<boolean>,
  withinMs = 10_000,
): Promise<void> {
  const deadline = performance.now() + withinMs;
  while (!(await condition())) {
    if (performance.now() > deadline) throw new Error(`not within ${withinMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** A daemon and a client of it that a test file's tests share (`await` it at the top of the
 * file): started now, the client closed and the daemon stopped after the file's tests. */
export async function sharedDaemon(
  options: DukatdOptions = {},
): Promise<{ daemon: Dukatd; client: Client }> {
  const daemon = await Dukatd.start(options);
  const client = connect(daemon.address);
  after(async () => {
    await client.close();
    await daemon.stop();
  });
  return { daemon, client };
}

/** Bytes as UTF-8 text; none as "". */
export const text = (bytes: Uint8Array | undefined): string => Buffer.from(bytes ?? []).toString();

/** A promise and its resolver. */
export function gate<T = void>(): { promise: Promise<T>; open: (value: T) => void } {
  let open!: (value: T) => void;
  const promise = new Promise<T>((resolve) => (open = resolve));
  return { promise, open };
}
