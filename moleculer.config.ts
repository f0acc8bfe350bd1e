/**
 * Broker options, built from the validated configuration (lib/config.ts). The same code runs
 * in every mode; only the environment differs:
 * - NATS_URL / TRANSPORTER set → NATS transporter (and the JetStream event bus), else none;
 * - REDIS_URL set → Redis cacher, else memory;
 * - Moleculer's own circuit breaker and retry policy stay off: calls to the outside world are
 *   guarded by opossum breakers where they are made (docs/adr/0002-no-builtin-circuit-breaker.md).
 */
import type { BrokerOptions, LoggerConfig } from "moleculer";
import type { Config } from "./lib/config";
import { Infrastructure, attachInfrastructure, infrastructureOf } from "./lib/infrastructure";

export function createBrokerOptions(config: Config, overrides: Partial<BrokerOptions> = {}): BrokerOptions {
  return {
    namespace: config.namespace,
    nodeID: config.nodeId ?? null,
    logger: loggerConfig(config),
    logLevel: config.logLevel,

    transporter:
      config.natsServers.length > 0
        ? {
            type: "NATS",
            options: {
              servers: config.natsServers,
              // Reconnect forever; a connection closed for good stops the process (see bin/ordermesh.ts).
              maxReconnectAttempts: -1,
              reconnectTimeWait: 1000,
            },
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
      attachInfrastructure(broker, new Infrastructure(config, broker.getLogger("infrastructure")));
    },
    async stopped(broker) {
      await infrastructureOf(broker).close();
    },
    ...overrides,
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
