/**
 * Key-value store in process memory, for embedded mode and tests. Single-threaded JavaScript makes
 * every operation atomic; expired keys vanish on read and in a periodic sweep.
 * Mirrors the Redis adapter's semantics, including the type of value a key holds.
 */
import { AdapterClosedError, InvalidDocumentError } from "../errors";
import { checkBucket, checkIncrement, checkTtl, fullRefillMs, takeFromBucket } from "./kv.arguments";
import type { KeyValueStore } from "./kv.port";

export interface MemoryKeyValueStoreOptions {
  /** Clock in epoch milliseconds; default `Date.now`. Tests inject their own. */
  now?: () => number;
  /** How often expired keys are swept without being read; default 1000 ms. */
  sweepIntervalMs?: number;
}

interface Bucket {
  tokens: number;
  refilledAt: number;
}

interface Entry {
  value: string | Bucket;
  /** Epoch ms at which the key is gone; null = no expiry. */
  expiresAt: number | null;
}

const INTEGER = /^-?(0|[1-9][0-9]*)$/;

/** In-memory `KeyValueStore`. */
export class MemoryKeyValueStore implements KeyValueStore {
  readonly kind = "memory" as const;
  private readonly entries = new Map<string, Entry>();
  private readonly now: () => number;
  private readonly sweepIntervalMs: number;
  private sweeper: NodeJS.Timeout | null = null;
  private opened = false;

  constructor(options: MemoryKeyValueStoreOptions = {}) {
    this.now = options.now ?? Date.now;
    this.sweepIntervalMs = options.sweepIntervalMs ?? 1000;
  }

  /** Keys held right now, including expired ones not yet swept. */
  get size(): number {
    return this.entries.size;
  }

  async open(): Promise<void> {
    if (this.opened) return;
    this.opened = true;
    this.sweeper = setInterval(() => this.sweep(), this.sweepIntervalMs);
    this.sweeper.unref();
  }

  async get(key: string): Promise<string | null> {
    this.checkOpen();
    const entry = this.live(key);
    return entry === undefined ? null : this.stringOf(key, entry, "get");
  }

  async set(key: string, value: string, ttlMs?: number): Promise<void> {
    this.checkOpen();
    if (ttlMs !== undefined) checkTtl(ttlMs);
    // like Redis SET: replaces any value and any TTL
    this.entries.set(key, { value, expiresAt: this.expiry(ttlMs) });
  }

  async setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean> {
    this.checkOpen();
    checkTtl(ttlMs);
    if (this.live(key) !== undefined) return false;
    this.entries.set(key, { value, expiresAt: this.expiry(ttlMs) });
    return true;
  }

  async compareAndSet(key: string, expected: string | null, value: string, ttlMs?: number): Promise<boolean> {
    this.checkOpen();
    if (ttlMs !== undefined) checkTtl(ttlMs);
    const entry = this.live(key);
    const current = entry === undefined ? null : this.stringOf(key, entry, "compareAndSet");
    if (current !== expected) return false;
    const expiresAt = ttlMs === undefined ? (entry?.expiresAt ?? null) : this.expiry(ttlMs);
    this.entries.set(key, { value, expiresAt });
    return true;
  }

  async delete(key: string, expected?: string): Promise<boolean> {
    this.checkOpen();
    const entry = this.live(key);
    if (entry === undefined) return false;
    if (expected !== undefined && this.stringOf(key, entry, "delete") !== expected) return false;
    this.entries.delete(key);
    return true;
  }

  async increment(key: string, by = 1, ttlMs?: number): Promise<number> {
    this.checkOpen();
    checkIncrement(by);
    if (ttlMs !== undefined) checkTtl(ttlMs);
    const entry = this.live(key);
    if (entry === undefined) {
      this.entries.set(key, { value: String(by), expiresAt: this.expiry(ttlMs) });
      return by;
    }
    const current = this.stringOf(key, entry, "increment");
    const number = INTEGER.test(current) ? Number(current) : NaN;
    if (!Number.isSafeInteger(number)) {
      throw new InvalidDocumentError(`increment: the value at "${key}" is not an integer`, { key });
    }
    const next = number + by;
    if (!Number.isSafeInteger(next)) {
      throw new InvalidDocumentError(`increment: the value at "${key}" would overflow`, { key });
    }
    entry.value = String(next);
    return next;
  }

  async ttl(key: string): Promise<number | null> {
    this.checkOpen();
    const entry = this.live(key);
    if (entry === undefined) return null;
    return entry.expiresAt === null ? -1 : entry.expiresAt - this.now();
  }

  async takeTokens(
    key: string,
    capacity: number,
    refillPerSecond: number,
    cost = 1,
  ): Promise<{ allowed: boolean; remaining: number; retryAfterMs: number }> {
    this.checkOpen();
    checkBucket(capacity, refillPerSecond, cost);
    const now = this.now();
    const held = this.live(key)?.value;
    if (typeof held === "string") {
      throw new InvalidDocumentError(`takeTokens: "${key}" holds a string, not a token bucket`, { key });
    }
    // an absent bucket is a full one
    const bucket = held ?? { tokens: capacity, refilledAt: now };
    const elapsedMs = Math.max(0, now - bucket.refilledAt);
    const tokens = Math.min(capacity, bucket.tokens + (elapsedMs * refillPerSecond) / 1000);
    const outcome = takeFromBucket(tokens, refillPerSecond, cost);
    this.entries.set(key, {
      value: { tokens: outcome.tokensLeft, refilledAt: now },
      // untouched for a full refill, the bucket is full again: the same as absent
      expiresAt: now + fullRefillMs(capacity, refillPerSecond),
    });
    return { allowed: outcome.allowed, remaining: outcome.remaining, retryAfterMs: outcome.retryAfterMs };
  }

  async ping(): Promise<void> {
    this.checkOpen();
  }

  async close(): Promise<void> {
    this.opened = false;
    if (this.sweeper !== null) {
      clearInterval(this.sweeper);
      this.sweeper = null;
    }
  }

  private checkOpen(): void {
    if (!this.opened) throw new AdapterClosedError("memory key-value store");
  }

  private expiry(ttlMs: number | undefined): number | null {
    return ttlMs === undefined ? null : this.now() + ttlMs;
  }

  /** The entry unless absent or expired (an expired one is dropped on the way). */
  private live(key: string): Entry | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt !== null && entry.expiresAt <= this.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return entry;
  }

  private stringOf(key: string, entry: Entry, operation: string): string {
    if (typeof entry.value !== "string") {
      throw new InvalidDocumentError(`${operation}: "${key}" holds a token bucket, not a string`, { key });
    }
    return entry.value;
  }

  private sweep(): void {
    const now = this.now();
    for (const [key, entry] of this.entries) {
      if (entry.expiresAt !== null && entry.expiresAt <= now) this.entries.delete(key);
    }
  }
}
