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
import { runCluster, readClusterState } from "../lib/cluster";
import { loadConfig, type Config } from "../lib/config";
import { ConfigError } from "../lib/errors";
import { SERVICE_SCHEMAS } from "../services";
import { replCommands } from "../lib/repl";
import { localSecrets } from "../lib/local-secrets";
import { startLocalPaymentProvider } from "../lib/local-servers/payment-provider";

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
  stopOnSignals(broker, config);
  try {
    await broker.start();
  } catch (err) {
    broker.logger.fatal("start failed", err);
    await broker.stop().catch(() => undefined);
    process.exit(1);
  }
  const where = config.services.includes("gateway") ? ` — http://localhost:${config.port}` : "";
  broker.logger.info(`ordermesh started: ${config.services.join(", ")}${where}`);
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
  stopOnSignals(broker, config);
  await broker.start();
  broker.repl();
}

/** First SIGTERM/SIGINT: graceful stop, bounded by SHUTDOWN_TIMEOUT; a second one exits at once. */
function stopOnSignals(broker: ServiceBroker, config: Config): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      broker.logger.warn(`${signal} again: exiting now`);
      process.exit(130);
    }
    stopping = true;
    broker.logger.info(`${signal}: stopping`);
    const deadline = setTimeout(() => {
      broker.logger.error(`stop took longer than ${config.shutdownTimeoutMs} ms: exiting`);
      process.exit(1);
    }, config.shutdownTimeoutMs);
    deadline.unref();
    broker.stop().then(
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

main(process.argv.slice(2)).catch((err: unknown) => {
  console.error("ordermesh:", err instanceof Error ? err.message : err);
  process.exit(1);
});
