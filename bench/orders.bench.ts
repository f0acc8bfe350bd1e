/**
 * Orders over HTTP: `POST /api/v1/orders` through the gateway of a real ordermesh (a child
 * process: `ordermesh start` for embedded mode, `ordermesh cluster` for cluster mode), with the
 * payment-provider simulator in this process. Reports, per mode:
 * - the same-run ceiling: the gateway calling a trivial action of another service (`orders.ping`
 *   through `GET /_bench/ping`, a route mounted only with ORDERMESH_BENCH_ROUTES=true);
 * - placement at full speed (closed loop): orders/s, p50/p99 placement latency;
 * - placement paced at 500 orders/s (open loop): p50/p99 placement latency;
 * - placement → PAID latency (from the client's send to the PAID entry of the order's status
 *   history) and orders placed and paid per second.
 *
 *   npm run bench -- orders
 *
 * Sizes: BENCH_ORDERS_MODES (default "embedded,cluster"), BENCH_ORDERS_COUNT (full speed,
 * default 4000), BENCH_ORDERS_SKUS (products the orders spread over, default 50), BENCH_ORDERS_CONCURRENCY (default 64), BENCH_ORDERS_PACED_SECONDS (default 10);
 * BENCH_ORDERS_LOG=<file> keeps ordermesh's log. Refused requests are counted and reported, not hidden.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, openSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { issueToken } from "../lib/auth/jwt";
import { freePort } from "../lib/local-servers/ports";
import { startPspSimulator } from "../lib/psp/psp.simulator";
import { nowMs, percentile, printReport, progress, type Measurement } from "./report";

const MODES = (process.env.BENCH_ORDERS_MODES ?? "embedded,cluster").split(",").map((m) => m.trim());
const COUNT = intFromEnv("BENCH_ORDERS_COUNT", 4000);
const CONCURRENCY = intFromEnv("BENCH_ORDERS_CONCURRENCY", 64);
const PACED_SECONDS = intFromEnv("BENCH_ORDERS_PACED_SECONDS", 10);
const PACED_RATE = 500;
const CUSTOMERS = 200;
/** Orders spread over a catalog of this many products (one hot row would measure only its lock). */
const SKUS = Array.from(
  { length: intFromEnv("BENCH_ORDERS_SKUS", 50) },
  (_, i) => `BENCH-${String(i).padStart(3, "0")}`,
);
/** Fresh random secrets per run: ordermesh refuses placeholders and low-entropy values. */
const JWT_SECRET = randomBytes(32).toString("base64url");
const WEBHOOK_SECRET = `whsec_${randomBytes(24).toString("base64url")}`;
const GOALS = { paidPerSecond: 1000, pacedP99Ms: 35, ceilingShare: 0.25 };

function intFromEnv(name: string, fallback: number): number {
  const value = Number(process.env[name]);
  return Number.isInteger(value) && value > 0 ? value : fallback;
}

interface Placed {
  /** Undefined when the order was refused; `error` then says how. */
  id?: string;
  error?: string;
  sentAtEpochMs: number;
}

interface OrderSummary {
  id: string;
  status: string;
  statusHistory: { status: string; at: string }[];
}

class Client {
  private readonly tokens: string[];
  readonly admin: string;

  constructor(readonly base: string) {
    this.tokens = Array.from({ length: CUSTOMERS }, (_, i) =>
      issueToken({ sub: `bench-${i}`, roles: ["customer"] }, { secret: JWT_SECRET }),
    );
    this.admin = issueToken({ sub: "bench-admin", roles: ["admin"] }, { secret: JWT_SECRET });
  }

  async json<T>(
    method: string,
    path: string,
    token: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; body: T }> {
    const res = await fetch(`${this.base}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
        ...headers,
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as T };
  }

  /** Place one order; returns its id and the send time, or the error code of anything but 201. */
  async place(n: number): Promise<Placed> {
    const sentAtEpochMs = Date.now();
    const res = await this.json<{ id: string }>(
      "POST",
      "/api/v1/orders",
      this.tokens[n % CUSTOMERS] as string,
      { items: [{ sku: SKUS[n % SKUS.length] as string, quantity: 1 }], paymentMethod: "pm_card_visa" },
      { "idempotency-key": randomUUID() },
    );
    if (res.status !== 201) {
      const code = (res.body as { error?: { code?: string } }).error?.code ?? "?";
      return { error: `${res.status} ${code}`, sentAtEpochMs };
    }
    return { id: res.body.id, sentAtEpochMs };
  }

  async ping(): Promise<void> {
    const res = await fetch(`${this.base}/_bench/ping`);
    await res.arrayBuffer();
    if (res.status !== 200) throw new Error(`ping: HTTP ${res.status}`);
  }

  async pending(): Promise<number> {
    const res = await this.json<{ items: unknown[] }>(
      "GET",
      "/api/v1/orders?status=PENDING_PAYMENT&limit=100",
      this.admin,
    );
    return res.body.items.length;
  }

  /** Every order, through the admin listing. */
  async allOrders(): Promise<Map<string, OrderSummary>> {
    const all = new Map<string, OrderSummary>();
    let cursor: string | null = null;
    do {
      const query: string = cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`;
      const res: { status: number; body: { items: OrderSummary[]; nextCursor: string | null } } =
        await this.json("GET", `/api/v1/orders?limit=100${query}`, this.admin);
      for (const order of res.body.items) all.set(order.id, order);
      cursor = res.body.nextCursor;
    } while (cursor !== null);
    return all;
  }
}

