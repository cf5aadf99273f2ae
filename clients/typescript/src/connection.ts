// The channel to a daemon and the calls over it: options, metadata (client id, token), retries,
// error translation. Keepalive and message sizes match what the daemon enforces
// (dukatd/server.py): it accepts client pings no more often than every 10 s and ends a
// connection on the third ping that comes too early, so this client pings every 30 s; both sides
// take messages up to 64 MiB. The same options as the Python client's (dukat/client/
// _connection.py channel_options).
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";

import {
  type CallOptions,
  type ChannelCredentials,
  type ChannelOptions,
  type ClientUnaryCall,
  credentials as grpcCredentials,
  Metadata,
  type ServiceError,
  status,
} from "@grpc/grpc-js";

import { defaultAddress, resolveAddress } from "./address.js";
import { fromServiceError, isServiceError, UnavailableError } from "./errors.js";
import { CircuitBreakerServiceClient } from "./gen/dukat/v1/breaker.js";
import { DaemonServiceClient } from "./gen/dukat/v1/daemon.js";
import { SchedulerServiceClient } from "./gen/dukat/v1/scheduler.js";
import { consoleLogger, type Logger } from "./logger.js";
import {
  Backoff,
  CALL_RECONNECT,
  type Reconnect,
  reconnectPolicy,
  type ReconnectPolicy,
} from "./reconnect.js";

/** Metadata naming the client that makes a call, for the daemon's per-client limits (open
 * Watch streams): one id per connection, sent with every call (as the Python client's). */
export const CLIENT_ID_KEY = "dukat-client-id";

/** The daemon's default message limit: room for a 100,000-task Submit. */
export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

// Codes a call can end with without the daemon having answered it.
const NOT_AN_ANSWER: ReadonlySet<status> = new Set([
  status.UNAVAILABLE,
  status.DEADLINE_EXCEEDED,
  status.CANCELLED,
]);
const KEEPALIVE_TIME_MS = 30_000;
const KEEPALIVE_TIMEOUT_MS = 20_000;
// grpc's own reconnect backoff starts at 1 s and grows to 120 s: after a daemon restart a
// channel would sit out minutes while our retries found it failing fast. Keep it short;
// the Reconnect policy decides how long to keep trying.
const RECONNECT_BACKOFF_MS: readonly [number, number] = [100, 2_000];

/** PEM files (or their text) for TLS to a TCP address. */
export interface TlsOptions {
  /** The certificate authorities to trust; default: the system's. */
  readonly ca?: string | Buffer;
  /** A client certificate chain and its key, for a daemon that asks for one. */
  readonly cert?: string | Buffer;
  readonly key?: string | Buffer;
}

/** Options of `connect`. */
export interface ConnectOptions {
  /** Sent as `authorization: Bearer <token>` on every call (dukatd's --token-file). */
  readonly token?: string;
  /** A file holding the token (surrounding whitespace ignored), read once at connect. */
  readonly tokenFile?: string;
  /** TLS for a TCP address: true for the system's CAs, or the PEMs to use. */
  readonly tls?: true | TlsOptions;
  /** Channel credentials made by hand (grpc-js), instead of `tls`. */
  readonly credentials?: ChannelCredentials;
  /** The largest message sent or received; default 64 MiB, as the daemon's. */
  readonly maxMessageBytes?: number;
  /** How long calls safe to repeat ride out an unreachable daemon (default: retry for 30 s,
   * waits from 50 ms doubling to 2 s). */
  readonly reconnect?: Reconnect;
  /** Where warnings go (default: console.warn). */
  readonly logger?: Logger;
}

/** The channel arguments of a client (see the module comment for why each). */
export function channelOptions(maxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES): ChannelOptions {
  if (!Number.isInteger(maxMessageBytes) || maxMessageBytes < 1024) {
    throw new RangeError(`maxMessageBytes must be at least 1024, not ${maxMessageBytes}`);
  }
  return {
    "grpc.max_receive_message_length": maxMessageBytes,
    "grpc.max_send_message_length": maxMessageBytes,
    "grpc.keepalive_time_ms": KEEPALIVE_TIME_MS,
    "grpc.keepalive_timeout_ms": KEEPALIVE_TIMEOUT_MS,
    // An idle worker or watcher keeps finding out that its daemon is still there.
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.initial_reconnect_backoff_ms": RECONNECT_BACKOFF_MS[0],
    "grpc.max_reconnect_backoff_ms": RECONNECT_BACKOFF_MS[1],
  };
}

type UnaryMethod<Request, Response> = (
  request: Request,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: ServiceError | null, response: Response) => void,
) => ClientUnaryCall;

/** A channel, its stubs, the call metadata and the reconnect policy. */
export class Connection {
  readonly address: string;
  readonly reconnect: ReconnectPolicy;
  readonly scheduler: SchedulerServiceClient;
  readonly breakers: CircuitBreakerServiceClient;
  readonly daemon: DaemonServiceClient;
  readonly logger: Logger;
  /** Whether the daemon has answered on this connection yet: until then, an unreachable
   * daemon is given up on after the policy's `connectWithin`. */
  reached = false;
  private readonly metadata: Metadata;
  private closed = false;

