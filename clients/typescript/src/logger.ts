// Where the client says what it does not throw: a stream it lost and is reconnecting, an outcome
// a breaker could not be told. Give `connect` a logger of your own (pino, winston and console fit).

/** The levels the client uses; `info` and `debug` are optional. */
export interface Logger {
  warn(message: string): void;
  info?(message: string): void;
  debug?(message: string): void;
}

/** The default: warnings to console.warn, the rest nowhere. */
export const consoleLogger: Logger = {
  warn: (message) => console.warn(`dukat: ${message}`),
};
