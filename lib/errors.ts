/**
 * Infrastructure errors shared by every adapter, and the HTTP status of each domain refusal. Each
 * error carries a stable string `code` so callers branch on `code`/`type` (which survive a process
 * boundary), never on `instanceof` (docs/architecture.md, "Errors"). Imports nothing, so that the
 * command line can use it without loading Moleculer.
 */

/** Base of every ordermesh infrastructure error. */
export class OrdermeshError extends Error {
  readonly code: string;
  readonly retryable: boolean;
  readonly data: Record<string, unknown> | undefined;

  constructor(
    code: string,
    message: string,
    options: { retryable?: boolean; data?: Record<string, unknown>; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.data = options.data;
  }

  /** Moleculer's error fields, so the broker and the gateway can map it. */
  get type(): string {
    return this.code;
  }
}

/** A write would break a unique index. Same error from every store adapter. */
export class DuplicateKeyError extends OrdermeshError {
  constructor(
    readonly collection: string,
    readonly index: string,
    readonly keyValue: Record<string, unknown>,
    cause?: unknown,
  ) {
    super("DUPLICATE_KEY", `duplicate key in ${collection} (index ${index}): ${JSON.stringify(keyValue)}`, {
      data: { collection, index, keyValue },
      cause,
    });
  }
}

/** A transaction kept conflicting with concurrent ones and ran out of retries (or time). */
export class TransactionConflictError extends OrdermeshError {
  constructor(message: string, data?: Record<string, unknown>, cause?: unknown) {
    super("TRANSACTION_CONFLICT", message, { retryable: true, data, cause });
  }
}

/** A filter, update, sort or projection uses something outside the documented subset. */
export class UnsupportedQueryError extends OrdermeshError {
  constructor(message: string, data?: Record<string, unknown>) {
    super("UNSUPPORTED_QUERY", message, { data });
  }
}

/** An update or document is malformed (e.g. `$inc` on a string, a document without `_id` type string). */
export class InvalidDocumentError extends OrdermeshError {
  constructor(message: string, data?: Record<string, unknown>) {
    super("INVALID_DOCUMENT", message, { data });
  }
}

/** The adapter was used after `close()` or before it was opened. */
export class AdapterClosedError extends OrdermeshError {
  constructor(what: string) {
    super("ADAPTER_CLOSED", `${what} is closed`, { retryable: true });
  }
}

/** A publish was not acknowledged by the bus; the caller must treat the message as not sent. */
export class PublishFailedError extends OrdermeshError {
  constructor(message: string, data?: Record<string, unknown>, cause?: unknown) {
    super("PUBLISH_FAILED", message, { retryable: true, data, cause });
  }
}

/** A dependency (store, bus, key-value) could not be reached. */
export class UnavailableError extends OrdermeshError {
  constructor(message: string, data?: Record<string, unknown>, cause?: unknown) {
    super("UNAVAILABLE", message, { retryable: true, data, cause });
  }
}

/** Configuration that cannot work; names the variable. */
export class ConfigError extends OrdermeshError {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super("INVALID_CONFIG", `${variable}: ${message}`, { data: { variable } });
  }
}

/** An event that does not fit the catalog (unknown type or version, payload off its schema). */
export class InvalidEventError extends OrdermeshError {
  constructor(message: string, data?: Record<string, unknown>) {
    super("INVALID_EVENT", message, { data });
  }
}

/**
 * Thrown by an event handler when retrying cannot help (the event contradicts the state it meets):
 * the message is dead-lettered at once instead of being redelivered.
 */
export class PermanentError extends OrdermeshError {
  constructor(message: string, data?: Record<string, unknown>, cause?: unknown) {
    super("PERMANENT_FAILURE", message, { data, cause });
  }
}

/** A circuit breaker is open (or its half-open probe is taken): the call was not attempted. */
export class BreakerOpenError extends OrdermeshError {
  constructor(breaker: string) {
    super("BREAKER_OPEN", `${breaker} is unavailable: circuit breaker open`, {
      retryable: true,
      data: { breaker },
    });
  }
}

/** A guarded call took longer than its breaker's timeout; its outcome is unknown. */
export class CallTimeoutError extends OrdermeshError {
  constructor(breaker: string, timeoutMs: number) {
    super("CALL_TIMEOUT", `${breaker} did not answer within ${timeoutMs} ms`, {
      retryable: true,
      data: { breaker, timeoutMs },
    });
  }
}

/** A 4xx status a domain refusal answers with. */
export type RefusalStatus = 404 | 409 | 422;

/**
 * The HTTP status of each refusal the domain model raises (`OrderError`, `InventoryError`, … in
 * models/), by its stable `code`. A code of the form `ILLEGAL_<AGGREGATE>_TRANSITION` that is not
 * listed is a 409 too: the aggregate's current state does not allow the move. The mapping itself
 * is `asClientError` (lib/http/error-response.ts).
 */
export const DOMAIN_REFUSALS: Readonly<Record<string, RefusalStatus>> = {
  /** The order's state does not allow the move (cancelling a delivered order, say). */
  ILLEGAL_ORDER_TRANSITION: 409,
  /** The reservation's state does not allow the move. */
  ILLEGAL_RESERVATION_TRANSITION: 409,
  /** An order that breaks its own rules (lines, quantities, one currency). */
  INVALID_ORDER: 422,
  /** A reservation that breaks its rules (lines, SKUs, quantities). */
  INVALID_RESERVATION: 422,
  /** A stock move of a quantity that is not a positive safe integer within the limits. */
  INVALID_QUANTITY: 422,
  /** A reservation names a SKU the catalog does not have. */
  UNKNOWN_SKU: 422,
  /** Not enough units available for every line of a reservation. */
  OUT_OF_STOCK: 409,
  /** The same order id was reserved before with other lines. */
  RESERVATION_MISMATCH: 409,
  /** The reservation was released already (expired or cancelled). */
  RESERVATION_RELEASED: 409,
  /** The reservation's units were sold already. */
  RESERVATION_COMMITTED: 409,
};

const ILLEGAL_TRANSITION = /^ILLEGAL_[A-Z][A-Z0-9_]*_TRANSITION$/;

/** The status of a domain refusal's `code`, or undefined when the code is not a domain refusal. */
export function refusalStatusOf(code: unknown): RefusalStatus | undefined {
  if (typeof code !== "string") return undefined;
  if (Object.hasOwn(DOMAIN_REFUSALS, code)) return DOMAIN_REFUSALS[code];
  return ILLEGAL_TRANSITION.test(code) ? 409 : undefined;
}

/**
 * An error as text for a log that must say why: its stack (which starts with its message), then
 * the causes it wraps (an adapter's UnavailableError carries the driver's error as its cause).
 */
export function failureText(err: unknown): string {
  const parts: string[] = [];
  let current: unknown = err;
  for (let depth = 0; depth < 5 && current !== undefined && current !== null; depth++) {
    const text =
      current instanceof Error ? (current.stack ?? `${current.name}: ${current.message}`) : String(current);
    parts.push(depth === 0 ? text : `caused by: ${text}`);
    current = current instanceof Error ? current.cause : undefined;
  }
  return parts.join("\n");
}
