#!/usr/bin/env node
/**
 * ordermesh command line.
 *   ordermesh start [--repl]   the services named by SERVICES (default: all) in this process
 *   ordermesh cluster          one process per service over NATS (starts a nats-server if NATS_URL is unset)
 *   ordermesh repl             a REPL node that joins a running cluster
 *   ordermesh token …          a bearer token signed with JWT_SECRET
 *   ordermesh probe [probe]    asks a running process's probe (the container healthcheck)
 * `token` and `probe` load neither Moleculer nor the services: a healthcheck stays cheap.
 */
import { request } from "node:http";
import type { ServiceBroker } from "moleculer";
import { SUBJECT, issueToken } from "../lib/auth/jwt";
import {
  checkServiceNeeds,
  duration,
  loadConfig,
  loadProbeTarget,
  loadTokenSigning,
  usableDataDir,
  type Config,
} from "../lib/config";
import { ROLES, type Role } from "../lib/constants";
import { ConfigError, failureText } from "../lib/errors";
import {
  ADMIN_PROBES,
  startAdminListener,
  type AdminListener,
  type AdminProbe,
} from "../lib/http/admin-listener";
import { localSecrets } from "../lib/local-secrets";

/** Exit code (EX_UNAVAILABLE) when NATS is gone for good: an orchestrator restarts the process. */
const EXIT_NATS_GONE = 69;
/** Exit code (EX_USAGE) of a command line that cannot be understood. */
const EXIT_USAGE = 64;
/** Exit code (EX_CONFIG) of a configuration that cannot work. */
const EXIT_CONFIG = 78;
/** Longest `ordermesh probe` waits for its answer. */
const PROBE_TIMEOUT_MS = 3_000;

const TOKEN_USAGE = `usage: ordermesh token --sub <id> [--role customer|admin]... [--ttl 1h]

  --sub <id>     the subject: a customer id, or an operator's name
  --role <role>  customer (default) or admin; repeat it or give a comma list
  --ttl <time>   lifetime such as 15m, 1h or 24h (default 1h); the token carries exp

Signs an HS256 token with JWT_SECRET (and JWT_ISSUER / JWT_AUDIENCE when set) and prints it alone.`;

const PROBE_USAGE = `usage: ordermesh probe [livez|readyz|startupz]

GETs http://127.0.0.1:<PORT when SERVICES has the gateway, else ADMIN_PORT>/<probe> (default livez),
waits at most ${PROBE_TIMEOUT_MS / 1000} s, prints one line; exits 0 on 200, 1 otherwise.`;

const USAGE = `usage: ordermesh <command>

  start [--repl]   run the services named by SERVICES (default: all) in this process
  cluster          run one process per service over NATS (a nats-server is started when NATS_URL is unset)
  repl             open a Moleculer REPL on a running cluster (NATS_URL, or the cluster started from DATA_DIR)
  token --sub <id> [--role customer|admin]... [--ttl 1h]
                   print a bearer token signed with JWT_SECRET
  probe [livez|readyz|startupz]
                   ask a running process (the gateway's PORT, else ADMIN_PORT); exit 0 on 200, 1 otherwise

Configuration comes from the environment; see README.md.`;

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case "start": {
      const config = configOrExit("start");
      return start(await loadRuntime(), config, rest.includes("--repl"));
    }
    case "cluster": {
      const config = configOrExit("cluster");
      return (await loadRuntime()).runCluster(config);
    }
    case "repl": {
      const config = configOrExit("repl");
      return repl(await loadRuntime(), config);
    }
    case "token":
      return token(rest);
    case "probe":
      return probe(rest);
    case undefined:
    case "help":
    case "--help":
    case "-h":
      console.log(USAGE);
      return;
    default:
      console.error(`ordermesh: unknown command "${command}"\n\n${USAGE}`);
      process.exit(EXIT_USAGE);
  }
}

/**
 * What only a running broker needs, loaded by `start`, `cluster` and `repl` once the configuration
 * holds: Moleculer, the services and every adapter.
 */
