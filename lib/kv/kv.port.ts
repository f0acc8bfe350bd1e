/**
 * Key-value port with TTL, for idempotency records, rate-limit buckets and caches.
 * Every operation is atomic on its key. TTLs are in milliseconds; a key past its TTL is absent.
 * Proven by test/conformance/kv.conformance.spec.ts for every adapter.
 */
export interface KeyValueStore {
  readonly kind: "redis" | "memory";
  open(): Promise<void>;
  get(key: string): Promise<string | null>;
  /** Set unconditionally; `ttlMs` omitted → no expiry. */
  set(key: string, value: string, ttlMs?: number): Promise<void>;
  /** Set only when absent; true when this call set it. */
  setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean>;
  /**
   * Replace the value only when it currently equals `expected` (`null` = absent); true when
   * replaced. `ttlMs` omitted → the key keeps its remaining TTL.
   */
  compareAndSet(key: string, expected: string | null, value: string, ttlMs?: number): Promise<boolean>;
  /** Delete only when the value equals `expected` (when given); true when deleted. */
  delete(key: string, expected?: string): Promise<boolean>;
  /** Add `by` (integer, default 1); a new key starts at 0 and gets `ttlMs`; an existing key keeps its TTL. */
  increment(key: string, by?: number, ttlMs?: number): Promise<number>;
  /** Remaining TTL in ms; null when the key is absent; -1 when it has none. */
  ttl(key: string): Promise<number | null>;
  /**
   * Token bucket: take `cost` tokens from a bucket of `capacity` refilled at `refillPerSecond`.
   * Returns whether allowed, tokens left, and ms until `cost` tokens are available again.
   */
  takeTokens(
    key: string,
    capacity: number,
    refillPerSecond: number,
    cost?: number,
  ): Promise<{ allowed: boolean; remaining: number; retryAfterMs: number }>;
  ping(): Promise<void>;
  close(): Promise<void>;
}
