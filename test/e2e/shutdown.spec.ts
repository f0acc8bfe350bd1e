/**
 * Stopping under load, the way an orchestrator and a load balancer see it (docs/operations.md,
 * "Shutdown and probes"), with the compiled command line:
 * - SIGTERM mid-load: /readyz turns 503 while requests are still served for SHUTDOWN_DRAIN; a
 *   client that behaves like a load balancer (stops sending once it sees 503) loses no request;
 *   requests in flight finish after the server stopped accepting connections; exit 0;
 * - a stop that outlasts SHUTDOWN_TIMEOUT exits 1;
 * - in the local cluster the gateway drains while the services behind it still answer;
 * - a process whose NATS is gone for good (past NATS_RECONNECT_GIVE_UP) exits 69.
 */
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { Agent, request, type IncomingMessage } from "node:http";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { requireBinary } from "../support/infra";
import { startNatsServer } from "../support/nats-server";
import { runOrdermesh, waitForHttp, type OrdermeshProcess } from "../support/ordermesh-process";
import { freePort } from "../support/ports";
import { waitFor } from "../support/wait";

jest.setTimeout(120_000);

const nats = requireBinary("nats-server", "apt-get install nats-server");

const SKU = "FILTER-PAPER-100";
const DRAIN = "1500ms";
const GRACE_MS = 20_000;
const WORKERS = 6;
/** The first bytes of a slow request's body go before SIGTERM; the rest once the drain is over. */
const SLOW_REQUESTS = 2;

/** Keep the rate limits out of a test that is about stopping. */
const NO_RATE_LIMITS = { RATE_LIMIT_ORDERS: "off", RATE_LIMIT_WRITES: "off", RATE_LIMIT_READS: "off" };

interface Outcome {
  status: number;
  /** The response's Connection header. */
  connection: string | undefined;
  body: string;
}

interface Sent {
  what: string;
  startedAt: number;
  endedAt?: number;
  outcome?: Outcome;
  error?: string;
}

/** The answer in `res`, read to its end. */
function readOutcome(res: IncomingMessage): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    let text = "";
    res.setEncoding("utf8");
    res.on("data", (chunk: string) => (text += chunk));
    res.on("end", () =>
      resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, body: text }),
    );
    res.on("error", reject);
  });
}

/** One HTTP exchange; `agent: false` opens a connection of its own. */
function send(
  port: number,
  agent: Agent | false,
  method: string,
  path: string,
  options: { token?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<Outcome> {
  const body = options.body === undefined ? undefined : JSON.stringify(options.body);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        method,
        path,
        agent,
        headers: {
          ...options.headers,
          ...(options.token === undefined ? {} : { authorization: `Bearer ${options.token}` }),
          ...(body === undefined
            ? {}
            : { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)) }),
        },
      },
      (res) => readOutcome(res).then(resolve, reject),
    );
    req.on("error", reject);
    req.end(body);
  });
}

/** An order whose body arrives in two parts: the request is in flight until `finish()`. */
function slowOrder(port: number, token: string): { entry: Sent; finish(): void; response: Promise<Outcome> } {
  const body = JSON.stringify({ items: [{ sku: SKU, quantity: 1 }], paymentMethod: "pm_card_visa" });
  const entry: Sent = { what: "POST /api/v1/orders (slow body)", startedAt: Date.now() };
  let finish = (): void => undefined;
  const response = new Promise<Outcome>((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        method: "POST",
        path: "/api/v1/orders",
        agent: new Agent({ keepAlive: true }),
        headers: {
          authorization: `Bearer ${token}`,
          "idempotency-key": randomUUID(),
          "content-type": "application/json",
          "content-length": String(Buffer.byteLength(body)),
        },
      },
      (res) => readOutcome(res).then(resolve, reject),
    );
    req.on("error", reject);
    req.write(body.slice(0, 12));
    finish = () => req.end(body.slice(12));
  });
  void response.then(
    (outcome) => Object.assign(entry, { outcome, endedAt: Date.now() }),
    // a test that failed earlier ends the process under it
    (err: unknown) => Object.assign(entry, { error: String(err), endedAt: Date.now() }),
  );
  return { entry, finish: () => finish(), response };
}

