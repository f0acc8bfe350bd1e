/**
 * Picks the key-value adapter from configuration: Redis when a URL is given, memory otherwise.
 */
import { ConfigError } from "../errors";
import type { KeyValueStore } from "./kv.port";
import { MemoryKeyValueStore } from "./memory.adapter";
import { RedisKeyValueStore } from "./redis.adapter";

export type { KeyValueStore } from "./kv.port";
export { MemoryKeyValueStore } from "./memory.adapter";
export { RedisKeyValueStore } from "./redis.adapter";

/** `redisUrl` (from `REDIS_URL`; empty counts as unset) → Redis, else memory. Not opened yet. */
export function createKeyValueStore(config: { redisUrl?: string }): KeyValueStore {
  const url = config.redisUrl;
  if (url === undefined || url === "") return new MemoryKeyValueStore();
  let protocol: string;
  try {
    protocol = new URL(url).protocol;
  } catch {
    throw new ConfigError("REDIS_URL", `not a URL: ${JSON.stringify(url)}`);
  }
  if (protocol !== "redis:" && protocol !== "rediss:") {
    throw new ConfigError("REDIS_URL", `expected redis:// or rediss://, got ${protocol}//`);
  }
  return new RedisKeyValueStore({ url });
}
