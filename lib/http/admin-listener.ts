/**
 * The admin listener (docs/operations.md, "Shutdown and probes"; README, "Configuration",
 * `ADMIN_PORT`): probes for every process on ADMIN_PORT, so that an orchestrator can watch the
 * domain services, which have no HTTP port of their own. Plain node:http; never exposed publicly.
 * The gateway keeps its own probes on PORT.
 *
 * - `GET /livez`    200 `{"status":"ok"}` while the broker is not stopping; 503 `{"status":"stopped"}`.
 * - `GET /startupz` 503 `{"status":"starting"}` until every local service has started, then 200
 *   `{"status":"started"}` for good.
 * - `GET /readyz`   200 `{"status":"ready","checks":{…}}` when the broker runs and is not shutting
 *   down, its transporter (if any) is connected, and the `health` action of every local service
 *   reports healthy; else 503 `{"status":"not_ready","checks":{…}}` with the failing checks.
 * Anything else is 404 (405 for another method on a probe path). HEAD is answered like GET.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Service, ServiceBroker } from "moleculer";
import { HEADERS } from "../constants";
import { JSON_CONTENT_TYPE, spelled } from "./headers";

/** The probes, by path. */
export const ADMIN_PROBES = ["livez", "readyz", "startupz"] as const;
export type AdminProbe = (typeof ADMIN_PROBES)[number];

export interface AdminListenerOptions {
  /** 0 → any free port (see `AdminListener.port`). */
  port: number;
  /** Default: every interface. */
  host?: string;
  /** Longest a service's `health` action may take before it counts as failed (default 2 s). */
  healthTimeoutMs?: number;
}

export interface AdminListener {
  /** The port listened on. */
  readonly port: number;
  /** From the start of a graceful stop: /readyz answers 503. */
  markStopping(): void;
  /** Stop listening and close every connection; resolves once closed. */
  close(): Promise<void>;
}

/** One readiness check; `checks` holds a service's own (store, bus, kv) when it reports them. */
export interface AdminCheck {
  ok: boolean;
  error?: string;
  checks?: unknown;
}

interface ProbeAnswer {
  status: number;
  body: Record<string, unknown>;
}

const DEFAULT_HEALTH_TIMEOUT_MS = 2_000;
/** Sent with every answer: JSON, never cached or sniffed. */
const ANSWER_HEADERS = {
  [spelled(HEADERS.contentType)]: JSON_CONTENT_TYPE,
  [spelled(HEADERS.cacheControl)]: "no-store",
  [spelled(HEADERS.contentTypeOptions)]: "nosniff",
};

