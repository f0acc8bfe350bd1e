/**
 * Key-value store on Redis through ioredis. Conditional operations run as Lua scripts, so each is
 * atomic on the server; token buckets use the server's clock. While Redis is unreachable every call
 * fails fast with `UnavailableError` (no offline queue) and the client reconnects in the background.
 * See docs/adr/0005-key-value-port.md.
 */
import { Redis } from "ioredis";
import { AdapterClosedError, InvalidDocumentError, OrdermeshError, UnavailableError } from "../errors";
import { checkBucket, checkIncrement, checkTtl, fullRefillMs, TOKEN_EPSILON } from "./kv.arguments";
import type { KeyValueStore } from "./kv.port";

export interface RedisKeyValueStoreOptions {
  /** `redis://[[user]:password@]host[:port][/db]` or `rediss://…` */
  url: string;
  /** Prepended to every key; default `ordermesh:`. */
  keyPrefix?: string;
  /** Limit for `open()` to reach a ready server; default 5000 ms. */
  connectTimeoutMs?: number;
  /** Limit for any single command, `ping()` included; default 1000 ms. */
  commandTimeoutMs?: number;
}

// KEYS[1] key · ARGV: expectAbsent ("1"/"0"), expected, value, ttlMs ("" = keep the TTL)
const COMPARE_AND_SET = `
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if current then return 0 end
elseif current ~= ARGV[2] then
  return 0
end
if ARGV[4] == '' then
  redis.call('SET', KEYS[1], ARGV[3], 'KEEPTTL')
else
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
end
return 1
`;

// KEYS[1] key · ARGV: expected
const DELETE_IF_EQUAL = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`;

// KEYS[1] key · ARGV: by, ttlMs ("" = none); the TTL is set only when this call creates the key
const INCREMENT = `
local existed = redis.call('EXISTS', KEYS[1])
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if existed == 0 and ARGV[2] ~= '' then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return value
`;

// KEYS[1] bucket hash {tokens, ts} · ARGV: capacity, refillPerSecond, cost, fullRefillMs, epsilon.
// Time comes from the server so that clients with skewed clocks agree; same arithmetic as kv.arguments.ts.
const TAKE_TOKENS = `
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local epsilon = tonumber(ARGV[5])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local refilledAt = tonumber(state[2])
if tokens == nil or refilledAt == nil then
  tokens = capacity
  refilledAt = now
