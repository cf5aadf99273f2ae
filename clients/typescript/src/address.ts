// Where the daemon is: the address given, else $DUKAT_ADDRESS, else the socket dukatd listens
// on by default (dukat/defaults.py default_address: dukatd.sock in $RUNTIME_DIRECTORY, else
// $XDG_RUNTIME_DIR, else the private /tmp/dukatd-$UID/). A unix socket is always written
// `unix:/path`; a bare path is refused with that spelling (unix_spelling there), since grpc
// would look it up as a host name and fail only once the reconnect policy gave up.
import { statSync } from "node:fs";
import { homedir } from "node:os";
import { isAbsolute } from "node:path";

export const SOCKET_NAME = "dukatd.sock";

// Schemes of grpc's target names (and the `unix:` of dukatd's --listen): an address with one of
// them says what it is.
const SCHEMES = ["unix:", "unix-abstract:", "dns:", "ipv4:", "ipv6:", "vsock:"];

/** `address`, else $DUKAT_ADDRESS, else the daemon's default socket; checked. */
export function resolveAddress(
  address: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): string {
  if (address !== undefined) return checkAddress(address);
  const fromEnvironment = env["DUKAT_ADDRESS"];
  if (fromEnvironment) return checkAddress(fromEnvironment, "DUKAT_ADDRESS");
  return defaultAddress(env);
}

/** `address` if it can name a daemon; else a TypeError saying how to write it. `where` names
 * the setting in the message. */
export function checkAddress(address: string, where = "address"): string {
  if (typeof address !== "string" || !address.trim()) {
    throw new TypeError(
      `${where} must name a daemon, like 'unix:/run/dukatd/dukatd.sock' or 'localhost:7070', ` +
        `not ${JSON.stringify(address)}`,
    );
  }
  const unix = unixSpelling(address);
  if (unix !== undefined) {
    throw new TypeError(
      `${where} '${address}' is a unix socket's path without its scheme, which grpc would ` +
        `look up as a host name: write '${unix}'`,
    );
  }
  return address;
}

/** `unix:PATH` when `address` is a unix socket's path written without its scheme: it names a
 * socket file, or looks like a path (it starts with `/`, `./`, `../` or `~/`, or ends in
 * `.sock`); else undefined. */
export function unixSpelling(address: string): string | undefined {
  const text = address.trim();
  if (!text || SCHEMES.some((scheme) => text.startsWith(scheme))) return undefined;
  const path = text.startsWith("~/") ? `${homedir()}${text.slice(1)}` : text;
  const looksLikeAPath =
    ["/", "./", "../", "~/"].some((start) => text.startsWith(start)) || text.endsWith(".sock");
  return looksLikeAPath || isSocket(path) ? `unix:${path}` : undefined;
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

function isSocket(path: string): boolean {
  try {
    return statSync(path).isSocket();
  } catch {
    return false; // no such file; a name with a NUL
  }
}