async function loadRuntime() {
  const [moleculer, brokerConfig, cluster, bus, infrastructure, gracefulHttp, services, repl, provider] =
    await Promise.all([
      import("moleculer"),
      import("../moleculer.config.js"),
      import("../lib/cluster.js"),
      import("../lib/bus/index.js"),
      import("../lib/infrastructure.js"),
      import("../mixins/graceful-http.mixin.js"),
      import("../services/index.js"),
      import("../lib/repl.js"),
      import("../lib/local-servers/payment-provider.js"),
    ]);
  return {
    ServiceBroker: moleculer.ServiceBroker,
    createBrokerOptions: brokerConfig.createBrokerOptions,
    runCluster: cluster.runCluster,
    readClusterState: cluster.readClusterState,
    supervisorPidEnv: cluster.SUPERVISOR_PID_ENV,
    JetStreamEventBus: bus.JetStreamEventBus,
    infrastructureOf: infrastructure.infrastructureOf,
    isGracefulHttp: gracefulHttp.isGracefulHttp,
    serviceSchemas: services.SERVICE_SCHEMAS,
    replCommands: repl.replCommands,
    startLocalPaymentProvider: provider.startLocalPaymentProvider,
  };
}

type Runtime = Awaited<ReturnType<typeof loadRuntime>>;

type Command = "start" | "cluster" | "repl";

/**
 * Load the configuration for `command` or stop with a message naming the variable. Every secret
 * the environment gives is checked in every mode (a weak one given on purpose is still a mistake);
 * the ones generated for a local run are strong. Each service of the process then gets what it
 * needs, so a process never starts only to fail on a missing variable.
 */
function configOrExit(command: Command): Config {
  return orExit(() => {
    const env = { ...process.env };
    // `npm start` and `npm run cluster` without NATS_URL run on this machine only
    const local = command !== "repl" && env.NATS_URL === undefined && env.TRANSPORTER === undefined;
    if (command === "start" && local && env.AUTH_DEV_TOKENS === undefined) {
      // the one-process embedded mode is for trying ordermesh out: dev tokens on unless said otherwise
      env.AUTH_DEV_TOKENS = "true";
    }
    const config = loadConfig(env);
    usableDataDir(config.dataDir);
    if (local) {
      // secrets the environment does not give are generated once and kept under DATA_DIR
      const secrets = localSecrets(config.dataDir);
      config.jwtSecret ??= secrets.jwtSecret;
      config.pspWebhookSecret ??= secrets.pspWebhookSecret;
    }
    if (command === "cluster" && config.adminPort !== undefined && config.adminPort !== 0) {
      throw new ConfigError(
        "ADMIN_PORT",
        "one port cannot serve every process of `ordermesh cluster`; unset it (or use 0 for any free port)",
      );
    }
    if (command !== "repl") {
      // locally, and under the cluster supervisor, the provider simulator fills in PSP_URL
      checkServiceNeeds(config, { providerSimulated: local || command === "cluster" });
    }
    return config;
  });
}

/** `load()`, or exit EXIT_CONFIG with the message of its ConfigError (which names the variable). */
function orExit<T>(load: () => T): T {
  try {
    return load();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`ordermesh: invalid configuration: ${err.message}`);
      process.exit(EXIT_CONFIG);
    }
    throw err;
  }
}

