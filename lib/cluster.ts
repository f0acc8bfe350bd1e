/**
 * `npm run cluster`: one process per service, talking over NATS. When NATS_URL is unset, a
 * `nats-server` from PATH is started on a free port with JetStream storage under DATA_DIR.
 * Children that die are restarted with backoff. SIGINT/SIGTERM stops them gracefully, the
 * gateway first: it drains its HTTP requests while the services behind it still answer them; the
 * others stop once it is gone. The NATS address is written to DATA_DIR/cluster.json so
 * `npm run repl` can join.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Config, ServiceName } from "./config";
import { startNatsProcess, type NatsProcess } from "./local-servers/nats-process";
import { startLocalPaymentProvider } from "./local-servers/payment-provider";

export interface ClusterState {
  natsServers: string[];
  pid: number;
  startedAt: string;
  services: ServiceName[];
}

const STATE_FILE = "cluster.json";

/**
 * Set on each child to the supervisor's pid. Ctrl-C sends SIGINT to the whole process group: a
 * child whose parent is still this supervisor leaves it to the supervisor, which orders the stop.
 */
export const SUPERVISOR_PID_ENV = "ORDERMESH_SUPERVISOR_PID";

/** Stopped before the others, so that the requests it drains still find the services. */
const STOPPED_FIRST: readonly ServiceName[] = ["gateway"];

/** The state of a cluster started from this DATA_DIR, or null when none is running. */
export function readClusterState(dataDir: string): ClusterState | null {
  const file = join(dataDir, STATE_FILE);
  if (!existsSync(file)) return null;
  try {
    const state = JSON.parse(readFileSync(file, "utf8")) as ClusterState;
    process.kill(state.pid, 0); // throws when the supervisor is gone
    return state;
  } catch {
    return null;
  }
}

export async function runCluster(config: Config): Promise<void> {
  const log = (line: string): void => console.log(`[cluster] ${line}`);
  let nats: NatsProcess | undefined;
  let natsServers = config.natsServers;
  if (natsServers.length === 0) {
    nats = await startNatsProcess({
      storeDir: join(config.dataDir, "nats"),
      logFile: join(config.dataDir, "nats-server.log"),
    });
    natsServers = [nats.url];
    log(`nats-server started at ${nats.url} (JetStream store ${join(config.dataDir, "nats")})`);
  } else {
    log(`using NATS at ${natsServers.join(",")}`);
  }

  const provider = await startLocalPaymentProvider(config, log);

  const statePath = join(config.dataDir, STATE_FILE);
  const state: ClusterState = {
    natsServers,
    pid: process.pid,
    startedAt: new Date().toISOString(),
    services: config.services,
  };
  writeFileSync(statePath, JSON.stringify(state, null, 2));

  const entry = process.argv[1] ?? join(__dirname, "..", "bin", "ordermesh.js");
  const children = new Map<ServiceName, Supervised>();
  let stopping = false;

  const launch = (service: ServiceName, restarts: number): void => {
    const child = spawn(process.execPath, [entry, "start"], {
      env: {
        ...process.env,
        SERVICES: service,
        NATS_URL: natsServers.join(","),
        TRANSPORTER: "",
        NODE_ID: `${service}-${process.pid}`,
        DATA_DIR: config.dataDir,
        [SUPERVISOR_PID_ENV]: String(process.pid),
        ...secretsFor(config),
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    prefixLines(child, service);
    const supervised: Supervised = { child, restarts, startedAt: Date.now() };
    children.set(service, supervised);
    child.on("exit", (code, signal) => {
      if (stopping) return;
      // Reset the backoff once a child has stayed up for a minute.
      const attempt = Date.now() - supervised.startedAt > 60_000 ? 0 : restarts + 1;
      const delay = Math.min(30_000, 500 * 2 ** Math.min(attempt, 6));
      log(`${service} exited (${signal ?? `code ${code}`}); restarting in ${delay} ms`);
      setTimeout(() => {
        if (!stopping) launch(service, attempt);
      }, delay).unref();
    });
  };

  for (const service of config.services) launch(service, 0);
  log(
    `started ${config.services.join(", ")}${config.services.includes("gateway") ? ` — http://localhost:${config.port}` : ""}`,
  );

  const stop = async (signal: NodeJS.Signals): Promise<void> => {
    if (stopping) {
      log(`${signal} again: killing everything`);
      for (const { child } of children.values()) child.kill("SIGKILL");
      await nats?.kill();
      process.exit(130);
    }
    stopping = true;
    log(`${signal}: stopping ${children.size} processes`);
    for (const wave of stopOrder([...children.keys()])) {
      log(`stopping ${wave.join(", ")}`);
      await Promise.all(
        wave.map((service) => {
          const supervised = children.get(service);
          return supervised === undefined ? undefined : stopChild(supervised.child, config.shutdownTimeoutMs);
        }),
      );
    }
    if (nats !== undefined) await nats.stop();
    await provider?.close();
    rmSync(statePath, { force: true });
    log("stopped");
    process.exit(0);
  };
  process.on("SIGINT", (s) => void stop(s));
  process.on("SIGTERM", (s) => void stop(s));
}

interface Supervised {
  child: ChildProcess;
  restarts: number;
  startedAt: number;
}

/** Services in the order they stop: the gateway alone, then every other one together. */
export function stopOrder(services: readonly ServiceName[]): ServiceName[][] {
  const first = services.filter((s) => STOPPED_FIRST.includes(s));
  const rest = services.filter((s) => !STOPPED_FIRST.includes(s));
  return [first, rest].filter((wave) => wave.length > 0);
}

/** SIGTERM, then SIGKILL once the child's own grace (and a second) has passed. */
function stopChild(child: ChildProcess, timeoutMs: number): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs + 1000);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill("SIGTERM");
  });
}

function prefixLines(child: ChildProcess, name: string): void {
  const tag = `[${name}] `;
  for (const [stream, out] of [
    [child.stdout, process.stdout],
    [child.stderr, process.stderr],
  ] as const) {
    let rest = "";
    stream?.setEncoding("utf8");
    stream?.on("data", (chunk: string) => {
      const lines = (rest + chunk).split("\n");
      rest = lines.pop() ?? "";
      for (const line of lines) out.write(tag + line + "\n");
    });
    stream?.on("end", () => {
      if (rest !== "") out.write(tag + rest + "\n");
    });
  }
}

/** Secrets the children need; the supervisor's configuration already filled in the local ones. */
function secretsFor(config: Config): Record<string, string> {
  const env: Record<string, string> = {};
  if (config.jwtSecret !== undefined) env.JWT_SECRET = config.jwtSecret;
  if (config.pspWebhookSecret !== undefined) env.PSP_WEBHOOK_SECRET = config.pspWebhookSecret;
  if (config.pspUrl !== undefined) env.PSP_URL = config.pspUrl;
  return env;
}