  constructor(address: string | undefined, options: ConnectOptions = {}) {
    this.address = resolveAddress(address);
    this.reconnect = reconnectPolicy(options.reconnect, CALL_RECONNECT);
    this.logger = options.logger ?? consoleLogger;
    const token = tokenOf(options);
    // Per-call metadata rather than call credentials: those need TLS, and the daemon's
    // default is a unix socket without it.
    this.metadata = new Metadata();
    this.metadata.set(CLIENT_ID_KEY, randomUUID().replaceAll("-", ""));
    if (token !== undefined) {
      this.metadata.set("authorization", `Bearer ${token}`);
    }
    this.scheduler = new SchedulerServiceClient(
      this.address,
      channelCredentials(options),
      channelOptions(options.maxMessageBytes),
    );
    // One channel for every service: the breaker and daemon stubs share the scheduler's.
    const shared = { channelOverride: this.scheduler.getChannel() };
    this.daemon = new DaemonServiceClient(this.address, grpcCredentials.createInsecure(), shared);
    this.breakers = new CircuitBreakerServiceClient(
      this.address,
      grpcCredentials.createInsecure(),
      shared,
    );
  }

  /** The metadata of a call: a copy, grpc-js may add to it. */
  callMetadata(): Metadata {
    return this.metadata.clone();
  }

  /** A unary call; UNAVAILABLE retried by the policy when repeating it is safe. */
  async call<Request, Response>(
    method: UnaryMethod<Request, Response>,
    request: Request,
    { idempotent = true }: { idempotent?: boolean } = {},
  ): Promise<Response> {
    const backoff = this.backoff();
    for (;;) {
      try {
        const response = await new Promise<Response>((resolve, reject) => {
          method(request, this.callMetadata(), {}, (error, answer) =>
            error ? reject(error) : resolve(answer),
          );
        });
        this.reached = true;
        return response;
      } catch (error) {
        await this.retryOrThrow(error, backoff, idempotent);
      }
    }
  }

  /** After a call (or stream) failed with `error`: resolves once the backoff has waited, when
   * the call is worth making again (UNAVAILABLE, `idempotent`, the policy still trying);
   * otherwise throws the client's error for it. */
  async retryOrThrow(error: unknown, backoff: Backoff, idempotent = true): Promise<void> {
    if (!isServiceError(error)) throw error;
    if (error.code !== status.UNAVAILABLE) {
      this.answered(error);
      throw fromServiceError(error);
    }
    if (idempotent && !this.closed && (await backoff.wait())) return;
    throw this.unavailable(error, backoff);
  }

  /** A run of retries under this connection's policy and its first-contact budget. */
  backoff(): Backoff {
    return new Backoff(this.reconnect, () => this.reached);
  }

  /** Note that `error` came from the daemon (not from failing to reach it). */
  private answered(error: ServiceError): void {
    if (!NOT_AN_ANSWER.has(error.code)) this.reached = true;
  }

  /** The error for a daemon given up on: its address, how long, and what to check. */
  private unavailable(error: ServiceError, backoff: Backoff): UnavailableError {
    const details = error.details || "unavailable";
    const waited = backoff.retrying ? ` for ${(backoff.waited / 1000).toFixed(1)}s` : "";
    let message: string;
    if (this.reached) {
      message = `lost dukatd at ${this.address}, not back${waited}: ${details}`;
    } else {
      const fallback = defaultAddress();
      const where =
        this.address === fallback
          ? "that is its default socket"
          : `by default it listens on ${fallback}`;
      message =
        `cannot reach dukatd at ${this.address} (tried${waited}: ${details}). Is dukatd ` +
        `running? Start it with \`dukatd\` (\`make run\` in a checkout); ${where}`;
    }
    const unavailable = new UnavailableError(error.details, error.code, error.metadata, message);
    return Object.assign(unavailable, { cause: error });
  }

  close(): void {
    this.closed = true;
    this.scheduler.close(); // the channel, which the breaker and daemon stubs share
  }

  get isClosed(): boolean {
    return this.closed;
  }
}

function tokenOf(options: ConnectOptions): string | undefined {
  if (options.token !== undefined && options.tokenFile !== undefined) {
    throw new TypeError("give token or tokenFile, not both");
  }
  const token =
    options.tokenFile !== undefined
      ? readFileSync(options.tokenFile, "utf8").trim()
      : options.token;
  if (token !== undefined && (!token || /\s/.test(token))) {
    throw new TypeError("the token must be non-empty and without whitespace");
  }
  return token;
}

function channelCredentials(options: ConnectOptions): ChannelCredentials {
  if (options.credentials !== undefined) {
    if (options.tls !== undefined) throw new TypeError("give tls or credentials, not both");
    return options.credentials;
  }
  if (options.tls === undefined) {
    return grpcCredentials.createInsecure();
  }
  const tls = options.tls === true ? {} : options.tls;
  const pem = (value: string | Buffer | undefined): Buffer | null =>
    value === undefined ? null : Buffer.from(value);
  return grpcCredentials.createSsl(pem(tls.ca), pem(tls.key), pem(tls.cert));
}