async function start(rt: Runtime, config: Config, withRepl: boolean): Promise<void> {
  /** Closed after the broker's own `stopped` hook, in this order. */
  const closeOnStop: { close(): Promise<void> }[] = [];
  const broker = new rt.ServiceBroker(
    rt.createBrokerOptions(config, {
      replOptions: { customCommands: rt.replCommands() },
      stopped: stopAlso(rt, config, closeOnStop),
    }),
  );
  sayWhyOnFatal(broker);
  const state: StopState = { stopping: false, admin: undefined };
  stopOnSignals(rt, broker, config, state);
  warnOnShortGrace(broker, config);
  try {
    if (config.adminPort !== undefined) {
      // listening before anything starts: probes see 503 meanwhile, not "connection refused"; and
      // first, so that the payment-provider simulator picks another port than ADMIN_PORT
      state.admin = await startAdminListener(broker, { port: config.adminPort });
      closeOnStop.push(state.admin);
    }
    // in the local mode, the payment-provider simulator lives and dies with this process (fills in PSP_URL)
    const provider = await rt.startLocalPaymentProvider(config, (line) => console.log(`ordermesh: ${line}`));
    if (provider !== undefined) closeOnStop.push(provider);
    for (const name of config.services) broker.createService(rt.serviceSchemas[name]);
    await broker.start();
  } catch (err) {
    reportFatal(broker, "start failed", err);
    await broker.stop().catch(() => undefined);
    process.exit(1);
  }
  const base = `http://localhost:${config.port}`;
  const where = config.services.includes("gateway")
    ? ` — API ${base}/api/v1, docs ${base}/docs, metrics ${base}/metrics`
    : "";
  const admin = state.admin === undefined ? "" : `; probes on admin port ${state.admin.port}`;
  broker.logger.info(`ordermesh started: ${config.services.join(", ")}${where}${admin}`);
  await exitWhenNatsIsGone(rt, broker, config, state);
  if (withRepl) broker.repl();
}

/**
 * `message` and the error behind it, in the log as one string (Moleculer's pino logger drops an
 * error given after the message) and on stderr, which a container log keeps whatever LOG_LEVEL says.
 */
function reportFatal(broker: ServiceBroker, message: string, err: unknown): void {
  const text = err === undefined ? message : `${message}: ${failureText(err)}`;
  broker.logger.fatal(text);
  console.error(`ordermesh: ${text}`);
}

/**
 * Moleculer and moleculer-web end the process through `broker.fatal(message, err)` (moleculer-web
 * on a PORT already in use): through `reportFatal`, so that the error is not lost.
 */
function sayWhyOnFatal(broker: ServiceBroker): void {
  broker.fatal = (message: string, err?: Error, needExit = true): void => {
    reportFatal(broker, message, err);
    if (needExit) process.exit(1);
  };
}

/** The broker's `stopped` hook from moleculer.config, followed by closing each of `extras`. */
function stopAlso(
  rt: Runtime,
  config: Config,
  extras: readonly { close(): Promise<void> }[],
): (broker: ServiceBroker) => Promise<void> {
  const base = rt.createBrokerOptions(config).stopped;
  return async (broker) => {
    await base?.(broker);
    for (const extra of extras) await extra.close();
  };
}

async function repl(rt: Runtime, config: Config): Promise<void> {
  const natsServers =
    config.natsServers.length > 0
      ? config.natsServers
      : (rt.readClusterState(config.dataDir)?.natsServers ?? []);
  if (natsServers.length === 0) {
    console.error("ordermesh: no cluster to join: start one with `npm run cluster`, or set NATS_URL");
    process.exit(69);
  }
  const broker = new rt.ServiceBroker(
    rt.createBrokerOptions(
      { ...config, natsServers, nodeId: config.nodeId ?? `repl-${process.pid}`, logLevel: "warn" },
      { replOptions: { customCommands: rt.replCommands() } },
    ),
  );
  stopOnSignals(rt, broker, config, { stopping: false, admin: undefined });
  await broker.start();
  broker.repl();
}

/** A process stops once: the first cause (a signal, or NATS gone for good) wins. */
interface StopState {
  stopping: boolean;
  /** The admin listener, once it listens: its readiness turns 503 when a stop begins. */
  admin: AdminListener | undefined;
}

/**
 * First SIGTERM/SIGINT: readiness off, drain the HTTP server when this process runs the gateway,
 * then stop the broker and exit 0, all within SHUTDOWN_TIMEOUT, else exit 1. A second signal exits
 * at once. Under `ordermesh cluster`, SIGINT (Ctrl-C reaches the whole process group) is left to
 * the supervisor, which stops the gateway first and the services behind it afterwards.
 */
