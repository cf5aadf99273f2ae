// Where the daemon is: the address given, else $DUKAT_ADDRESS, else the socket dukatd listens
// on by default (dukatd/config.py default_listen: dukatd.sock in $RUNTIME_DIRECTORY, else
// $XDG_RUNTIME_DIR, else the private /tmp/dukatd-$UID/).
import { statSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";

export const SOCKET_NAME = "dukatd.sock";

/** The address to dial, as grpc-js takes it: `unix:/path` or `host:port`. */
export function resolveAddress(
  address: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): string {
  const given = address?.trim() || env["DUKAT_ADDRESS"]?.trim();
  if (!given) {
    return defaultAddress(env);
  }
  if (/^[a-z][a-z0-9+.-]*:/i.test(given) && !isHostPort(given)) {
    return given; // unix:, and grpc-js's own schemes (dns:, ipv4:, ipv6:)
  }
  if (given.startsWith("/") || given.startsWith(".") || isSocket(given)) {
    throw new TypeError(
      `${JSON.stringify(given)} looks like a unix socket's path: write ` +
        `unix:${resolve(given)} (an address without a scheme is host:port)`,
    );
  }
  return given;
}

/** `unix:` and the socket dukatd listens on when it is given no --listen. */
export function defaultAddress(env: NodeJS.ProcessEnv = process.env): string {
  const directory =
    firstAbsolute(env["RUNTIME_DIRECTORY"]) ??
    firstAbsolute(env["XDG_RUNTIME_DIR"]) ??
    `/tmp/dukatd-${process.getuid?.() ?? 0}`;
  return `unix:${directory}/${SOCKET_NAME}`;
}

// systemd joins several RuntimeDirectory= entries with ':'; the XDG base directory spec says
// relative values must be ignored.
function firstAbsolute(value: string | undefined): string | undefined {
  const first = (value ?? "").split(":")[0] ?? "";
  return isAbsolute(first) ? first : undefined;
}

// "localhost:7070" also matches the scheme pattern: a port after the colon makes it one.
function isHostPort(text: string): boolean {
  return /^[^:/]+:\d+$/.test(text);
}

function isSocket(path: string): boolean {
  try {
    return statSync(path).isSocket();
  } catch {
    return false;
  }
}
