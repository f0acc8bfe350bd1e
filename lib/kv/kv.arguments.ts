/**
 * Argument checks and token-bucket arithmetic shared by every key-value adapter, so both reject
 * the same calls and answer the same numbers. A bad argument is a caller bug: `RangeError`.
 */

/** `ttlMs` must be a positive whole number of milliseconds. */
export function checkTtl(ttlMs: number): void {
  if (!Number.isSafeInteger(ttlMs) || ttlMs <= 0) {
    throw new RangeError(`ttlMs must be a positive integer, got ${ttlMs}`);
  }
}

/** `by` must be a whole number (negative allowed). */
export function checkIncrement(by: number): void {
  if (!Number.isSafeInteger(by)) throw new RangeError(`increment must be an integer, got ${by}`);
}

/** Capacity and cost are whole tokens, cost at most the capacity; the refill rate is any positive number. */
export function checkBucket(capacity: number, refillPerSecond: number, cost: number): void {
  if (!Number.isSafeInteger(capacity) || capacity <= 0) {
    throw new RangeError(`capacity must be a positive integer, got ${capacity}`);
  }
  if (!Number.isFinite(refillPerSecond) || refillPerSecond <= 0) {
    throw new RangeError(`refillPerSecond must be a positive number, got ${refillPerSecond}`);
  }
  if (!Number.isSafeInteger(cost) || cost <= 0 || cost > capacity) {
    throw new RangeError(`cost must be an integer between 1 and capacity (${capacity}), got ${cost}`);
  }
}

/**
 * Tolerance for token counts computed from elapsed time, so that e.g. 0.1/s × 10 s counts as a
 * whole token. The Redis script uses the same value.
 */
export const TOKEN_EPSILON = 1e-9;

/** Milliseconds an empty bucket takes to fill up; a bucket key expires after this long untouched. */
export function fullRefillMs(capacity: number, refillPerSecond: number): number {
  return Math.ceil((capacity * 1000) / refillPerSecond);
}

/** The outcome of one take from a bucket holding `tokens` (already refilled to now). */
export function takeFromBucket(
  tokens: number,
  refillPerSecond: number,
  cost: number,
): { allowed: boolean; tokensLeft: number; remaining: number; retryAfterMs: number } {
  const allowed = tokens + TOKEN_EPSILON >= cost;
  const tokensLeft = allowed ? Math.max(0, tokens - cost) : tokens;
  const deficit = cost - tokensLeft;
  // the first whole millisecond at which the admission test above passes
  const retryAfterMs =
    deficit > TOKEN_EPSILON ? Math.ceil(((deficit - TOKEN_EPSILON) * 1000) / refillPerSecond) : 0;
  return { allowed, tokensLeft, remaining: Math.floor(tokensLeft + TOKEN_EPSILON), retryAfterMs };
}