function stopOnSignals(rt: Runtime, broker: ServiceBroker, config: Config, state: StopState): void {
  const onSignal = (signal: NodeJS.Signals): void => {
    if (state.stopping) {
      broker.logger.warn(`${signal} again: exiting now`);
      process.exit(130);
    }
    if (signal === "SIGINT" && process.env[rt.supervisorPidEnv] === String(process.ppid)) {
      broker.logger.info("SIGINT: the cluster supervisor orders the stop");
      return;
    }
    state.stopping = true;
    state.admin?.markStopping();
    broker.logger.info(`${signal}: stopping (grace ${config.shutdownTimeoutMs} ms)`);
    exitAfter(config.shutdownTimeoutMs, 1, () =>
      broker.logger.error(`stop took longer than ${config.shutdownTimeoutMs} ms: exiting`),
    );
    gracefulStop(rt, broker, config).then(
      () => process.exit(0),
      (err: unknown) => {
        broker.logger.error(`stop failed: ${failureText(err)}`);
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
}

/** HTTP drained (when this process serves HTTP), then the services and adapters stop. */
async function gracefulStop(rt: Runtime, broker: ServiceBroker, config: Config): Promise<void> {
  const gateways = broker.services.filter(rt.isGracefulHttp);
  await Promise.all(gateways.map((gateway) => gateway.drainHttp(config.shutdownDrainMs)));
  broker.logger.info("stopping services");
  await broker.stop();
}

/**
 * Exit EXIT_NATS_GONE when a NATS connection closes for good: the transporter's (it gave up
 * reconnecting after NATS_RECONNECT_GIVE_UP) or the event bus's. A process cut off from NATS
 * neither receives calls nor delivers events; restarted, it waits for NATS and rejoins.
 */
async function exitWhenNatsIsGone(
  rt: Runtime,
  broker: ServiceBroker,
  config: Config,
  state: StopState,
): Promise<void> {
  if (config.natsServers.length === 0) return;
  const onGone = (what: string, reason: unknown): void => {
    if (state.stopping) return;
    state.stopping = true;
    state.admin?.markStopping();
    const why = reason instanceof Error ? reason.message : "closed";
    broker.logger.fatal(`${what} is closed for good (${why}): exiting (${EXIT_NATS_GONE}) to be restarted`);
    exitAfter(config.shutdownTimeoutMs, EXIT_NATS_GONE, () =>
      broker.logger.error(`stop took longer than ${config.shutdownTimeoutMs} ms: exiting`),
    );
    // stores are closed even when the broker's own stop trips over the dead connection
    void broker
      .stop()
      .then(() => rt.infrastructureOf(broker).close())
      .finally(() => process.exit(EXIT_NATS_GONE));
  };
  void transporterConnection(broker)
    ?.closed()
    .then((err) => onGone("the transporter's NATS connection", err));
  const bus = await rt
    .infrastructureOf(broker)
    .bus()
    .catch(() => undefined);
  if (bus instanceof rt.JetStreamEventBus)
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

/** A drain as long as the whole grace leaves no time for the requests in flight. */
function warnOnShortGrace(broker: ServiceBroker, config: Config): void {
  if (config.services.includes("gateway") && config.shutdownDrainMs >= config.shutdownTimeoutMs) {
    broker.logger.warn(
      `SHUTDOWN_DRAIN (${config.shutdownDrainMs} ms) is not shorter than SHUTDOWN_TIMEOUT ` +
        `(${config.shutdownTimeoutMs} ms): a stop will run out of time`,
    );
  }
}

// ── ordermesh token ─────────────────────────────────────────────────────

interface TokenRequest {
  sub: string;
  roles: Role[];
  ttlSeconds: number;
}

/** Print a token the gateway accepts: signed by lib/auth/jwt's `issueToken`, as dev tokens are. */
function token(args: string[]): void {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(TOKEN_USAGE);
    return;
  }
  const wanted = tokenRequest(args);
  if (typeof wanted === "string") {
    console.error(`ordermesh token: ${wanted}\n\n${TOKEN_USAGE}`);
    process.exit(EXIT_USAGE);
  }
  const signing = orExit(() => loadTokenSigning(process.env));
  const signed = issueToken(
    { sub: wanted.sub, roles: wanted.roles },
    {
      secret: signing.secret,
      expiresInSeconds: wanted.ttlSeconds,
      issuer: signing.issuer,
      audience: signing.audience,
    },
  );
  process.stdout.write(`${signed}\n`);
}

/** The flags of `ordermesh token` (`--flag value` or `--flag=value`), or what is wrong with them. */
function tokenRequest(args: string[]): TokenRequest | string {
  let sub: string | undefined;
  let ttl: string | undefined;
  const roles = new Set<Role>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    const eq = arg.indexOf("=");
    const flag = arg.startsWith("--") && eq > 0 ? arg.slice(0, eq) : arg;
    if (flag !== "--sub" && flag !== "--role" && flag !== "--ttl") return `unknown argument "${arg}"`;
    const value = flag === arg ? args[++i] : arg.slice(eq + 1);
    if (value === undefined || value.trim() === "") return `${flag} needs a value`;
    if (flag === "--sub") {
      if (sub !== undefined) return "--sub given twice";
      if (!SUBJECT.test(value))
        return "--sub: letters, digits and . _ : @ - only, starting with a letter or digit (≤ 128)";
      sub = value;
    } else if (flag === "--role") {
      for (const role of value.split(",").map((r) => r.trim())) {
        if (!(ROLES as readonly string[]).includes(role))
          return `--role: "${role}" is not one of ${ROLES.join(", ")}`;
        roles.add(role as Role);
      }
    } else {
      if (ttl !== undefined) return "--ttl given twice";
      ttl = value;
    }
  }
  if (sub === undefined) return "--sub is required";
  let ttlMs: number;
  try {
    ttlMs = duration(ttl ?? "1h");
  } catch (err) {
    return `--ttl: ${err instanceof Error ? err.message : String(err)}`;
  }
  if (ttlMs < 1000) return "--ttl: at least 1s";
  return { sub, roles: roles.size > 0 ? [...roles] : ["customer"], ttlSeconds: Math.floor(ttlMs / 1000) };
}

// ── ordermesh probe ─────────────────────────────────────────────────────

/** GET one probe of a running process and exit 0 on 200, 1 on anything else. */
async function probe(args: string[]): Promise<void> {
  const [name = "livez", ...extra] = args;
  if (name === "--help" || name === "-h") {
    console.log(PROBE_USAGE);
    return;
  }
  if (extra.length > 0 || !(ADMIN_PROBES as readonly string[]).includes(name)) {
    console.error(`ordermesh probe: expected one of ${ADMIN_PROBES.join(", ")}\n\n${PROBE_USAGE}`);
    process.exit(EXIT_USAGE);
  }
  const target = orExit(() => loadProbeTarget(process.env));
  const url = `http://127.0.0.1:${target.port}/${name as AdminProbe}`;
  const answer = await httpGet(url, PROBE_TIMEOUT_MS);
  if ("error" in answer) {
    console.error(`${name}: no answer from ${url} (${answer.error})`);
    process.exit(1);
  }
  const line = `${name}: ${answer.status} ${oneLine(answer.body)}`;
  if (answer.status === 200) {
    console.log(line);
    return;
  }
  console.error(line);
  process.exit(1);
}

/** One GET on a connection of its own (no keep-alive holds the process), bounded by `timeoutMs`. */
function httpGet(
  url: string,
  timeoutMs: number,
): Promise<{ status: number; body: string } | { error: string }> {
  return new Promise((resolve) => {
    const req = request(
      url,
      { method: "GET", agent: false, signal: AbortSignal.timeout(timeoutMs) },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (body += chunk));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
        res.on("error", (err) => resolve({ error: err.message }));
      },
    );
    req.on("error", (err) =>
      resolve({ error: err.name === "AbortError" ? `nothing within ${timeoutMs / 1000} s` : err.message }),
    );
    req.end();
  });
}

/** A body on one line of bounded length. */
function oneLine(text: string): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > 300 ? `${flat.slice(0, 300)}…` : flat;
}

main(process.argv.slice(2)).catch((err: unknown) => {
  console.error(`ordermesh: ${failureText(err)}`);
  process.exit(1);
});