/** True when a new TCP connection to `port` is refused. */
function connectionRefused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(false);
    });
    socket.once("error", (err: NodeJS.ErrnoException) => resolve(err.code === "ECONNREFUSED"));
  });
}

async function devToken(port: number, sub: string, roles: string[] = ["customer"]): Promise<string> {
  const res = await send(port, false, "POST", "/api/v1/dev/token", { body: { sub, roles } });
  if (res.status !== 200) throw new Error(`dev token: ${res.status} ${res.body}`);
  return (JSON.parse(res.body) as { token: string }).token;
}

/** The N of the gateway's "waiting for N in-flight request(s)" log line, or null before it. */
function inFlightAtClose(output: string): number | null {
  const match = /stopped accepting connections; waiting for (\d+) in-flight/.exec(output);
  return match === null ? null : Number(match[1]);
}

/**
 * Keep-alive clients, each on its own connection, alternating product reads and orders, that act
 * like a load balancer: once its health check sees /readyz 503, no new request is sent (requests
 * already sent run to their end).
 */
class LoadGenerator {
  readonly sent: Sent[] = [];
  notReadySeenAt: number | undefined;
  private readonly agents: Agent[] = [];
  private readonly running: Promise<void>[] = [];
  private stopped = false;

  constructor(
    private readonly port: number,
    private readonly tokens: string[],
  ) {}

  start(): void {
    this.tokens.forEach((token, i) => {
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      this.agents.push(agent);
      this.running.push(this.worker(agent, token, i));
    });
    this.running.push(this.healthCheck());
  }

  get ok(): number {
    return this.sent.filter((s) => s.outcome !== undefined && s.outcome.status < 300).length;
  }

  get failed(): Sent[] {
    return this.sent.filter(
      (s) => s.error !== undefined || (s.outcome !== undefined && s.outcome.status >= 300),
    );
  }

  /** Resolves once every worker has stopped and its last request ended. */
  async finished(): Promise<void> {
    await Promise.all(this.running);
    for (const agent of this.agents) agent.destroy();
  }

  /** Stop at once (a failed test must not leave clients behind). */
  abort(): void {
    this.stopped = true;
  }

  private sending(): boolean {
    return !this.stopped && this.notReadySeenAt === undefined;
  }

  private async worker(agent: Agent, token: string, index: number): Promise<void> {
    for (let n = index; this.sending(); n++) {
      const order = n % 2 === 0;
      const entry: Sent = {
        what: order ? "POST /api/v1/orders" : "GET /api/v1/products",
        startedAt: Date.now(),
      };
      this.sent.push(entry);
      try {
        entry.outcome = order
          ? await send(this.port, agent, "POST", "/api/v1/orders", {
              token,
              body: { items: [{ sku: SKU, quantity: 1 }], paymentMethod: "pm_card_visa" },
              headers: { "idempotency-key": randomUUID() },
            })
          : await send(this.port, agent, "GET", "/api/v1/products", { token });
      } catch (err) {
        entry.error = err instanceof Error ? err.message : String(err);
      }
      entry.endedAt = Date.now();
    }
  }

