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

const USAGE = `usage: ordermesh <start [--repl] | cluster | repl>

  start     run the services named by SERVICES (default: all) in this process
  cluster   run one process per service over NATS (a nats-server is started when NATS_URL is unset)
  repl      open a Moleculer REPL on a running cluster (NATS_URL, or the cluster started from DATA_DIR)

Configuration comes from the environment; see README.md.`;

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case "start":
      return start(configOrExit({ AUTH_DEV_TOKENS_DEFAULT: "true" }), rest.includes("--repl"));
    case "cluster":
      return runCluster(configOrExit());
    case "repl":
      return repl(configOrExit());
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

/** Load the configuration or stop with a message naming the variable. */
function configOrExit(defaults: { AUTH_DEV_TOKENS_DEFAULT?: string } = {}): Config {
  try {
    const env = { ...process.env };
    if (
      defaults.AUTH_DEV_TOKENS_DEFAULT !== undefined &&
      env.AUTH_DEV_TOKENS === undefined &&
      env.NATS_URL === undefined
    ) {
      // The one-process embedded mode is for trying ordermesh out: dev tokens on unless said otherwise.
      env.AUTH_DEV_TOKENS = defaults.AUTH_DEV_TOKENS_DEFAULT;
    }
    const config = loadConfig(env);
    prepareDataDir(config.dataDir);
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
  const broker = new ServiceBroker(
    createBrokerOptions(config, { replOptions: { customCommands: replCommands() } }),
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