/** Listen on `options.port` and answer the probes of `broker`; rejects when the port is taken. */
export async function startAdminListener(
  broker: ServiceBroker,
  options: AdminListenerOptions,
): Promise<AdminListener> {
  const healthTimeoutMs = options.healthTimeoutMs ?? DEFAULT_HEALTH_TIMEOUT_MS;
  let stopping = false;
  let startupComplete = false;
  broker.localBus.on("$broker.started", () => (startupComplete = true));

  const answer = async (probe: AdminProbe): Promise<ProbeAnswer> => {
    switch (probe) {
      case "livez":
        return broker.stopping
          ? { status: 503, body: { status: "stopped" } }
          : { status: 200, body: { status: "ok" } };
      case "startupz":
        startupComplete ||= broker.started;
        return startupComplete
          ? { status: 200, body: { status: "started" } }
          : { status: 503, body: { status: "starting" } };
      case "readyz": {
        const checks = await readiness(broker, stopping, healthTimeoutMs);
        const ready = Object.values(checks).every((check) => check.ok);
        return { status: ready ? 200 : 503, body: { status: ready ? "ready" : "not_ready", checks } };
      }
    }
  };

  const server = createServer((req, res) => {
    respond(req, res, answer).catch((err: unknown) => {
      // a probe that throws is a failed probe, never a crash
      send(req, res, { status: 500, body: { status: "error", error: errorMessage(err) } });
    });
  });
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  server.keepAliveTimeout = 2_000;
  await listen(server, options.port, options.host);
  server.on("error", (err) => broker.logger.error(`admin listener: ${errorMessage(err)}`));
  const port = (server.address() as AddressInfo).port;
  broker.logger.info(`admin listener on port ${port}: /livez, /readyz, /startupz`);

  let closing: Promise<void> | undefined;
  return {
    port,
    markStopping() {
      stopping = true;
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        stopping = true;
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

async function respond(
  req: IncomingMessage,
  res: ServerResponse,
  answer: (probe: AdminProbe) => Promise<ProbeAnswer>,
): Promise<void> {
  const path = new URL(req.url ?? "/", "http://admin").pathname.replace(/^\//, "");
  const probe = (ADMIN_PROBES as readonly string[]).includes(path) ? (path as AdminProbe) : undefined;
  if (probe === undefined) {
    const message = `only ${ADMIN_PROBES.map((p) => `/${p}`).join(", ")} here`;
    send(req, res, { status: 404, body: { error: { code: "NOT_FOUND", message } } });
    return;
  }
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.setHeader(spelled(HEADERS.allow), "GET, HEAD");
    send(req, res, { status: 405, body: { error: { code: "METHOD_NOT_ALLOWED", message: "GET only" } } });
    return;
  }
  send(req, res, await answer(probe));
}

function send(req: IncomingMessage, res: ServerResponse, { status, body }: ProbeAnswer): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { ...ANSWER_HEADERS, [spelled(HEADERS.contentLength)]: Buffer.byteLength(text) });
  res.end(req.method === "HEAD" ? undefined : text);
}

/** Every readiness check of this process, passed or failed. */
async function readiness(
  broker: ServiceBroker,
  stopping: boolean,
  healthTimeoutMs: number,
): Promise<Record<string, AdminCheck>> {
  const checks: Record<string, AdminCheck> = {};
  if (stopping || broker.stopping) checks.broker = { ok: false, error: "shutting down" };
  else if (!broker.started) checks.broker = { ok: false, error: "starting" };
  else checks.broker = { ok: true };
  const transit = broker.transit;
  if (transit !== undefined) {
    const connected = transit.connected && transit.tx.connected;
    checks.transporter = connected ? { ok: true } : { ok: false, error: "not connected" };
  }
  // a broker that is starting or stopping has services half up: asking them says nothing more
  if (!checks.broker.ok) return checks;
  await Promise.all(
    localServices(broker).map(async (service) => {
      checks[service.fullName] = await serviceHealth(broker, service, healthTimeoutMs);
    }),
  );
  return checks;
}

/** The services this process runs (not Moleculer's internal `$node`). */
function localServices(broker: ServiceBroker): Service[] {
  return broker.services.filter((service) => !service.name.startsWith("$"));
}

/** What the `health` action of the local instance of `service` says (InfrastructureMixin). */
async function serviceHealth(
  broker: ServiceBroker,
  service: Service,
  timeoutMs: number,
): Promise<AdminCheck> {
  if (service.actions.health === undefined) return { ok: true };
  try {
    const report = await broker.call<{ healthy?: unknown; checks?: unknown }, Record<string, never>>(
      `${service.fullName}.health`,
      {},
      // this node's instance; untracked, so that a slow check never holds up a stop
      { nodeID: broker.nodeID, timeout: timeoutMs, tracking: false },
    );
    return report.healthy === false
      ? { ok: false, error: "unhealthy", checks: report.checks }
      : { ok: true, checks: report.checks };
  } catch (err) {
    // an unhealthy service throws with its report as the error's data
    const data = (err as { data?: { checks?: unknown } } | null)?.data;
    return {
      ok: false,
      error: errorMessage(err),
      ...(data?.checks === undefined ? {} : { checks: data.checks }),
    };
  }
}

function listen(server: Server, port: number, host: string | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once("error", onError);
    const onListening = (): void => {
      server.off("error", onError);
      resolve();
    };
    if (host === undefined) server.listen(port, onListening);
    else server.listen(port, host, onListening);
  });
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