/** Run `total` operations with `concurrency` workers; per-operation latency in ms. */
async function closedLoop<T>(
  label: string,
  total: number,
  concurrency: number,
  op: (n: number) => Promise<T>,
): Promise<{ results: T[]; latencies: number[]; elapsedMs: number }> {
  const results: T[] = [];
  const latencies: number[] = [];
  let next = 0;
  let done = 0;
  const started = nowMs();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        const n = next++;
        const t0 = nowMs();
        results.push(await op(n));
        latencies.push(nowMs() - t0);
        done += 1;
        if (done % 250 === 0 || done === total) progress(label, done, total);
      }
    }),
  );
  return { results, latencies, elapsedMs: nowMs() - started };
}

/** `rate` operations per second for `seconds`, started on schedule whatever the latency. */
async function openLoop<T>(
  label: string,
  rate: number,
  seconds: number,
  op: (n: number) => Promise<T>,
): Promise<{ results: T[]; latencies: number[]; elapsedMs: number }> {
  const total = rate * seconds;
  const results: T[] = [];
  const latencies: number[] = [];
  const started = nowMs();
  const pending: Promise<void>[] = [];
  for (let n = 0; n < total; n++) {
    const due = started + (n * 1000) / rate;
    const wait = due - nowMs();
    if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
    pending.push(
      (async () => {
        const t0 = nowMs();
        results.push(await op(n));
        latencies.push(nowMs() - t0);
      })(),
    );
    if ((n + 1) % rate === 0) progress(label, n + 1, total);
  }
  await Promise.all(pending);
  return { results, latencies, elapsedMs: nowMs() - started };
}

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`timed out: ${what}`);
}

/** Its log goes to BENCH_ORDERS_LOG when set (a file), else nowhere. */
function spawnOrdermesh(command: string, env: Record<string, string>): ChildProcess {
  const logFile = process.env.BENCH_ORDERS_LOG;
  const entry = join(__dirname, "..", "bin", "ordermesh.js");
  const base = { ...process.env };
  for (const name of ["NATS_URL", "TRANSPORTER", "REDIS_URL", "MONGO_URL", "SERVICES"]) delete base[name];
  const child = spawn(process.execPath, [entry, command], {
    env: { ...base, ...env },
    stdio: ["ignore", logFile === undefined ? "ignore" : openSync(logFile, "a"), "inherit"],
    detached: true,
  });
  return child;
}

async function stopOrdermesh(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  const timer = setTimeout(() => {
    if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
  }, 20_000);
  await exited;
  clearTimeout(timer);
}

/** Placement → PAID latencies (ms) of `placed`, and the time from the first send to the last PAID. */
function paidLatencies(
  placed: Placed[],
  orders: Map<string, OrderSummary>,
): { latencies: number[]; spanMs: number; paid: number } {
  const latencies: number[] = [];
  let lastPaid = 0;
  const firstSent = Math.min(...placed.map((p) => p.sentAtEpochMs));
  for (const p of placed) {
    if (p.id === undefined) continue;
    const paidAt = orders.get(p.id)?.statusHistory.find((s) => s.status === "PAID")?.at;
    if (paidAt === undefined) continue;
    const at = Date.parse(paidAt);
    latencies.push(at - p.sentAtEpochMs);
    lastPaid = Math.max(lastPaid, at);
  }
  return { latencies, spanMs: lastPaid - firstSent, paid: latencies.length };
}

