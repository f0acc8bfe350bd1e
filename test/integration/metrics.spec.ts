/**
 * GET /metrics over real HTTP, with every service on one broker (embedded stores, in-process bus)
 * and the payment-provider simulator: per-route HTTP counts and histograms under route templates,
 * the outbox, inbox and breaker figures of every service, process metrics, and a scrape that
 * survives an instance that does not answer. The output is parsed by the rules of the Prometheus
 * text format (version 0.0.4).
 */
import { ServiceBroker, type BrokerOptions } from "moleculer";
import type { InboxStats } from "../../lib/inbox/inbox.consumer";
import type { OutboxStats } from "../../lib/outbox/outbox.relay";
import type { Api, OrderBody } from "../support/api";
import { startGatewayNode, type GatewayNode } from "../support/gateway-node";
import { waitFor } from "../support/wait";

const JWT_SECRET = "metrics-jwt-secret-0123456789";
const WEBHOOK_SECRET = "whsec_metrics_0123456789";
const DOMAIN_SERVICES = ["orders", "inventory", "payments", "notifications"] as const;

// ── a parser of the text format, strict enough to reject what Prometheus rejects ──

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Family {
  name: string;
  type: string;
  help: string;
}

interface Exposition {
  families: Map<string, Family>;
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

/** Parse the whole text; throws on the first line that breaks the format. */
function parseExposition(text: string): Exposition {
  const families = new Map<string, Family>();
  const help = new Map<string, string>();
  const samples: Sample[] = [];
  const seen = new Set<string>();
  const lines = text.split("\n");
  if (lines.pop() !== "") throw new Error("the text must end with a line feed");
  lines.forEach((line, index) => {
    const where = `line ${index + 1} (${line})`;
    if (line === "") return;
    const meta = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
    if (meta !== null) {
      const [, kind, name = "", rest = ""] = meta;
      if (!NAME.test(name)) throw new Error(`bad metric name at ${where}`);
      if (kind === "HELP") {
        if (help.has(name)) throw new Error(`second HELP at ${where}`);
        help.set(name, rest);
        return;
      }
      if (!TYPES.has(rest)) throw new Error(`bad type at ${where}`);
      if (families.has(name)) throw new Error(`second TYPE at ${where}`);
      if (samples.some((s) => familyOf(s.name, families) === name))
        throw new Error(`TYPE after samples at ${where}`);
      families.set(name, { name, type: rest, help: help.get(name) ?? "" });
      return;
    }
    if (line.startsWith("#")) return; // a plain comment
    const sample = parseSample(line, where);
    const family = familyOf(sample.name, families);
    if (family === undefined) throw new Error(`sample without a TYPE before it at ${where}`);
    if (!help.has(family)) throw new Error(`sample without a HELP before it at ${where}`);
    const identity = `${sample.name}${JSON.stringify(Object.entries(sample.labels).sort())}`;
    if (seen.has(identity)) throw new Error(`duplicate series at ${where}`);
    seen.add(identity);
    samples.push(sample);
  });
  return { families, samples };
}

/** `name{a="x",b="y"} value`, with escapes \\ \" \n in label values. */
function parseSample(line: string, where: string): Sample {
  const head = /^([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(line);
  if (head === null) throw new Error(`bad sample at ${where}`);
  const name = head[1] as string;
  let rest = line.slice(name.length);
  const labels: Record<string, string> = {};
  if (rest.startsWith("{")) {
    rest = rest.slice(1);
    while (!rest.startsWith("}")) {
      const label = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,?)/.exec(rest);
      if (label === null) throw new Error(`bad label at ${where}`);
      const [whole, labelName = "", raw = "", comma] = label;
      if (!LABEL_NAME.test(labelName) || labelName in labels) throw new Error(`bad label at ${where}`);
      labels[labelName] = raw.replace(/\\(["\\n])/g, (_, c: string) => (c === "n" ? "\n" : c));
      rest = rest.slice(whole.length);
      if (comma === "" && !rest.startsWith("}")) throw new Error(`bad label list at ${where}`);
    }
    rest = rest.slice(1);
  }
  const value = /^ (\S+)$/.exec(rest);
  if (value === null) throw new Error(`bad value at ${where}`);
  return { name, labels, value: parseValue(value[1] as string, where) };
}

/**
 * A sample value as Prometheus reads it (Go's ParseFloat): a decimal or exponent float, or Inf /
 * NaN in any letter case (prom-client writes `Nan`).
 */
function parseValue(text: string, where: string): number {
  if (/^[+-]?inf(inity)?$/i.test(text)) return text.startsWith("-") ? -Infinity : Infinity;
  if (/^nan$/i.test(text)) return NaN;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) throw new Error(`bad value at ${where}`);
  return Number(text);
}

/** The family a sample belongs to: its own name, or a histogram's/summary's name for its series. */
function familyOf(sample: string, families: Map<string, Family>): string | undefined {
  if (families.has(sample)) return sample;
  const base = /^(.*)_(bucket|sum|count)$/.exec(sample)?.[1];
  if (base === undefined) return undefined;
  const type = families.get(base)?.type;
  return type === "histogram" || type === "summary" ? base : undefined;
}

/** Samples named `name` whose labels include every one of `labels`. */
function select(exposition: Exposition, name: string, labels: Record<string, string> = {}): Sample[] {
  return exposition.samples.filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
}

/** The value of the one sample named `name` with `labels`; fails when there is none or several. */
function valueOf(exposition: Exposition, name: string, labels: Record<string, string> = {}): number {
  const found = select(exposition, name, labels);
  if (found.length !== 1)
    throw new Error(`expected one ${name} ${JSON.stringify(labels)}, found ${found.length}`);
  return (found[0] as Sample).value;
}

// ── the suite ──

type MessageHandler = (cmd: string, packet: unknown) => Promise<void>;

/**
 * A broker middleware that drops every incoming request, as a frozen process would. Moleculer's
 * typings give this hook the handler's return type; at run time it returns the wrapped handler.
 */
const dropRequests = {
  name: "DropRequests",
  transitMessageHandler:
    (next: MessageHandler): MessageHandler =>
    (cmd, packet) =>
      cmd === "REQ" ? Promise.resolve() : next(cmd, packet),
} as unknown as NonNullable<BrokerOptions["middlewares"]>[number];

describe("gateway metrics", () => {
  let node: GatewayNode | undefined;
  let broker: ServiceBroker;
  let api: Api;
  let scrapes: number;
  let namespace: string;
  /** Another node of the cluster, when a test starts one. */
  let other: ServiceBroker | undefined;

  /** Every service on one broker; `overrides` of its options (a transporter to let other nodes in). */
  async function start(overrides: Partial<BrokerOptions> = {}): Promise<void> {
    node = await startGatewayNode({
      name: "metrics",
      jwtSecret: JWT_SECRET,
      webhookSecret: WEBHOOK_SECRET,
      broker: overrides,
    });
    ({ broker, api } = node);
    namespace = node.config.namespace;
    scrapes = 0;
  }

  beforeEach(() => {
    other = undefined;
  });

  afterEach(async () => {
    await other?.stop();
    await node?.stop();
    node = undefined;
  });

  async function scrape(): Promise<{ contentType: string | null; text: string; exposition: Exposition }> {
    const res = await fetch(`${api.base}/metrics`, { signal: AbortSignal.timeout(10_000) });
    scrapes += 1;
    expect(res.status).toBe(200);
    const text = await res.text();
    return { contentType: res.headers.get("content-type"), text, exposition: parseExposition(text) };
  }

  function call<T>(service: string, action: string): Promise<T> {
    return broker.call<T, Record<string, never>>(`${service}.${action}`, {});
  }

  it("counts requests by route template and status, with histograms that agree with the counters", async () => {
    await start();
    const alice = api.token("alice");
    const placed = await api.placeOrder(alice, [{ sku: "MUG-BLUE", quantity: 1 }]);
    expect(placed.status).toBe(201);
    const id = placed.body.id;

    // two reads of the order: the raw URL carries its id, the label must not
    let reads = 0;
    const read = async (): Promise<OrderBody> => {
      reads += 1;
      return (await api.request<OrderBody>("GET", `/api/v1/orders/${id}`, { token: alice })).body;
    };
    await read();
    await read();
    expect((await api.request("GET", "/api/v1/nothing-here")).status).toBe(404);
    expect((await api.request("GET", "/nope")).status).toBe(404);
    expect((await api.request("GET", "/api/v1/orders")).status).toBe(401);
    // a parameter the router cannot decode: answered 400, counted as unmatched, the process lives on
    expect((await api.request("GET", "/api/v1/products/%G1")).status).toBe(400);
    // refused by the body parser, before moleculer-web records the alias: still its template
    const badJson = await fetch(`${api.base}/api/v1/orders`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${alice}`,
        "content-type": "application/json",
        "idempotency-key": "k",
      },
      body: '{"items": [',
    });
    expect(badJson.status).toBe(400);
    await badJson.text();

    const first = await scrape();
    expect(first.contentType).toBe("text/plain; version=0.0.4; charset=utf-8");
    const m = first.exposition;
    expect(m.families.get("http_requests_total")?.type).toBe("counter");
    expect(m.families.get("http_request_duration_seconds")?.type).toBe("histogram");
    const requests = (method: string, route: string, status: string) =>
      valueOf(m, "http_requests_total", { method, route, status });
    expect(requests("POST", "/api/v1/orders", "201")).toBe(1);
    expect(requests("POST", "/api/v1/orders", "400")).toBe(1);
    expect(requests("GET", "/api/v1/orders/:id", "200")).toBe(reads);
    expect(requests("GET", "/api/v1/orders", "401")).toBe(1);
    expect(requests("GET", "unmatched", "404")).toBe(2);
    expect(requests("GET", "unmatched", "400")).toBe(1);
    // the scrape that is being answered is not finished yet, so not counted
    expect(select(m, "http_requests_total", { route: "/metrics" })).toHaveLength(0);
    // no raw URL ever becomes a label value
    const routes = new Set(select(m, "http_requests_total").map((s) => s.labels.route));
    for (const route of routes) expect(route).not.toContain(id);
    expect(routes).not.toContain("/nope");
    expect(routes).not.toContain("/api/v1/nothing-here");

    // every histogram: cumulative buckets, +Inf bucket = _count = the counter summed over statuses
    const series = new Set(
      select(m, "http_request_duration_seconds_count").map((s) => `${s.labels.method} ${s.labels.route}`),
    );
    expect(series).toContain("GET /api/v1/orders/:id");
    for (const key of series) {
      const [method = "", route = ""] = key.split(" ");
      const count = valueOf(m, "http_request_duration_seconds_count", { method, route });
      const counted = select(m, "http_requests_total", { method, route }).reduce(
        (sum, s) => sum + s.value,
        0,
      );
      expect([key, count]).toEqual([key, counted]);
      const buckets = select(m, "http_request_duration_seconds_bucket", { method, route })
        .map((s) => ({ le: s.labels.le === "+Inf" ? Infinity : Number(s.labels.le), value: s.value }))
        .sort((a, b) => a.le - b.le);
      expect(buckets.length).toBeGreaterThan(1);
      for (let i = 1; i < buckets.length; i++)
        expect((buckets[i] as { value: number }).value).toBeGreaterThanOrEqual(
          (buckets[i - 1] as { value: number }).value,
        );
      expect(buckets.at(-1)).toEqual({ le: Infinity, value: count });
      expect(valueOf(m, "http_request_duration_seconds_sum", { method, route })).toBeGreaterThan(0);
    }

    // the first scrape is counted by the next one
    const second = await scrape();
    expect(
      valueOf(second.exposition, "http_requests_total", { method: "GET", route: "/metrics", status: "200" }),
    ).toBe(scrapes - 1);
  });

  it("reports outbox, inbox and breaker figures of every service instance, and process metrics", async () => {
    await start();
    const alice = api.token("alice");
    const placed = await api.placeOrder(alice, [{ sku: "MUG-BLUE", quantity: 1 }]);
    expect(placed.status).toBe(201);
    // paid and notified: every service has published or consumed something by then
    await waitFor(
      "notifications to consume order.paid",
      async () =>
        ((await call<InboxStats>("notifications", "inboxStats")).subscriptions["order.paid"]?.processed ??
          0) >= 1,
      20_000,
    );
    await waitFor(
      "the outboxes to drain",
      async () => {
        const stats = await Promise.all(DOMAIN_SERVICES.map((s) => call<OutboxStats>(s, "outboxStats")));
        return stats.every((s) => s.pending === 0);
      },
      20_000,
    );

    const { exposition: m } = await scrape();
    const node = broker.nodeID;
    for (const service of DOMAIN_SERVICES) {
      const at = { service, node };
      expect([service, valueOf(m, "ordermesh_scrape_error", at)]).toEqual([service, 0]);
      expect([service, valueOf(m, "ordermesh_outbox_pending", at)]).toEqual([service, 0]);
      expect(valueOf(m, "ordermesh_outbox_dead", at)).toBe(0);
      expect(valueOf(m, "ordermesh_outbox_oldest_pending_age_seconds", at)).toBe(0);
      expect(valueOf(m, "ordermesh_inbox_dead_letters", at)).toBe(0);
      expect(select(m, "ordermesh_outbox_published_total", at)).toHaveLength(1);
      expect(select(m, "ordermesh_inbox_processed_total", at).length).toBeGreaterThan(0);
    }
    // what one paid order sends through the system
    expect(
      valueOf(m, "ordermesh_outbox_published_total", { service: "orders", node }),
    ).toBeGreaterThanOrEqual(2);
    expect(
      valueOf(m, "ordermesh_outbox_published_total", { service: "payments", node }),
    ).toBeGreaterThanOrEqual(1);
    const processed = (service: string, event: string) =>
      valueOf(m, "ordermesh_inbox_processed_total", { service, node, event });
    expect(processed("payments", "order.created")).toBe(1);
    expect(processed("orders", "payment.captured")).toBe(1);
    expect(processed("inventory", "order.created")).toBe(1);
    expect(processed("notifications", "order.paid")).toBe(1);
    expect(
      valueOf(m, "ordermesh_inbox_dead_lettered_total", {
        service: "orders",
        node,
        event: "payment.captured",
      }),
    ).toBe(0);
    expect(m.families.get("ordermesh_outbox_published_total")?.type).toBe("counter");
    expect(m.families.get("ordermesh_inbox_processed_total")?.type).toBe("counter");
    expect(m.families.get("ordermesh_outbox_pending")?.type).toBe("gauge");
    expect(m.families.get("ordermesh_inbox_in_flight")?.type).toBe("gauge");

    // the payments service's provider breaker: closed, and only closed
    const psp = { service: "payments", node, breaker: "psp" };
    expect(valueOf(m, "ordermesh_breaker_state", { ...psp, state: "closed" })).toBe(1);
    expect(valueOf(m, "ordermesh_breaker_state", { ...psp, state: "open" })).toBe(0);
    expect(valueOf(m, "ordermesh_breaker_state", { ...psp, state: "halfOpen" })).toBe(0);
    expect(valueOf(m, "ordermesh_breaker_window_successes", psp)).toBeGreaterThanOrEqual(1);
    expect(valueOf(m, "ordermesh_breaker_window_rejects", psp)).toBe(0);
    expect(valueOf(m, "ordermesh_breaker_transitions_total", { ...psp, state: "open" })).toBe(0);
    expect(m.families.get("ordermesh_breaker_state")?.type).toBe("gauge");

    // the gateway process itself
    expect(valueOf(m, "process_cpu_user_seconds_total")).toBeGreaterThan(0);
    expect(valueOf(m, "nodejs_heap_size_used_bytes")).toBeGreaterThan(0);
  });

  it("reports a node that does not answer in time, and every other instance all the same", async () => {
    // a two-node cluster in this process: Moleculer's in-memory transporter
    await start({ transporter: "Fake" });
    // a frozen node: still in the registry, but it never reads a request (a stopped process, a
    // partition); with a handler that merely hangs, its own broker would answer a timeout error
    other = new ServiceBroker({
      namespace,
      nodeID: "frozen-node",
      transporter: "Fake",
      logger: false,
      middlewares: [dropRequests],
    });
    other.createService({
      name: "frozen",
      actions: {
        outboxStats: {
          visibility: "public",
          handler: () => ({ pending: 0, oldestPendingAgeMs: null, dead: 0, publishedLastMinute: 0 }),
        },
      },
    });
    await other.start();
    await broker.waitForServices("frozen", 10_000);

    const { exposition: m } = await scrape();
    expect(valueOf(m, "ordermesh_scrape_error", { service: "frozen", node: "frozen-node" })).toBe(1);
    expect(select(m, "ordermesh_outbox_pending", { service: "frozen" })).toHaveLength(0);
    const node = broker.nodeID;
    for (const service of DOMAIN_SERVICES) {
      expect([service, valueOf(m, "ordermesh_scrape_error", { service, node })]).toEqual([service, 0]);
      expect(select(m, "ordermesh_outbox_pending", { service, node })).toHaveLength(1);
    }
    // the abandoned call is not left among the broker's running calls, where it would hold up its
    // stop until the shutdown timeout
    expect((broker as unknown as { _trackedContexts: unknown[] })._trackedContexts).toHaveLength(0);
  });
});
