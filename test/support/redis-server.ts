/**
 * A `redis-server` of the test's own on a free port. Guard suites with `redisServerBinary.describe`:
 * it skips loudly when the binary is missing (fails under CI=true).
 */
import { startRedisProcess } from "../../lib/local-servers/redis-process";
import { requireBinary } from "./infra";

export const redisServerBinary = requireBinary("redis-server", "apt-get install redis-server");

export interface RedisServer {
  url: string;
  port: number;
  /** Shuts down and removes the temp dir. */
  stop(): Promise<void>;
  /** SIGKILL; `restart()` brings it back on the same port. */
  kill(): Promise<void>;
  /** Starts again on the same port (empty) and waits until it answers. */
  restart(): Promise<void>;
  /** SIGSTOP: connections stay open, nothing answers. */
  pause(): void;
  /** SIGCONT after `pause()`. */
  resume(): void;
}

export async function startRedisServer(): Promise<RedisServer> {
  const binary = redisServerBinary.path;
  if (binary === null)
    throw new Error("redis-server is not available: guard the suite with redisServerBinary.describe");
  const server = await startRedisProcess({ binary });
  return {
    url: server.url,
    port: server.port,
    stop: () => server.stop(),
    kill: () => server.kill(),
    restart: () => server.restart(),
    pause: () => server.pause(),
    resume: () => server.resume(),
  };
}
