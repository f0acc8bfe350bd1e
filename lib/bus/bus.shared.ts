/** What both event-bus adapters share: subscription defaults and validation, subject matching, logger. */
import { OrdermeshError, PublishFailedError } from "../errors";
import type { OutgoingMessage, SubscriptionOptions } from "./bus.port";

/** The subset of a Moleculer / pino / console logger the adapters use. */
export interface BusLogger {
  info(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
}

/** Drops everything; the default when no logger is given. */
export const silentLogger: BusLogger = { info: () => {}, warn: () => {}, error: () => {} };

/** Defaults of `SubscriptionOptions` (see bus.port.ts). */
export const SUBSCRIPTION_DEFAULTS = {
  maxDeliver: 5,
  ackWaitMs: 30_000,
  maxInFlight: 64,
  nakDelayMs: 1_000,
} as const;

/** How long `Subscription.stop()` waits for running handlers when no timeout is given. */
export const DEFAULT_STOP_TIMEOUT_MS = 10_000;

/** Window in which a second publish with the same id is a duplicate (JetStream's default too). */
export const DEFAULT_DUPLICATE_WINDOW_MS = 120_000;

export type ResolvedSubscriptionOptions = Required<SubscriptionOptions>;

/** A subscription was asked for something that cannot work (bad name, subject or limits). */
export class InvalidSubscriptionError extends OrdermeshError {
  constructor(message: string, data?: Record<string, unknown>) {
    super("INVALID_SUBSCRIPTION", message, { data });
  }
}

/** Fill in defaults and reject values that neither adapter can honour. */
export function resolveSubscriptionOptions(options: SubscriptionOptions): ResolvedSubscriptionOptions {
  const resolved: ResolvedSubscriptionOptions = {
    durable: options.durable,
    subject: options.subject,
    maxDeliver: options.maxDeliver ?? SUBSCRIPTION_DEFAULTS.maxDeliver,
    ackWaitMs: options.ackWaitMs ?? SUBSCRIPTION_DEFAULTS.ackWaitMs,
    maxInFlight: options.maxInFlight ?? SUBSCRIPTION_DEFAULTS.maxInFlight,
    nakDelayMs: options.nakDelayMs ?? SUBSCRIPTION_DEFAULTS.nakDelayMs,
  };
  // JetStream durable names may not contain subject separators, wildcards or whitespace
  if (!/^[A-Za-z0-9_-]+$/.test(resolved.durable)) {
    throw new InvalidSubscriptionError(`durable name "${resolved.durable}" must match [A-Za-z0-9_-]+`, {
      durable: resolved.durable,
    });
  }
  if (!isValidSubject(resolved.subject, true)) {
    throw new InvalidSubscriptionError(`subject filter "${resolved.subject}" is not a valid subject`, {
      subject: resolved.subject,
    });
  }
  for (const key of ["maxDeliver", "ackWaitMs", "maxInFlight"] as const) {
    if (!Number.isInteger(resolved[key]) || resolved[key] < 1) {
      throw new InvalidSubscriptionError(`${key} must be a positive integer`, { [key]: resolved[key] });
    }
  }
  if (!Number.isInteger(resolved.nakDelayMs) || resolved.nakDelayMs < 0) {
    throw new InvalidSubscriptionError("nakDelayMs must be a non-negative integer", {
      nakDelayMs: resolved.nakDelayMs,
    });
  }
  return resolved;
}

/**
 * NATS subject syntax: dot-separated non-empty tokens without whitespace; with `wildcards`,
 * a token may be `*` (one token) and the last token may be `>` (one or more tokens).
 */
export function isValidSubject(subject: string, wildcards: boolean): boolean {
  if (subject.length === 0) return false;
  const tokens = subject.split(".");
  return tokens.every((token, i) => {
    if (token.length === 0 || /\s/.test(token)) return false;
    if (token === "*") return wildcards;
    if (token === ">") return wildcards && i === tokens.length - 1;
    return !token.includes("*") && !token.includes(">");
  });
}

/** Why `message` cannot be published (no id, or not a concrete subject), or undefined. */
export function invalidMessage(message: OutgoingMessage): PublishFailedError | undefined {
  if (typeof message.id !== "string" || message.id.length === 0) {
    return new PublishFailedError("a message needs a non-empty id", { subject: message.subject });
  }
  if (!isValidSubject(message.subject, false)) {
    return new PublishFailedError(`cannot publish to subject "${message.subject}"`, {
      id: message.id,
      subject: message.subject,
    });
  }
  return undefined;
}

/** A compiled subject filter: `matches("events.order.created")` for `events.order.>` is true. */
export function subjectFilter(filter: string): (subject: string) => boolean {
  const parts = filter.split(".");
  if (!parts.includes("*") && !parts.includes(">")) return (subject) => subject === filter;
  return (subject) => {
    const tokens = subject.split(".");
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i];
      if (part === ">") return tokens.length > i;
      if (i >= tokens.length) return false;
      if (part !== "*" && part !== tokens[i]) return false;
    }
    return parts.length === tokens.length;
  };
}

/** A promise with its settle functions exposed. */
export interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(reason: unknown): void;
}

export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Human-readable text of anything thrown. */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
