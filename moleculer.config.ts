/**
 * Broker options, built from the validated configuration (lib/config.ts). The same code runs
 * in every mode; only the environment differs:
 * - NATS_URL / TRANSPORTER set → NATS transporter (and the JetStream event bus), else none;
 * - REDIS_URL set → Redis cacher, else memory;
 * - the NATS transporter gives up reconnecting after NATS_RECONNECT_GIVE_UP (default 2 min), and
 *   the process then exits (bin/ordermesh.ts);
 * - Moleculer's own circuit breaker and retry policy stay off: calls to the outside world are
 *   guarded by opossum breakers where they are made (docs/adr/0002-no-builtin-circuit-breaker.md).
 */
import type { BrokerOptions, LoggerConfig } from "moleculer";
import type { Clock } from "./lib/clock";
import type { Config } from "./lib/config";
import { Infrastructure, attachInfrastructure, infrastructureOf } from "./lib/infrastructure";

/** What a process is given besides its configuration. */
export interface BrokerRuntime {
  /** The clock every service reads; the system clock unless a test hands in a manual one. */
  clock?: Clock;
}

export function createBrokerOptions(
  config: Config,
  overrides: Partial<BrokerOptions> = {},
  runtime: BrokerRuntime = {},
): BrokerOptions {
  return {
    namespace: config.namespace,
    nodeID: config.nodeId ?? null,
    logger: loggerConfig(config),
    logLevel: config.logLevel,

    transporter:
      config.natsServers.length > 0
        ? {
            type: "NATS",
            options: { servers: config.natsServers, ...natsReconnectPolicy(config.natsReconnectGiveUpMs) },
          }
        : null,
    serializer: "JSON",
    cacher:
      config.redisUrl !== undefined
        ? { type: "Redis", options: { redis: redisOptions(config.redisUrl), prefix: "ordermesh-cache" } }
        : "Memory",

    requestTimeout: 10_000,
    retryPolicy: { enabled: false },
    circuitBreaker: { enabled: false },
    bulkhead: { enabled: false },
    registry: { strategy: "RoundRobin", preferLocal: true },
    // Lets in-flight requests finish on stop.
    tracking: { enabled: true, shutdownTimeout: config.shutdownTimeoutMs },
    heartbeatInterval: 5,
    heartbeatTimeout: 15,
    // bin/ordermesh.ts owns the signals, so that a stop is graceful and bounded.
    skipProcessEventRegistration: true,
    metrics: false,
    tracing: false,

    created(broker) {
      attachInfrastructure(
        broker,
        new Infrastructure(config, broker.getLogger("infrastructure"), runtime.clock),
      );
    },
    async stopped(broker) {
      await infrastructureOf(broker).close();
    },
    ...overrides,
  };
}

/** Pause between two attempts to reach a NATS server again. */
export const NATS_RECONNECT_WAIT_MS = 1000;
/**
 * The `nats` client's reconnect options for a give-up time: one attempt per server every
 * NATS_RECONNECT_WAIT_MS. An attempt that waits for a connect timeout (a server that drops
 * packets instead of refusing) makes the real time longer.
 */
export function natsReconnectPolicy(giveUpMs: number): {
  maxReconnectAttempts: number;
  reconnectTimeWait: number;
  reconnectJitter: number;
} {
  return {
    maxReconnectAttempts: Math.max(1, Math.ceil(giveUpMs / NATS_RECONNECT_WAIT_MS)),
    reconnectTimeWait: NATS_RECONNECT_WAIT_MS,
    reconnectJitter: 100,
  };
}

/** Pino JSON logs; pretty when stdout is a terminal. */
function loggerConfig(config: Config): LoggerConfig {
  const pretty = process.stdout.isTTY === true;
  return {
    type: "Pino",
    options: {
      level: config.logLevel,
      pino: {
        options: {
          level: config.logLevel,
          ...(pretty
            ? {
                transport: {
                  target: "pino-pretty",
                  options: {
                    colorize: true,
                    singleLine: true,
                    translateTime: "SYS:HH:MM:ss.l",
                    ignore: "pid,hostname,ns,nodeID,mod,svc",
                    messageFormat: "{nodeID} {mod}: {msg}",
                  },
                },
              }
            : {}),
        },
      },
    },
  } as LoggerConfig;
}

/** ioredis connection options from a `redis://` or `rediss://` URL. */
export function redisOptions(url: string): Record<string, unknown> {
  const parsed = new URL(url);
  const db = parsed.pathname.length > 1 ? Number(parsed.pathname.slice(1)) : 0;
  return {
    host: parsed.hostname,
    port: parsed.port === "" ? 6379 : Number(parsed.port),
    db: Number.isInteger(db) ? db : 0,
    ...(parsed.username === "" ? {} : { username: decodeURIComponent(parsed.username) }),
    ...(parsed.password === "" ? {} : { password: decodeURIComponent(parsed.password) }),
    ...(parsed.protocol === "rediss:" ? { tls: {} } : {}),
  };
}