async function benchMode(mode: string): Promise<void> {
  const command = mode === "cluster" ? "cluster" : "start";
  const dir = mkdtempSync(join(tmpdir(), `ordermesh-bench-orders-${mode}-`));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const sim = await startPspSimulator({
    dataDir: join(dir, "provider"),
    port: 0,
    webhookUrl: `${base}/api/v1/payments/webhook`,
    webhookSecret: WEBHOOK_SECRET,
  });
  const child = spawnOrdermesh(command, {
    PORT: String(port),
    DATA_DIR: dir,
    JWT_SECRET,
    PSP_URL: sim.url,
    PSP_WEBHOOK_SECRET: WEBHOOK_SECRET,
    SEED_DEMO: "false",
    LOG_LEVEL: "warn",
    ORDER_PAYMENT_TIMEOUT: "30m",
    ORDERMESH_BENCH_ROUTES: "true",
    // the load comes from one address and a handful of customers: far above the production budgets
    RATE_LIMIT_ORDERS: "100000:100000",
    RATE_LIMIT_WRITES: "100000:100000",
    RATE_LIMIT_READS: "100000:100000",
  });
  try {
    const client = new Client(base);
    await waitUntil(
      "ordermesh ready",
      async () => (await fetch(`${base}/readyz`).catch(() => undefined))?.status === 200,
      120_000,
    );
    for (const sku of SKUS) {
      await client.json("PUT", `/api/v1/products/${sku}`, client.admin, {
        name: `Bench ${sku}`,
        price: { minor: 500, currency: "USD" },
      });
      await client.json("POST", `/api/v1/products/${sku}/restock`, client.admin, { quantity: 1_000_000 });
    }

    // warm-up
    await closedLoop(`${mode} warm-up`, 200, 16, (n) => client.place(n));
    await waitUntil("warm-up paid", async () => (await client.pending()) === 0, 120_000);

    const ceiling = await closedLoop(`${mode} ceiling (gateway → orders.ping)`, COUNT, CONCURRENCY, () =>
      client.ping(),
    );
    const full = await closedLoop(`${mode} placement, ${CONCURRENCY} clients`, COUNT, CONCURRENCY, (n) =>
      client.place(n),
    );
    await waitUntil("full-speed orders paid", async () => (await client.pending()) === 0, 300_000);
    const paced = await openLoop(`${mode} placement at ${PACED_RATE}/s`, PACED_RATE, PACED_SECONDS, (n) =>
      client.place(n),
    );
    await waitUntil("paced orders paid", async () => (await client.pending()) === 0, 300_000);

    const orders = await client.allOrders();
    const fullPaid = paidLatencies(full.results, orders);
    const pacedPaid = paidLatencies(paced.results, orders);

    const rows: Measurement[] = [
      {
        name: "ceiling: gateway → orders.ping over the transport",
        operations: COUNT,
        elapsedMs: ceiling.elapsedMs,
        latenciesMs: ceiling.latencies,
      },
      {
        name: "placement, full speed",
        operations: full.results.filter((p) => p.id !== undefined).length,
        elapsedMs: full.elapsedMs,
        latenciesMs: full.latencies,
      },
      {
        name: "placed and paid, full speed",
        operations: fullPaid.paid,
        elapsedMs: fullPaid.spanMs,
        latenciesMs: fullPaid.latencies,
        note: "latency: placement → PAID",
      },
      {
        name: `placement paced ${PACED_RATE}/s`,
        operations: paced.results.filter((p) => p.id !== undefined).length,
        elapsedMs: paced.elapsedMs,
        latenciesMs: paced.latencies,
      },
      {
        name: `placed and paid, paced ${PACED_RATE}/s`,
        operations: pacedPaid.paid,
        elapsedMs: pacedPaid.spanMs,
        latenciesMs: pacedPaid.latencies,
        note: "latency: placement → PAID",
      },
    ];
    printReport(
      `orders over HTTP, ${mode} mode (${CONCURRENCY} clients; ${COUNT} orders at full speed)`,
      rows,
      rows[0]?.name,
    );

    const paidPerSecond = (fullPaid.paid / fullPaid.spanMs) * 1000;
    const placedFull = full.results.filter((p) => p.id !== undefined).length;
    const share = placedFull / full.elapsedMs / (COUNT / ceiling.elapsedMs);
    const pacedP99 = percentile(paced.latencies, 99);
    console.log(
      `goals (${mode}): placed and paid ≥ ${GOALS.paidPerSecond}/s: ${paidPerSecond.toFixed(0)}/s ${paidPerSecond >= GOALS.paidPerSecond ? "met" : "NOT met"}; ` +
        `p99 placement at ${PACED_RATE}/s ≤ ${GOALS.pacedP99Ms} ms: ${pacedP99.toFixed(1)} ms ${pacedP99 <= GOALS.pacedP99Ms ? "met" : "NOT met"}; ` +
        `placement ≥ ${GOALS.ceilingShare * 100}% of ceiling: ${(share * 100).toFixed(0)}% ${share >= GOALS.ceilingShare ? "met" : "NOT met"}` +
        (mode === "cluster" ? "" : " (the goals are set for cluster mode)"),
    );
    const all = [...full.results, ...paced.results];
    const refused = new Map<string, number>();
    for (const p of all) if (p.error !== undefined) refused.set(p.error, (refused.get(p.error) ?? 0) + 1);
    const unpaid = all.filter((p) => p.id !== undefined && orders.get(p.id)?.status !== "PAID").length;
    const refusals = [...refused].map(([why, n]) => `${n} × ${why}`).join(", ");
    console.log(
      `requests refused: ${refusals === "" ? "none" : refusals}; placed but not PAID at the end: ${unpaid}`,
    );
  } finally {
    await stopOrdermesh(child);
    await sim.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function run(): Promise<void> {
  for (const mode of MODES) await benchMode(mode);
}

if (require.main === module) {
  run().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