  private async healthCheck(): Promise<void> {
    while (this.sending()) {
      try {
        const res = await send(this.port, false, "GET", "/readyz");
        if (res.status === 503) this.notReadySeenAt = Date.now();
      } catch {
        // a health check that cannot connect counts as not ready too
        this.notReadySeenAt = Date.now();
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

describe("shutdown", () => {
  const cleanup: (() => Promise<unknown> | void)[] = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  function tempDir(): string {
    const dir = mkdtempSync(join(tmpdir(), "ordermesh-shutdown-"));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    return dir;
  }

  function launch(args: string[], env: Record<string, string>): OrdermeshProcess {
    const proc = runOrdermesh(args, env);
    cleanup.push(() => proc.stop());
    return proc;
  }

  /** SIGTERM mid-load against a running gateway, then every check of a clean stop. */
  async function stopUnderLoad(proc: OrdermeshProcess, port: number): Promise<void> {
    const alive = (): boolean => proc.child.exitCode === null && proc.child.signalCode === null;
    await waitForHttp(`http://127.0.0.1:${port}/readyz`, (s) => s === 200, 90_000, alive);
    expect((await send(port, false, "GET", "/startupz")).status).toBe(200);

    const admin = await devToken(port, "shutdown-admin", ["admin"]);
    const restock = await send(port, false, "POST", `/api/v1/products/${SKU}/restock`, {
      token: admin,
      body: { quantity: 100_000 },
    });
    expect(restock.status).toBe(200);
    const tokens = await Promise.all(
      Array.from({ length: WORKERS }, (_, i) => devToken(port, `shutdown-customer-${i}`)),
    );

    const slow = tokens.slice(0, SLOW_REQUESTS).map((token) => slowOrder(port, token));
    const load = new LoadGenerator(port, tokens);
    cleanup.push(() => {
      load.abort();
      for (const s of slow) s.finish();
    });
    load.start();
    await waitFor("the load to run", () => load.ok >= 100, 30_000);
    expect(load.failed).toEqual([]);

    const sigtermAt = Date.now();
    proc.child.kill("SIGTERM");

    await waitFor("the health check to see /readyz 503", () => load.notReadySeenAt !== undefined, 5_000);
    // a request sent before the load balancer noticed is still served, on a connection closed after it
    const straggler = await send(port, false, "GET", "/api/v1/products");
    expect(straggler.status).toBe(200);
    expect(straggler.connection).toBe("close");
    const readyz = await send(port, false, "GET", "/readyz");
    expect(readyz.status).toBe(503);
    expect(JSON.parse(readyz.body)).toMatchObject({ status: "not_ready", checks: { broker: { ok: false } } });

    await load.finished();
    await waitFor("the drain to end", () => inFlightAtClose(proc.output()) !== null, 10_000);
    // the slow requests hold the process: new connections are refused while it still runs
    expect(await connectionRefused(port)).toBe(true);
    expect(alive()).toBe(true);
    expect(inFlightAtClose(proc.output())).toBeGreaterThanOrEqual(SLOW_REQUESTS);

    for (const s of slow) s.finish();
    const answers = await Promise.all(slow.map((s) => s.response));
    for (const answer of answers) {
      expect(answer.status).toBe(201);
      expect(answer.connection).toBe("close");
    }

    const { code } = await proc.exited;
    const exitedAfterMs = Date.now() - sigtermAt;
    const all = [...load.sent, ...slow.map((s) => s.entry)];
    const inFlightAtSigterm = all.filter(
      (s) => s.startedAt <= sigtermAt && (s.endedAt ?? Infinity) > sigtermAt,
    );
    const answeredAfterSigterm = inFlightAtSigterm.filter(
      (s) => s.outcome !== undefined && s.outcome.status < 300,
    );
    console.log(
      [
        `requests sent ${all.length + 1}`,
        `ok ${all.filter((s) => s.outcome !== undefined && s.outcome.status < 300).length + 1}`,
        `failed ${load.failed.length}`,
        `in flight at SIGTERM ${inFlightAtSigterm.length} (${answeredAfterSigterm.length} answered 2xx)`,
        `in flight when the server closed ${inFlightAtClose(proc.output()) ?? "?"}`,
        `exit ${code} after ${exitedAfterMs} ms (grace ${GRACE_MS} ms)`,
      ].join(" · "),
    );
    expect(load.failed).toEqual([]);
    expect(all.every((s) => s.endedAt !== undefined)).toBe(true);
    expect(answeredAfterSigterm.length).toBeGreaterThanOrEqual(1);
    expect(answeredAfterSigterm).toEqual(inFlightAtSigterm);
    // exit 0 means within SHUTDOWN_TIMEOUT: past it the process exits 1
    expect(code).toBe(0);
    expect(proc.output()).not.toContain("stop took longer");
    expect(proc.output()).toContain(`draining: not ready, still serving for 1500 ms`);
  }

  /** Launch `command` with dev tokens, the drain and the grace, then stop it under load. */
  async function launchAndStopUnderLoad(command: "start" | "cluster"): Promise<OrdermeshProcess> {
    const port = await freePort();
    const proc = launch([command], {
      PORT: String(port),
      DATA_DIR: tempDir(),
      AUTH_DEV_TOKENS: "true",
      SHUTDOWN_DRAIN: DRAIN,
      SHUTDOWN_TIMEOUT: `${GRACE_MS}ms`,
      LOG_LEVEL: "info",
      ...NO_RATE_LIMITS,
    });
    await stopUnderLoad(proc, port);
    return proc;
  }

  it("embedded: SIGTERM under load drains, answers every request and exits 0", async () => {
    await launchAndStopUnderLoad("start");
  });

  it("exits 1 when the stop outlasts SHUTDOWN_TIMEOUT", async () => {
    const port = await freePort();
    const proc = launch(["start"], {
      PORT: String(port),
      DATA_DIR: tempDir(),
      SHUTDOWN_DRAIN: "10s",
      SHUTDOWN_TIMEOUT: "1s",
      LOG_LEVEL: "info",
    });
    await waitForHttp(
      `http://127.0.0.1:${port}/readyz`,
      (s) => s === 200,
      60_000,
      () => proc.child.exitCode === null,
    );
    expect(proc.output()).toContain("SHUTDOWN_DRAIN (10000 ms) is not shorter than SHUTDOWN_TIMEOUT");
    proc.child.kill("SIGTERM");
    const { code } = await proc.exited;
    expect(code).toBe(1);
    expect(proc.output()).toContain("stop took longer than 1000 ms: exiting");
  });

  it("refuses an invalid NATS_RECONNECT_GIVE_UP and names it", async () => {
    const proc = launch(["start"], { DATA_DIR: tempDir(), NATS_RECONNECT_GIVE_UP: "soon" });
    const { code } = await proc.exited;
    expect(code).toBe(78);
    expect(proc.output()).toContain("invalid configuration: NATS_RECONNECT_GIVE_UP:");
  });

  nats.describe("over NATS", () => {
    it("local cluster: the gateway drains first, so requests in flight still reach the services", async () => {
      const proc = await launchAndStopUnderLoad("cluster");
      // the slow orders above were answered 201 after the drain: orders and inventory were still up.
      // The supervisor stopped them once the gateway had exited.
      const output = proc.output();
      const gatewayStop = output.indexOf("[cluster] stopping gateway\n");
      expect(gatewayStop).toBeGreaterThan(-1);
      expect(output.indexOf("[cluster] stopping orders, inventory, payments, notifications")).toBeGreaterThan(
        gatewayStop,
      );
    });

    it("a process whose NATS is gone for good exits 69 and says why", async () => {
      const server = await startNatsServer();
      cleanup.push(() => server.stop());
      const proc = launch(["start"], {
        SERVICES: "orders",
        NATS_URL: server.url,
        NATS_RECONNECT_GIVE_UP: "2s",
        DATA_DIR: tempDir(),
        LOG_LEVEL: "info",
      });
      await waitFor("ordermesh to start", () => proc.output().includes("ordermesh started: orders"), 60_000);
      expect(proc.child.exitCode).toBeNull();

      await server.kill();
      const { code } = await proc.exited;
      expect(code).toBe(69);
      expect(proc.output()).toMatch(/NATS connection is closed for good \(.+\): exiting \(69\)/);
    });
  });
});
