#!/usr/bin/env node
/**
 * ordermesh command line.
 *   ordermesh start [--repl]   the services named by SERVICES (default: all) in this process
 *   ordermesh cluster          one process per service over NATS (starts a nats-server if NATS_URL is unset)
 *   ordermesh repl             a REPL node that joins a running cluster
 */
import { mkdirSync, accessSync, constants as fsConstants } from "node:fs";
import { ServiceBroker } from "moleculer";
import { createBrokerOptions } from "../moleculer.config";
import { runCluster, readClusterState, SUPERVISOR_PID_ENV } from "../lib/cluster";
import { JetStreamEventBus } from "../lib/bus";
import { loadConfig, type Config } from "../lib/config";
import { ConfigError } from "../lib/errors";
import { infrastructureOf } from "../lib/infrastructure";
import { isGracefulHttp } from "../mixins/graceful-http.mixin";
import { SERVICE_SCHEMAS } from "../services";
import { replCommands } from "../lib/repl";
import { localSecrets } from "../lib/local-secrets";
import { startLocalPaymentProvider } from "../lib/local-servers/payment-provider";

/** Exit code (EX_UNAVAILABLE) when NATS is gone for good: an orchestrator restarts the process. */
const EXIT_NATS_GONE = 69;

const USAGE = `usage: ordermesh <start [--repl] | cluster | repl>

  start     run the services named by SERVICES (default: all) in this process
  cluster   run one process per service over NATS (a nats-server is started when NATS_URL is unset)
  repl      open a Moleculer REPL on a running cluster (NATS_URL, or the cluster started from DATA_DIR)

Configuration comes from the environment; see README.md.`;

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case "start":
      return start(configOrExit("start"), rest.includes("--repl"));
    case "cluster":
      return runCluster(configOrExit("cluster"));
    case "repl":
      return repl(configOrExit("repl"));
    case undefined:
    case "help":
    case "--help":
    case "-h":
      console.log(USAGE);
      return;
    default:
      console.error(`ordermesh: unknown command "${command}"\n\n${USAGE}`);
      process.exit(64);
  }
}

type Command = "start" | "cluster" | "repl";

/** Load the configuration for `command` or stop with a message naming the variable. */
function configOrExit(command: Command): Config {
  try {
    const env = { ...process.env };
    // `npm start` and `npm run cluster` without NATS_URL run on this machine only
    const local = command !== "repl" && env.NATS_URL === undefined && env.TRANSPORTER === undefined;
    if (command === "start" && local && env.AUTH_DEV_TOKENS === undefined) {
      // the one-process embedded mode is for trying ordermesh out: dev tokens on unless said otherwise
      env.AUTH_DEV_TOKENS = "true";
    }
    const config = loadConfig(env);
    prepareDataDir(config.dataDir);
    if (local) {
      // secrets the environment does not give are generated once and kept under DATA_DIR
      const secrets = localSecrets(config.dataDir);
      config.jwtSecret ??= secrets.jwtSecret;
      config.pspWebhookSecret ??= secrets.pspWebhookSecret;
    }
    if (command === "start" && config.services.includes("gateway") && config.jwtSecret === undefined) {
      throw new ConfigError(
        "JWT_SECRET",
        "required by the gateway to verify tokens (at least 16 characters)",
      );
    }
    return config;
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`ordermesh: invalid configuration: ${err.message}`);
      process.exit(78);
    }
    throw err;
  }
}

function prepareDataDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, fsConstants.W_OK);
  } catch (err) {
    throw new ConfigError(
      "DATA_DIR",
      `cannot use ${dir}: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
}

async function start(config: Config, withRepl: boolean): Promise<void> {
  const provider = await startLocalPaymentProvider(config, (line) => console.log(`ordermesh: ${line}`));
  const broker = new ServiceBroker(
    createBrokerOptions(config, {
      replOptions: { customCommands: replCommands() },
      // the local payment-provider simulator lives and dies with this process
      ...(provider === undefined ? {} : { stopped: stopAlso(config, provider) }),
    }),
  );
  for (const name of config.services) broker.createService(SERVICE_SCHEMAS[name]);
  const state: StopState = { stopping: false };
  stopOnSignals(broker, config, state);
  warnOnShortGrace(broker, config);
  try {
    await broker.start();
  } catch (err) {
    broker.logger.fatal("start failed", err);
    await broker.stop().catch(() => undefined);
    process.exit(1);
  }
  const base = `http://localhost:${config.port}`;
  const where = config.services.includes("gateway")
    ? ` — API ${base}/api/v1, docs ${base}/docs, metrics ${base}/metrics`
    : "";
  broker.logger.info(`ordermesh started: ${config.services.join(", ")}${where}`);
  await exitWhenNatsIsGone(broker, config, state);
  if (withRepl) broker.repl();
}

/** The broker's `stopped` hook from moleculer.config, followed by closing `extra`. */
function stopAlso(
  config: Config,
  extra: { close(): Promise<void> },
): (broker: ServiceBroker) => Promise<void> {
  const base = createBrokerOptions(config).stopped;
  return async (broker) => {
    await base?.(broker);
    await extra.close();
  };
}

async function repl(config: Config): Promise<void> {
  const natsServers =
    config.natsServers.length > 0
      ? config.natsServers
      : (readClusterState(config.dataDir)?.natsServers ?? []);
  if (natsServers.length === 0) {
    console.error("ordermesh: no cluster to join: start one with `npm run cluster`, or set NATS_URL");
    process.exit(69);
  }
  const broker = new ServiceBroker(
    createBrokerOptions(
      { ...config, natsServers, nodeId: config.nodeId ?? `repl-${process.pid}`, logLevel: "warn" },
      { replOptions: { customCommands: replCommands() } },
    ),
  );
  stopOnSignals(broker, config, { stopping: false });
  await broker.start();
  broker.repl();
}

/** A process stops once: the first cause (a signal, or NATS gone for good) wins. */
interface StopState {
  stopping: boolean;
}

/**
 * First SIGTERM/SIGINT: drain the HTTP server when this process runs the gateway, then stop the
 * broker and exit 0, all within SHUTDOWN_TIMEOUT, else exit 1. A second signal exits at once.
 * Under `ordermesh cluster`, SIGINT (Ctrl-C reaches the whole process group) is left to the
 * supervisor, which stops the gateway first and the services behind it afterwards.
 */
function stopOnSignals(broker: ServiceBroker, config: Config, state: StopState): void {
  const onSignal = (signal: NodeJS.Signals): void => {
    if (state.stopping) {
      broker.logger.warn(`${signal} again: exiting now`);
      process.exit(130);
    }
    if (signal === "SIGINT" && supervisedByParent()) {
      broker.logger.info("SIGINT: the cluster supervisor orders the stop");
      return;
    }
    state.stopping = true;
    broker.logger.info(`${signal}: stopping (grace ${config.shutdownTimeoutMs} ms)`);
    exitAfter(config.shutdownTimeoutMs, 1, () =>
      broker.logger.error(`stop took longer than ${config.shutdownTimeoutMs} ms: exiting`),
    );
    gracefulStop(broker, config).then(
      () => process.exit(0),
      (err: unknown) => {
        broker.logger.error("stop failed", err);
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
}

/** Readiness off, HTTP drained (when this process serves HTTP), then the services and adapters stop. */
async function gracefulStop(broker: ServiceBroker, config: Config): Promise<void> {
  const gateways = broker.services.filter(isGracefulHttp);
  await Promise.all(gateways.map((gateway) => gateway.drainHttp(config.shutdownDrainMs)));
  broker.logger.info("stopping services");
  await broker.stop();
}

/**
 * Exit EXIT_NATS_GONE when a NATS connection closes for good: the transporter's (it gave up
 * reconnecting after NATS_RECONNECT_GIVE_UP) or the event bus's. A process cut off from NATS
 * neither receives calls nor delivers events; restarted, it waits for NATS and rejoins.
 */
async function exitWhenNatsIsGone(broker: ServiceBroker, config: Config, state: StopState): Promise<void> {
  if (config.natsServers.length === 0) return;
  const onGone = (what: string, reason: unknown): void => {
    if (state.stopping) return;
    state.stopping = true;
    const why = reason instanceof Error ? reason.message : "closed";
    broker.logger.fatal(`${what} is closed for good (${why}): exiting (${EXIT_NATS_GONE}) to be restarted`);
    exitAfter(config.shutdownTimeoutMs, EXIT_NATS_GONE, () =>
      broker.logger.error(`stop took longer than ${config.shutdownTimeoutMs} ms: exiting`),
    );
    // stores are closed even when the broker's own stop trips over the dead connection
    void broker
      .stop()
      .then(() => infrastructureOf(broker).close())
      .finally(() => process.exit(EXIT_NATS_GONE));
  };
  void transporterConnection(broker)
    ?.closed()
    .then((err) => onGone("the transporter's NATS connection", err));
  const bus = await infrastructureOf(broker)
    .bus()
    .catch(() => undefined);
  if (bus instanceof JetStreamEventBus)
    void bus.connectionLost.then((err) => onGone("the event bus's NATS connection", err));
}

/** The `nats` connection of Moleculer's NATS transporter, when this broker has one. */
function transporterConnection(broker: ServiceBroker): { closed(): Promise<void | Error> } | undefined {
  // Moleculer's transporter keeps it in a field its typings do not declare
  const client = (broker.transit?.tx as { client?: { closed?: unknown } | null } | undefined)?.client;
  if (client === undefined || client === null || typeof client.closed !== "function") return undefined;
  return client as { closed(): Promise<void | Error> };
}

/** Exit with `code` after `ms` unless the process is gone by then. */
function exitAfter(ms: number, code: number, beforeExit: () => void): void {
  const timer = setTimeout(() => {
    beforeExit();
    process.exit(code);
  }, ms);
  timer.unref();
}

/** True for a child of `ordermesh cluster`, while that supervisor is still its parent. */
function supervisedByParent(): boolean {
  return process.env[SUPERVISOR_PID_ENV] === String(process.ppid);
}

/** A drain as long as the whole grace leaves no time for the requests in flight. */
function warnOnShortGrace(broker: ServiceBroker, config: Config): void {
  if (config.services.includes("gateway") && config.shutdownDrainMs >= config.shutdownTimeoutMs) {
    broker.logger.warn(
      `SHUTDOWN_DRAIN (${config.shutdownDrainMs} ms) is not shorter than SHUTDOWN_TIMEOUT ` +
        `(${config.shutdownTimeoutMs} ms): a stop will run out of time`,
    );
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  console.error("ordermesh:", err instanceof Error ? err.message : err);
  process.exit(1);
});