end
local elapsed = math.max(0, now - refilledAt)
tokens = math.min(capacity, tokens + elapsed * rate / 1000)
local allowed = 0
if tokens + epsilon >= cost then
  allowed = 1
  tokens = math.max(0, tokens - cost)
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local retryAfter = 0
local deficit = cost - tokens
if deficit > epsilon then retryAfter = math.ceil((deficit - epsilon) * 1000 / rate) end
return { allowed, math.floor(tokens + epsilon), retryAfter }
`;

/** The scripts above, as ioredis registers them on the client (EVALSHA, EVAL on NOSCRIPT). */
interface KvScripts {
  kvCompareAndSet(
    key: string,
    expectAbsent: string,
    expected: string,
    value: string,
    ttlMs: string,
  ): Promise<number>;
  kvDeleteIfEqual(key: string, expected: string): Promise<number>;
  kvIncrement(key: string, by: string, ttlMs: string): Promise<number>;
  kvTakeTokens(
    key: string,
    capacity: string,
    refillPerSecond: string,
    cost: string,
    fullRefillMs: string,
    epsilon: string,
  ): Promise<[number, number, number]>;
}

type ScriptedRedis = Redis & KvScripts;

/** Reply errors that mean "Redis cannot serve right now" rather than "this call is wrong". */
const TRANSIENT_REPLY = /^(LOADING|BUSY|MASTERDOWN|TRYAGAIN|READONLY|CLUSTERDOWN)\b/;

/** The URL without credentials, for messages and error data. */
function redact(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== "" || parsed.username !== "") {
      parsed.username = "";
      parsed.password = "";
    }
    return parsed.toString();
  } catch {
    return "(unparseable Redis URL)";
  }
}

/** `KeyValueStore` on Redis. */
export class RedisKeyValueStore implements KeyValueStore {
  readonly kind = "redis" as const;
  private readonly url: string;
  private readonly safeUrl: string;
  private readonly keyPrefix: string;
  private readonly connectTimeoutMs: number;
  private readonly commandTimeoutMs: number;
  private client: ScriptedRedis | null = null;
  private opening: Promise<void> | null = null;
  private lastConnectionError: Error | undefined;

  constructor(options: RedisKeyValueStoreOptions) {
    this.url = options.url;
    this.safeUrl = redact(options.url);
    this.keyPrefix = options.keyPrefix ?? "ordermesh:";
    this.connectTimeoutMs = options.connectTimeoutMs ?? 5000;
    this.commandTimeoutMs = options.commandTimeoutMs ?? 1000;
  }

  async open(): Promise<void> {
    if (this.client !== null) return;
    // concurrent callers share one connection attempt
    this.opening ??= this.connect().finally(() => {
      this.opening = null;
    });
    return this.opening;
  }

  private async connect(): Promise<void> {
    this.lastConnectionError = undefined;
    const client = new Redis(this.url, {
      lazyConnect: true,
      keyPrefix: this.keyPrefix,
      connectTimeout: this.connectTimeoutMs,
      commandTimeout: this.commandTimeoutMs,
      // fail fast while disconnected: no queueing, and in-flight commands are rejected on the first
      // disconnect rather than resent (a resent INCRBY could count twice)
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      // keep reconnecting in the background, at most a second apart
      retryStrategy: (attempt) => Math.min(attempt * 100, 1000),
      // disconnect() arms this timer even when the socket is already dead; the 2 s default would
      // hold the process open that long after close()
      disconnectTimeout: 200,
      scripts: {
        kvCompareAndSet: { numberOfKeys: 1, lua: COMPARE_AND_SET },
        kvDeleteIfEqual: { numberOfKeys: 1, lua: DELETE_IF_EQUAL },
        kvIncrement: { numberOfKeys: 1, lua: INCREMENT },
        kvTakeTokens: { numberOfKeys: 1, lua: TAKE_TOKENS },
      },
    }) as ScriptedRedis;
    // Connection errors also surface on the calls they break; the listener keeps the latest as a
    // cause and stops ioredis from printing every reconnect attempt.
    client.on("error", (error: Error) => {
      this.lastConnectionError = error;
    });
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        client.connect(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`not ready within ${this.connectTimeoutMs} ms`)),
            this.connectTimeoutMs,
          );
        }),
      ]);
    } catch (error) {
      client.disconnect();
      const cause = this.lastConnectionError ?? error;
      const reason = cause instanceof Error ? cause.message : String(cause);
      throw new UnavailableError(
        `cannot connect to Redis at ${this.safeUrl}: ${reason}`,
        { url: this.safeUrl },
        cause,
      );
    } finally {
      clearTimeout(timer);
    }
    this.client = client;
  }

  async get(key: string): Promise<string | null> {
    return this.run("get", key, (redis) => redis.get(key));
  }

  async set(key: string, value: string, ttlMs?: number): Promise<void> {
    if (ttlMs !== undefined) checkTtl(ttlMs);
    await this.run("set", key, (redis) =>
      ttlMs === undefined ? redis.set(key, value) : redis.set(key, value, "PX", ttlMs),
    );
  }

  async setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean> {
    checkTtl(ttlMs);
    const reply = await this.run("setIfAbsent", key, (redis) => redis.set(key, value, "PX", ttlMs, "NX"));
    return reply === "OK";
  }

  async compareAndSet(key: string, expected: string | null, value: string, ttlMs?: number): Promise<boolean> {
    if (ttlMs !== undefined) checkTtl(ttlMs);
    const replaced = await this.run("compareAndSet", key, (redis) =>
      redis.kvCompareAndSet(
        key,
        expected === null ? "1" : "0",
        expected ?? "",
        value,
        ttlMs === undefined ? "" : String(ttlMs),
      ),
    );
    return replaced === 1;
  }

  async delete(key: string, expected?: string): Promise<boolean> {
    const deleted = await this.run("delete", key, (redis) =>
      expected === undefined ? redis.del(key) : redis.kvDeleteIfEqual(key, expected),
    );
    return deleted === 1;
  }

  async increment(key: string, by = 1, ttlMs?: number): Promise<number> {
    checkIncrement(by);
    if (ttlMs !== undefined) checkTtl(ttlMs);
    return this.run("increment", key, (redis) =>
      redis.kvIncrement(key, String(by), ttlMs === undefined ? "" : String(ttlMs)),
    );
  }

  async ttl(key: string): Promise<number | null> {
    const ms = await this.run("ttl", key, (redis) => redis.pttl(key));
    // PTTL: -2 absent, -1 no expiry
    return ms === -2 ? null : ms;
  }

  async takeTokens(
    key: string,
    capacity: number,
    refillPerSecond: number,
    cost = 1,
  ): Promise<{ allowed: boolean; remaining: number; retryAfterMs: number }> {
    checkBucket(capacity, refillPerSecond, cost);
    const [allowed, remaining, retryAfterMs] = await this.run("takeTokens", key, (redis) =>
      redis.kvTakeTokens(
        key,
        String(capacity),
        String(refillPerSecond),
        String(cost),
        String(fullRefillMs(capacity, refillPerSecond)),
        String(TOKEN_EPSILON),
      ),
    );
    return { allowed: allowed === 1, remaining, retryAfterMs };
  }

  async ping(): Promise<void> {
    await this.run("ping", null, (redis) => redis.ping());
  }

  async close(): Promise<void> {
    const client = this.client;
    if (client === null) return;
    this.client = null;
    try {
      await client.quit();
    } catch {
      // Redis is down or hung: QUIT cannot be sent, so drop the socket and the reconnect timer
      client.disconnect();
    }
  }

  /** Runs one command, translating client and reply errors into the port's typed errors. */
  private async run<T>(
    operation: string,
    key: string | null,
    command: (redis: ScriptedRedis) => Promise<T>,
  ): Promise<T> {
    const client = this.client;
    if (client === null) throw new AdapterClosedError("redis key-value store");
    try {
      return await command(client);
    } catch (error) {
      throw this.translate(error, operation, key);
    }
  }

  private translate(error: unknown, operation: string, key: string | null): Error {
    if (error instanceof OrdermeshError) return error;
    if (!(error instanceof Error)) return new Error(String(error));
    if (error.name === "ReplyError") {
      if (error.message.startsWith("WRONGTYPE")) {
        return new InvalidDocumentError(`${operation}: "${key}" holds another kind of value`, { key });
      }
      if (error.message.includes("not an integer or out of range") || error.message.includes("overflow")) {
        return new InvalidDocumentError(`${operation}: the value at "${key}" is not an integer`, { key });
      }
      if (TRANSIENT_REPLY.test(error.message)) return this.unavailable(operation, error);
      return error;
    }
    // our own bugs stay what they are
    if (error instanceof TypeError || error instanceof RangeError || error instanceof ReferenceError)
      return error;
    // connection closed, not writable, command timed out, aborted on disconnect
    return this.unavailable(operation, error);
  }

  private unavailable(operation: string, cause: Error): UnavailableError {
    return new UnavailableError(
      `Redis at ${this.safeUrl} did not complete ${operation}: ${cause.message}`,
      { url: this.safeUrl, operation },
      cause,
    );
  }
}
