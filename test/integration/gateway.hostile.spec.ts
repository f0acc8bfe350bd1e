/**
 * The HTTP API against hostile clients. fast-check generates well over 2,000 requests across every
 * route — forged, expired and misused tokens, other customers' orders, unknown fields, wrong types
 * and ranges, malformed, oversized and non-JSON bodies, invalid UTF-8, odd methods, paths, headers
 * and query strings, forged webhooks — and each answer is judged by the README's HTTP API section: never a 5xx, every
 * error the envelope `{ error: { code, message, details?, requestId } }` with the X-Request-Id
 * header's id, no internals, the status the contract names. After the run no store has changed and
 * no built-in prototype is polluted. Rate limits are off, so that a 429 never hides an answer.
 *
 * Requests go out through node:http byte for byte (raw paths, duplicated headers, any body bytes).
 * The seed is fixed (HOSTILE_SEED overrides it); the seed and the count of answers per status are
 * printed at the end. Each property stops at its first failing request, shrunk by fast-check;
 * HOSTILE_REPORT=all sends every request instead and lists each kind of failure once.
 */
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import fc from "fast-check";
import type { ServiceBroker } from "moleculer";
import { SUBJECT } from "../../lib/auth/jwt";
import { signPayload } from "../../lib/psp/psp.signature";
import { SKU_PATTERN } from "../../models/inventory";
import { startGatewayNode, type GatewayNode } from "../support/gateway-node";
import {
  describeRequest,
  describeResponse,
  freeOfLeakMarkers,
  internalMarkers,
  problemsWith,
  prototypeFingerprint,
  sendRaw,
  settledFingerprint,
  signJwt,
  type Expectation,
  type Header,
  type RawRequest,
  type StateFingerprint,
} from "../support/hostile";

const JWT_SECRET = "gateway-hostile-secret-0123456789";
const WEBHOOK_SECRET = "whsec_gateway_hostile_0123456789";
const SEED = Number(process.env.HOSTILE_SEED ?? 20_260_611);
const CATALOG = ["MUG-BLUE", "MUG-RED", "COFFEE-ETHIOPIA-250", "TEA-EARL-GREY"] as const;
const PROPERTY_TIMEOUT_MS = 60_000;
/** HOSTILE_REPORT=all: list every kind of failure instead of stopping at the first. */
const REPORT_ALL = process.env.HOSTILE_REPORT === "all";
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g;

type Viewer = "alice" | "bob" | "admin" | "anonymous";

/** A generated request, who sends it, and what the contract allows as its answer. */
interface Probe {
  request: RawRequest;
  expect: Expectation;
  viewer: Viewer;
}

/** What the generators need to know about the running system. */
interface World {
  port: number;
  tokens: { alice: string; bob: string; admin: string };
  /** alice's paid order, and her order cancelled by a declined card. */
  paid: string;
  cancelled: string;
  /** The provider's id of the paid order's payment (what a forged webhook would name). */
  providerPaymentId: string;
  /** alice's order and payment ids: nobody else may ever see them. */
  secrets: string[];
  tokenNames: Map<string, string>;
  leaks: RegExp[];
}

// ── answers to the contract's statuses ──────────────────────────────────
const STATUS = {
  ok: { statuses: [200] },
  unauthorized: { statuses: [401], codes: ["UNAUTHORIZED", "TOKEN_EXPIRED"] },
  forbidden: { statuses: [403], codes: ["FORBIDDEN"] },
  notFound: { statuses: [404] },
  invalid: { statuses: [400], codes: ["VALIDATION_ERROR"] },
  invalidJson: { statuses: [400], codes: ["INVALID_JSON"] },
  invalidUtf8: { statuses: [400], codes: ["INVALID_JSON", "VALIDATION_ERROR"] },
  tooLarge: { statuses: [413], codes: ["PAYLOAD_TOO_LARGE"] },
  unsupportedMedia: { statuses: [415], codes: ["UNSUPPORTED_MEDIA_TYPE"] },
  noSuchMethod: { statuses: [404, 405] },
} as const satisfies Record<string, Expectation>;

/** Exceptions thrown by listeners of a response (after the answer): outside a test, each ends the process. */
const uncaught: string[] = [];

/**
 * Record what a response's event listeners throw (a `finish` hook, say), against the request
 * that caused it: nothing would catch it in production, where it stops the process.
 */
function catchEscapes(server: Server): void {
  server.prependListener("request", (_req: IncomingMessage, res: ServerResponse) => {
    const emit = res.emit.bind(res) as (event: string | symbol, ...args: unknown[]) => boolean;
    res.emit = ((event: string | symbol, ...args: unknown[]) => {
      try {
        return emit(event, ...args);
      } catch (err) {
        uncaught.push(err instanceof Error ? `${err.name}: ${err.message}` : String(err));
        return true;
      }
    }) as typeof res.emit;
  });
}

// ── the run's tally, printed at the end ─────────────────────────────────
const byStatus = new Map<number, number>();
const byProperty = new Map<string, number>();

describe("gateway HTTP API against hostile clients", () => {
  let node: GatewayNode | undefined;
  let broker: ServiceBroker;
  let world: World;
  let stateBefore: StateFingerprint;
  let prototypesBefore: string;

  beforeAll(async () => {
    node = await startGatewayNode({
      name: "gateway-hostile",
      jwtSecret: JWT_SECRET,
      webhookSecret: WEBHOOK_SECRET,
      devTokens: true,
      env: { RATE_LIMIT_READS: "off", RATE_LIMIT_WRITES: "off", RATE_LIMIT_ORDERS: "off" },
    });
    ({ broker } = node);
    const { api, dir, port: gatewayPort } = node;

    const tokens = { alice: api.token("alice"), bob: api.token("bob"), admin: api.token("ops", ["admin"]) };
    const paid = await api.placeOrder(tokens.alice, [{ sku: "MUG-BLUE", quantity: 1 }], "pm_card_visa");
    const declined = await api.placeOrder(
      tokens.alice,
      [{ sku: "MUG-RED", quantity: 2 }],
      "pm_card_declined",
    );
    expect([paid.status, declined.status]).toEqual([201, 201]);
    await api.waitForOrder(tokens.alice, paid.body.id, ["PAID"]);
    await api.waitForOrder(tokens.alice, declined.body.id, ["CANCELLED"]);
    const payments = await api.request<{ items: { id: string; providerPaymentId?: string }[] }>(
      "GET",
      `/api/v1/payments?orderId=${paid.body.id}`,
      { token: tokens.alice },
    );
    const payment = payments.body.items[0];
    if (payment?.providerPaymentId === undefined) throw new Error("the paid order has no provider payment");

    world = {
      port: gatewayPort,
      tokens,
      paid: paid.body.id,
      cancelled: declined.body.id,
      providerPaymentId: payment.providerPaymentId,
      secrets: [paid.body.id, declined.body.id, payment.id, payment.providerPaymentId],
      tokenNames: new Map([
        [tokens.alice, "token: alice, customer"],
        [tokens.bob, "token: bob, customer"],
        [tokens.admin, "token: ops, admin"],
      ]),
      leaks: internalMarkers(dir, process.cwd()),
    };
    stateBefore = await settledFingerprint(broker);
    prototypesBefore = prototypeFingerprint();
    catchEscapes(node.server);
  }, 60_000);

  afterAll(async () => {
    const total = [...byStatus.values()].reduce((a, b) => a + b, 0);
    const statuses = [...byStatus.entries()].sort(([a], [b]) => a - b).map(([s, n]) => `${s}: ${n}`);
    const properties = [...byProperty.entries()].map(([name, n]) => `  ${n}\t${name}`);
    console.log(
      [
        `hostile HTTP run — seed ${SEED}, ${total} requests`,
        `answers by status: ${statuses.join(", ")}`,
        "requests by property:",
        ...properties,
      ].join("\n"),
    );
    await node?.stop();
  });

  /**
   * Send every generated request; fail on the first answer that breaks the contract, shrunk to a
   * small reproduction. With HOSTILE_REPORT=all, send them all and list each kind of failure once
   * (its shortest request), to see everything that is wrong in one run.
   */
  async function holds(name: string, arbitrary: fc.Arbitrary<Probe>, numRuns: number): Promise<void> {
    const offset = byProperty.size;
    byProperty.set(name, 0);
    const failures = new Map<string, string>();
    await fc.assert(
      fc.asyncProperty(arbitrary, async (probe) => {
        const prototypes = prototypeFingerprint();
        uncaught.length = 0;
        const response = await sendRaw(world.port, probe.request);
        // whatever the server still does once the answer is out (its `finish` listeners) runs now
        await new Promise((resolve) => setImmediate(resolve));
        byStatus.set(response.status, (byStatus.get(response.status) ?? 0) + 1);
        byProperty.set(name, (byProperty.get(name) ?? 0) + 1);
        const mayKnow = probe.viewer === "alice" || probe.viewer === "admin";
        const problems = problemsWith(
          probe.request,
          response,
          probe.expect,
          world.leaks,
          mayKnow ? [] : world.secrets,
        );
        if (prototypeFingerprint() !== prototypes) problems.push("a built-in prototype was polluted");
        for (const err of uncaught) problems.push(`an uncaught exception, which stops the process: ${err}`);
        if (problems.length === 0) return;
        const report = `${problems.join("; ")}\n${describeRequest(probe.request, world.tokenNames)}\nanswer: ${describeResponse(response)}`;
        if (!REPORT_ALL) throw new Error(report);
        const kind = `${problems.join("; ").replace(UUID, "…")} @ ${probe.request.method} ${routeOf(probe.request.path)}`;
        const known = failures.get(kind);
        if (known === undefined || report.length < known.length) failures.set(kind, report);
      }),
      { seed: SEED + offset, numRuns, includeErrorInReport: true },
    );
    if (failures.size > 0)
      throw new Error(`${failures.size} kinds of failure:\n\n${[...failures.values()].join("\n\n")}`);
  }

  /** The first segments of a path, ids of the world replaced, for grouping failures. */
  function routeOf(path: string): string {
    let route = path.split("?")[0] ?? "";
    for (const id of world.secrets) route = route.split(id).join(":id");
    return route.split("/").slice(0, 6).join("/").slice(0, 60);
  }

  /** A probe that prints as the request it sends. */
  function probe(request: RawRequest, expect: Expectation, viewer: Viewer): Probe {
    return {
      request,
      expect,
      viewer,
      [fc.toStringMethod]: () =>
        `${viewer}: ${describeRequest(request, world.tokenNames).replace(/\n/g, "\n  ")}\n  → ${expect.statuses.join("|")}`,
    } as Probe;
  }

  const bearer = (token: string): Header => ["Authorization", `Bearer ${token}`];
  const tokenOf = (viewer: Viewer): Header[] =>
    viewer === "anonymous" ? [] : [bearer(world.tokens[viewer])];

  it(
    "answers valid reads and the probes as documented (so that refusals below mean something)",
    () =>
      holds(
        "documented successes",
        fc.oneof(
          fc.constantFrom("/livez", "/readyz").map((path) => probe(get(path), STATUS.ok, "anonymous")),
          fc
            .record({ viewer: viewerArb("anonymous", "bob"), query: productsQuery() })
            .map(({ viewer, query }) =>
              probe(get(`/api/v1/products${query}`, tokenOf(viewer)), STATUS.ok, viewer),
            ),
          fc
            .record({ viewer: viewerArb("anonymous", "bob", "admin"), sku: fc.constantFrom(...CATALOG) })
            .map(({ viewer, sku }) =>
              probe(get(`/api/v1/products/${sku}`, tokenOf(viewer)), STATUS.ok, viewer),
            ),
          fc
            .record({ viewer: viewerArb("alice", "bob"), query: ordersQuery() })
            .map(({ viewer, query }) =>
              probe(get(`/api/v1/orders${query}`, tokenOf(viewer)), STATUS.ok, viewer),
            ),
          fc
            .constantFrom("alice", "bob")
            .map((customer) =>
              probe(get(`/api/v1/orders?customerId=${customer}`, tokenOf("admin")), STATUS.ok, "admin"),
            ),
          fc
            .record({ viewer: viewerArb("alice", "admin"), paid: fc.boolean() })
            .chain(({ viewer, paid }) =>
              fc.constantFrom(
                probe(get(`/api/v1/orders/${orderOf(paid)}`, tokenOf(viewer)), STATUS.ok, viewer),
                probe(get(`/api/v1/payments?orderId=${orderOf(paid)}`, tokenOf(viewer)), STATUS.ok, viewer),
              ),
            ),
          fc
            .record({ viewer: viewerArb("alice", "bob"), limit: fc.option(fc.integer({ min: 1, max: 100 })) })
            .map(({ viewer, limit }) =>
              probe(
                get(`/api/v1/notifications${limit === null ? "" : `?limit=${limit}`}`, tokenOf(viewer)),
                STATUS.ok,
                viewer,
              ),
            ),
          fc
            .record({
              sub: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._:@-]{0,30}$/),
              roles: fc.subarray(["customer", "admin"], { minLength: 1 }),
            })
            .map((body) => probe(post("/api/v1/dev/token", { json: body }), STATUS.ok, "anonymous")),
          fc
            .constantFrom("/metrics", "/openapi.json", "/docs")
            .map((path) => probe(get(path), { statuses: [200, 404] }, "anonymous")),
        ),
        120,
      ),
    PROPERTY_TIMEOUT_MS,
  );

  it(
    "answers 401 without a token where one is needed, and for a forged, expired, unsigned or malformed one anywhere",
    () =>
      holds(
        "401 for bad tokens",
        fc.oneof(
          fc
            .record({ call: validCall(), authorization: fc.constantFrom(...badAuthorizations()) })
            .map(({ call, authorization }) =>
              probe(
                { ...call, headers: [["Authorization", authorization], ...call.headers] },
                STATUS.unauthorized,
                "anonymous",
              ),
            ),
          // no token at all, where one is needed
          validCall()
            .filter(({ method, path }) => !(method === "GET" && path.startsWith("/api/v1/products")))
            .filter(({ path }) => path !== "/api/v1/dev/token")
            .map((call) => probe(call, { statuses: [401], codes: ["UNAUTHORIZED"] }, "anonymous")),
        ),
        260,
      ),
    PROPERTY_TIMEOUT_MS,
  );

  it(
    "answers 403 to a valid token without the needed role",
    () =>
      holds(
        "403 for wrong roles",
        fc.oneof(
          fc
            .record({ viewer: viewerArb("alice", "bob"), sku: newSku(), body: productBody() })
            .map(({ viewer, sku, body }) =>
              probe(
                put(`/api/v1/products/${sku}`, { json: body, headers: tokenOf(viewer) }),
                STATUS.forbidden,
                viewer,
              ),
            ),
          fc
            .record({
              viewer: viewerArb("alice", "bob"),
              sku: fc.constantFrom(...CATALOG),
              quantity: fc.integer({ min: 1, max: 1_000_000 }),
            })
            .map(({ viewer, sku, quantity }) =>
              probe(
                post(`/api/v1/products/${sku}/restock`, { json: { quantity }, headers: tokenOf(viewer) }),
                STATUS.forbidden,
                viewer,
              ),
            ),
          fc.record({ order: orderBody(), key: fc.uuid() }).map(({ order, key }) =>
            probe(
              post("/api/v1/orders", {
                json: order,
                headers: [...tokenOf("admin"), ["Idempotency-Key", key]],
              }),
              STATUS.forbidden,
              "admin",
            ),
          ),
          fc.constant(probe(get("/api/v1/notifications", tokenOf("admin")), STATUS.forbidden, "admin")),
          fc
            .record({ viewer: viewerArb("alice", "bob"), customer: fc.constantFrom("alice", "bob", "carol") })
            .map(({ viewer, customer }) =>
              probe(get(`/api/v1/orders?customerId=${customer}`, tokenOf(viewer)), STATUS.forbidden, viewer),
            ),
        ),
        140,
      ),
    PROPERTY_TIMEOUT_MS,
  );

  it(
    "answers 404 for someone else's order, its payments and its cancel, and for unknown ids",
    () =>
      holds(
        "404 for someone else's or unknown resources",
        fc.oneof(
          fc
            .boolean()
            .chain((paid) =>
              fc.constantFrom(
                probe(get(`/api/v1/orders/${orderOf(paid)}`, tokenOf("bob")), STATUS.notFound, "bob"),
                probe(
                  get(`/api/v1/payments?orderId=${orderOf(paid)}`, tokenOf("bob")),
                  STATUS.notFound,
                  "bob",
                ),
                probe(
                  post(`/api/v1/orders/${orderOf(paid)}/cancel`, { headers: tokenOf("bob") }),
                  STATUS.notFound,
                  "bob",
                ),
                probe(
                  post(`/api/v1/orders/${orderOf(paid)}/cancel`, { json: {}, headers: tokenOf("bob") }),
                  STATUS.notFound,
                  "bob",
                ),
              ),
            ),
          fc
            .record({ viewer: viewerArb("alice", "bob", "admin"), id: unknownId(), route: fc.nat(2) })
            .map(({ viewer, id, route }) => {
              const encoded = encodeURIComponent(id);
              const request =
                route === 0
                  ? get(`/api/v1/orders/${encoded}`, tokenOf(viewer))
                  : route === 1
                    ? get(`/api/v1/payments?orderId=${encoded}`, tokenOf(viewer))
                    : post(`/api/v1/orders/${encoded}/cancel`, { headers: tokenOf(viewer) });
              return probe(request, STATUS.notFound, viewer);
            }),
          fc
            .record({ viewer: viewerArb("anonymous", "alice"), sku: newSku() })
            .map(({ viewer, sku }) =>
              probe(get(`/api/v1/products/${sku}`, tokenOf(viewer)), STATUS.notFound, viewer),
            ),
        ),
        150,
      ),
    PROPERTY_TIMEOUT_MS,
  );

  it(
    "refuses unknown fields, wrong types and out-of-range values with 400 VALIDATION_ERROR",
    () =>
      holds(
        "400 VALIDATION_ERROR",
        fc.oneof(
          { arbitrary: invalidOrderRequest(), weight: 4 },
          { arbitrary: invalidCancelRequest(), weight: 1 },
          { arbitrary: invalidUpsertRequest(), weight: 2 },
          { arbitrary: invalidRestockRequest(), weight: 2 },
          { arbitrary: invalidQueryRequest(), weight: 3 },
          { arbitrary: invalidDevTokenRequest(), weight: 1 },
        ),
        600,
      ),
    PROPERTY_TIMEOUT_MS,
  );

  it(
    "refuses malformed JSON with 400 INVALID_JSON",
    () =>
      holds(
        "400 INVALID_JSON",
        fc
          .record({ target: jsonRoute(), body: malformedJson(), chunked: fc.boolean() })
          .map(({ target, body, chunked }) =>
            probe(target.request({ text: body, chunked }), STATUS.invalidJson, target.viewer),
          ),
        160,
      ),
    PROPERTY_TIMEOUT_MS,
  );

  it(
    "refuses a JSON body that is not valid UTF-8 with 400",
    () =>
      holds(
        "400 for invalid UTF-8",
        fc
          .record({ bytes: invalidUtf8(), target: utf8Target(), key: fc.uuid() })
          .map(({ bytes, target, key }) => {
            // the invalid bytes go where "@" stands
            const [head, tail] = target.template.split("@") as [string, string];
            const body = Buffer.concat([Buffer.from(head), bytes, Buffer.from(tail)]);
            return probe(target.request(body, key), STATUS.invalidUtf8, target.viewer);
          }),
        70,
      ),
    PROPERTY_TIMEOUT_MS,
  );

  it(
    "refuses a body over 64 KiB with 413, chunked or not",
    () =>
      holds(
        "413 for bodies over 64 KiB",
        fc
          .record({
            target: fc.oneof(jsonRoute(), webhookRoute()),
            size: fc.integer({ min: 64 * 1024 + 1, max: 90 * 1024 }),
            fill: fc.constantFrom("json", "text", "bytes"),
            chunked: fc.boolean(),
          })
          .map(({ target, size, fill, chunked }) => {
            const bytes =
              fill === "json"
                ? padded('{"items":[{"sku":"MUG-BLUE","quantity":1}],"pad":"', size, '"}')
                : fill === "text"
                  ? Buffer.alloc(size, "a")
                  : Buffer.alloc(size, 0xff);
            return probe(target.request({ bytes, chunked }), STATUS.tooLarge, target.viewer);
          }),
        50,
      ),
    PROPERTY_TIMEOUT_MS,
  );

  it(
    "refuses a body that is not application/json on a JSON route with 415",
    () =>
      holds(
        "415 for other media types",
        fc
          .record({ target: validJsonCall(), contentType: foreignContentType(), chunked: fc.boolean() })
          .map(({ target, contentType, chunked }) =>
            probe(target.request({ contentType, chunked }), STATUS.unsupportedMedia, target.viewer),
          ),
        200,
      ),
    PROPERTY_TIMEOUT_MS,
  );

  it(
    "answers a method a route does not have with 404 or 405, and never runs the action",
    () => holds("404/405 for other methods", wrongMethodRequest(), 220),
    PROPERTY_TIMEOUT_MS,
  );

  it(
    "answers hostile paths (traversal, encoded slashes, NUL, bad escapes, unicode, very long) with 4xx",
    () => holds("hostile paths", hostilePathRequest(), 260),
    PROPERTY_TIMEOUT_MS,
  );

  it(
    "survives hostile query strings and headers on harmless routes",
    () =>
      holds(
        "hostile query strings and headers",
        fc.oneof(hostileQueryRequest(), hostileHeaderRequest()),
        260,
      ),
    PROPERTY_TIMEOUT_MS,
  );

  it(
    "refuses unsigned, forged and stale payment webhooks with 400",
    () => holds("forged webhooks", forgedWebhookRequest(), 110),
    PROPERTY_TIMEOUT_MS,
  );

  it(
    "answers requests the HTTP parser refuses (headers over its limit, bytes outside ASCII in the path) in the envelope",
    () =>
      holds(
        "requests refused while parsing",
        fc.oneof(
          fc
            .record({
              size: fc.integer({ min: 17 * 1024, max: 40 * 1024 }),
              name: fc.constantFrom("X-Padding", "Cookie"),
            })
            .map(({ size, name }) =>
              probe(
                get("/api/v1/products", [[name, "a".repeat(size)]]),
                { statuses: [400, 413, 431] },
                "anonymous",
              ),
            ),
          fc
            .constantFrom("\u00ff", "\u00c3\u00a9", "\u00e6\u0097\u00a5", "\u0080", "\u00fe\u00ff")
            .map((bytes) => probe(get(`/api/v1/products/${bytes}`), { statuses: [400, 404] }, "anonymous")),
        ),
        20,
      ),
    PROPERTY_TIMEOUT_MS,
  );

  it("leaves every store as it was: orders, stock, reservations, payments, outbox, idempotency records", async () => {
    const after = await settledFingerprint(broker);
    expect(after).toEqual(stateBefore);
  });

  it("leaves Object.prototype and the other built-in prototypes unpolluted", () => {
    expect(prototypeFingerprint()).toBe(prototypesBefore);
    const probeObject: Record<string, unknown> = {};
    for (const key of ["polluted", "isAdmin", "roles", "status"]) expect(probeObject[key]).toBeUndefined();
  });

  // ── request builders ──────────────────────────────────────────────────

  interface Send {
    json?: unknown;
    /** The body as UTF-8 text, sent as is. */
    text?: string;
    bytes?: Buffer;
    /** Default application/json when there is a body; null: no Content-Type at all. */
    contentType?: string | null;
    headers?: Header[];
    chunked?: boolean;
  }

  function build(method: string, path: string, send: Send = {}): RawRequest {
    const body =
      send.bytes ??
      (send.text !== undefined
        ? Buffer.from(send.text)
        : send.json !== undefined
          ? Buffer.from(JSON.stringify(send.json))
          : undefined);
    const headers: Header[] = [...(send.headers ?? [])];
    const contentType = send.contentType === undefined ? "application/json" : send.contentType;
    if (body !== undefined && contentType !== null) headers.push(["Content-Type", contentType]);
    return {
      method,
      path,
      headers,
      ...(body === undefined ? {} : { body }),
      ...(send.chunked ? { chunked: true } : {}),
    };
  }

  function get(path: string, headers: Header[] = []): RawRequest {
    return build("GET", path, { headers });
  }

  function post(path: string, send: Send = {}): RawRequest {
    return build("POST", path, send);
  }

  function put(path: string, send: Send = {}): RawRequest {
    return build("PUT", path, send);
  }

  function orderOf(paid: boolean): string {
    return paid ? world.paid : world.cancelled;
  }

  function viewerArb(...viewers: Viewer[]): fc.Arbitrary<Viewer> {
    return fc.constantFrom(...viewers);
  }

  /** `body` as JSON text with `key` first — also `__proto__`, which JSON.stringify cannot write as a key. */
  function withKey(body: object, key: string, value: unknown): string {
    const rest = JSON.stringify(body).slice(1);
    return `{${JSON.stringify(key)}:${JSON.stringify(value) ?? "null"}${rest === "}" ? "" : ","}${rest}`;
  }

  /** Every UTF-8 byte of `text` (a lone surrogate as U+FFFD) percent-encoded, except unreserved ASCII. */
  function percentEncoded(text: string): string {
    return [...Buffer.from(text)]
      .map((byte) =>
        /[A-Za-z0-9._~-]/.test(String.fromCharCode(byte))
          ? String.fromCharCode(byte)
          : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`,
      )
      .join("");
  }

  function padded(head: string, size: number, tail: string): Buffer {
    return Buffer.from(head + "x".repeat(Math.max(0, size - head.length - tail.length)) + tail);
  }

  // ── valid pieces ──────────────────────────────────────────────────────

  function orderBody(): fc.Arbitrary<{ items: { sku: string; quantity: number }[]; paymentMethod?: string }> {
    return fc.record(
      {
        items: fc.array(
          fc.record({ sku: fc.constantFrom(...CATALOG), quantity: fc.integer({ min: 1, max: 1000 }) }),
          { minLength: 1, maxLength: 3 },
        ),
        paymentMethod: fc.constantFrom("pm_card_visa", "pm_card_declined"),
      },
      { requiredKeys: ["items"] },
    );
  }

  function productBody(): fc.Arbitrary<{ name: string; price: { minor: number; currency: string } }> {
    return fc.record({
      name: fc.constantFrom("Hostile mug", "Kettle", "Cup"),
      price: fc.record({
        minor: fc.integer({ min: 0, max: 100_000 }),
        currency: fc.constantFrom("USD", "EUR"),
      }),
    });
  }

  /** A sku that matches the pattern but is not in the catalog. */
  function newSku(): fc.Arbitrary<string> {
    return fc.stringMatching(/^[A-Z0-9]{1,12}$/).map((s) => `HOSTILE-${s}`);
  }

  function unknownId(): fc.Arbitrary<string> {
    return fc
      .oneof(fc.uuid(), fc.stringMatching(/^[A-Za-z0-9_.:-]{1,128}$/))
      .filter((id) => !world.secrets.includes(id) && id !== "." && id !== "..");
  }

  function productsQuery(): fc.Arbitrary<string> {
    return fc
      .record({
        page: fc.option(fc.integer({ min: 1, max: 5 })),
        pageSize: fc.option(fc.integer({ min: 1, max: 100 })),
      })
      .map(({ page, pageSize }) => query({ page, pageSize }));
  }

  function ordersQuery(): fc.Arbitrary<string> {
    return fc
      .record({
        limit: fc.option(fc.integer({ min: 1, max: 100 })),
        status: fc.option(fc.constantFrom("PENDING_PAYMENT", "PAID", "CANCELLED")),
      })
      .map(({ limit, status }) => query({ limit, status }));
  }

  function query(params: Record<string, string | number | null>): string {
    const parts = Object.entries(params)
      .filter(([, v]) => v !== null)
      .map(([k, v]) => `${k}=${encodeURIComponent(String(v))}`);
    return parts.length === 0 ? "" : `?${parts.join("&")}`;
  }

  /** A valid, complete call of each /api/v1 route (authorization left to the caller). */
  function validCall(): fc.Arbitrary<RawRequest> {
    return fc.oneof(
      fc
        .record({ order: orderBody(), key: fc.uuid() })
        .map(({ order, key }) =>
          post("/api/v1/orders", { json: order, headers: [["Idempotency-Key", key]] }),
        ),
      fc.constant(get("/api/v1/orders")),
      fc.boolean().map((paid) => get(`/api/v1/orders/${orderOf(paid)}`)),
      fc.boolean().map((paid) => post(`/api/v1/orders/${orderOf(paid)}/cancel`)),
      fc.constant(get("/api/v1/products")),
      fc.constantFrom(...CATALOG).map((sku) => get(`/api/v1/products/${sku}`)),
      fc
        .record({ sku: fc.oneof(newSku(), fc.constantFrom(...CATALOG)), body: productBody() })
        .map(({ sku, body }) => put(`/api/v1/products/${sku}`, { json: body })),
      fc
        .record({ sku: fc.constantFrom(...CATALOG), quantity: fc.integer({ min: 1, max: 1000 }) })
        .map(({ sku, quantity }) => post(`/api/v1/products/${sku}/restock`, { json: { quantity } })),
      fc.boolean().map((paid) => get(`/api/v1/payments?orderId=${orderOf(paid)}`)),
      fc.constant(get("/api/v1/notifications")),
      fc.constant(post("/api/v1/dev/token", { json: { sub: "mallory", roles: ["admin"] } })),
    );
  }

  function badAuthorizations(): string[] {
    const now = Math.floor(Date.now() / 1000);
    const hs256 = { alg: "HS256", typ: "JWT" };
    const claims = { sub: "alice", roles: ["customer"], iat: now, exp: now + 3600 };
    const sign = (payload: unknown, header: object = hs256, secret = JWT_SECRET, hash = "sha256") =>
      signJwt(header, payload, secret, hash);
    const [aliceHeader, , aliceSignature] = world.tokens.alice.split(".");
    const adminClaims = Buffer.from(JSON.stringify({ ...claims, roles: ["admin"] })).toString("base64url");
    const unsigned = (header: object, payload: object) =>
      `${Buffer.from(JSON.stringify(header)).toString("base64url")}.${Buffer.from(JSON.stringify(payload)).toString("base64url")}.`;
    return [
      "Bearer not-a-token",
      "Bearer a.b.c",
      "Bearer ",
      "Bearer",
      "Basic YWxpY2U6c2VjcmV0",
      `Token ${world.tokens.alice}`,
      `Bearer ${world.tokens.alice} ${world.tokens.admin}`,
      `Bearer ${world.tokens.alice},${world.tokens.admin}`,
      `Bearer ${unsigned({ alg: "none", typ: "JWT" }, { ...claims, roles: ["admin"] })}`,
      `Bearer ${unsigned({ alg: "NONE" }, claims)}`,
      `Bearer ${sign({ ...claims, roles: ["admin"] }, hs256, "not-the-secret-at-all-0123")}`,
      `Bearer ${sign({ ...claims, iat: now - 7200, exp: now - 3600 })}`,
      `Bearer ${sign({ ...claims, nbf: now + 3600, exp: now + 7200 })}`,
      `Bearer ${sign(claims, { alg: "HS512", typ: "JWT" }, JWT_SECRET, "sha512")}`,
      `Bearer ${sign({ ...claims, roles: [] })}`,
      `Bearer ${sign({ ...claims, roles: ["root"] })}`,
      `Bearer ${sign({ ...claims, roles: "admin" })}`,
      `Bearer ${sign({ ...claims, roles: undefined })}`,
      `Bearer ${sign({ ...claims, sub: "../../etc/passwd" })}`,
      `Bearer ${sign({ ...claims, sub: { $ne: null } })}`,
      `Bearer ${sign({ ...claims, sub: "a".repeat(200) })}`,
      `Bearer ${sign("alice")}`,
      `Bearer ${sign([claims])}`,
      `Bearer ${world.tokens.alice.split(".").slice(0, 2).join(".")}.`,
      `Bearer ${aliceHeader}.${adminClaims}.${aliceSignature}`,
      `Bearer ${"A".repeat(6000)}`,
    ];
  }

  /** A JSON route, with the token and headers it needs, for any body. */
  interface JsonRoute {
    viewer: Viewer;
    request(send: Send): RawRequest;
  }

  function jsonRoute(): fc.Arbitrary<JsonRoute> {
    return fc.oneof(
      fc.uuid().map((key) => ({
        viewer: "alice" as const,
        request: (send: Send) =>
          post("/api/v1/orders", { ...send, headers: [...tokenOf("alice"), ["Idempotency-Key", key]] }),
      })),
      fc.constant({
        viewer: "admin" as const,
        request: (send: Send) => put("/api/v1/products/HOSTILE-BODY", { ...send, headers: tokenOf("admin") }),
      }),
      fc.constant({
        viewer: "admin" as const,
        request: (send: Send) =>
          post("/api/v1/products/MUG-BLUE/restock", { ...send, headers: tokenOf("admin") }),
      }),
      fc.constant({
        viewer: "alice" as const,
        request: (send: Send) =>
          post(`/api/v1/orders/${world.cancelled}/cancel`, { ...send, headers: tokenOf("alice") }),
      }),
      fc.constant({
        viewer: "anonymous" as const,
        request: (send: Send) => post("/api/v1/dev/token", send),
      }),
    );
  }

  function webhookRoute(): fc.Arbitrary<JsonRoute> {
    return fc
      .constantFrom("application/json", "text/plain", "application/octet-stream")
      .map((contentType) => ({
        viewer: "anonymous" as const,
        request: (send: Send) => post("/api/v1/payments/webhook", { contentType, ...send }),
      }));
  }

  /** A complete, valid JSON call of each JSON route; only its media type is left to choose. */
  function validJsonCall(): fc.Arbitrary<JsonRoute> {
    const route = (viewer: Viewer, make: (send: Send) => RawRequest): JsonRoute => ({
      viewer,
      request: make,
    });
    return fc.oneof(
      fc.record({ order: orderBody(), key: fc.uuid() }).map(({ order, key }) =>
        route("alice", (send) =>
          post("/api/v1/orders", {
            json: order,
            ...send,
            headers: [...tokenOf("alice"), ["Idempotency-Key", key]],
          }),
        ),
      ),
      fc
        .record({ sku: newSku(), body: productBody() })
        .map(({ sku, body }) =>
          route("admin", (send) =>
            put(`/api/v1/products/${sku}`, { json: body, ...send, headers: tokenOf("admin") }),
          ),
        ),
      fc.integer({ min: 1, max: 1000 }).map((quantity) =>
        route("admin", (send) =>
          post("/api/v1/products/MUG-BLUE/restock", {
            json: { quantity },
            ...send,
            headers: tokenOf("admin"),
          }),
        ),
      ),
      fc.constant(
        route("alice", (send) =>
          post(`/api/v1/orders/${world.cancelled}/cancel`, { json: {}, ...send, headers: tokenOf("alice") }),
        ),
      ),
      fc.constant(
        route("anonymous", (send) =>
          post("/api/v1/dev/token", { json: { sub: "mallory", roles: ["admin"] }, ...send }),
        ),
      ),
    );
  }

  // ── hostile pieces ────────────────────────────────────────────────────

  /** Values a client might put where they do not belong. */
  function hostileValue(): fc.Arbitrary<unknown> {
    return fc.oneof(
      fc.constantFrom(
        "PAID",
        "DELIVERED",
        "alice",
        "admin",
        0,
        -1,
        1e308,
        true,
        null,
        [],
        {},
        { $gt: "" },
        { $ne: null },
        { polluted: "yes" },
        { roles: ["admin"] },
        { minor: 0, currency: "USD" },
      ),
      fc.string({ maxLength: 20 }).filter(freeOfLeakMarkers),
      fc.integer(),
      fc.double(),
    );
  }

  const PROTOTYPE_KEYS = ["__proto__", "constructor", "prototype"];

  function invalidOrderRequest(): fc.Arbitrary<Probe> {
    const line = '{"sku":"MUG-BLUE","quantity":1}';
    const body = fc.oneof(
      // fields a client must not set
      fc
        .record({
          order: orderBody(),
          key: fc.constantFrom(
            "status",
            "total",
            "customerId",
            "id",
            "_id",
            "createdAt",
            "statusHistory",
            "paymentId",
            "idempotencyKey",
            "Items",
            "$where",
            ...PROTOTYPE_KEYS,
          ),
          value: hostileValue(),
        })
        .map(({ order, key, value }) => withKey(order, key, value)),
      fc
        .record({
          key: fc.constantFrom("price", "unitPrice", "total", "status", "discount", ...PROTOTYPE_KEYS),
          value: hostileValue(),
          quantity: fc.integer({ min: 1, max: 1000 }),
        })
        .map(
          ({ key, value, quantity }) => `{"items":[${withKey({ sku: "MUG-BLUE", quantity }, key, value)}]}`,
        ),
      // wrong types and ranges
      fc
        .constantFrom(
          "0",
          "-1",
          "1001",
          "1.5",
          "0.5",
          "-0",
          "9007199254740993",
          "-9007199254740993",
          "1e21",
          "1e309",
          "-1e309",
          '"1"',
          '"one"',
          '"NaN"',
          "null",
          "true",
          "[]",
          "{}",
          "[1]",
        )
        .map((quantity) => `{"items":[{"sku":"MUG-BLUE","quantity":${quantity}}]}`),
      fc.integer({ min: 1001 }).map((quantity) => JSON.stringify({ items: [{ sku: "MUG-BLUE", quantity }] })),
      fc.integer({ max: 0 }).map((quantity) => JSON.stringify({ items: [{ sku: "MUG-BLUE", quantity }] })),
      fc
        .oneof(
          fc.constantFrom<unknown>(
            "",
            "../etc/passwd",
            "..%2F..%2Fetc",
            "-MUG",
            ".hidden",
            "a".repeat(65),
            "MUG BLUE",
            "日本",
            "MUG-BLUE\u0000",
            "MUG-BLUE\n",
            "<script>alert(1)</script>",
            123,
            null,
            true,
            { $ne: null },
            ["MUG-BLUE"],
          ),
          fc.string({ maxLength: 70 }).filter((s) => !SKU_PATTERN.test(s) && freeOfLeakMarkers(s)),
        )
        .map((sku) => JSON.stringify({ items: [{ sku, quantity: 1 }] })),
      fc
        .constantFrom<unknown>(
          [],
          "MUG-BLUE",
          {},
          null,
          1,
          true,
          [[{ sku: "MUG-BLUE", quantity: 1 }]],
          [null],
          {
            0: { sku: "MUG-BLUE", quantity: 1 },
          },
        )
        .map((items) => JSON.stringify({ items })),
      fc
        .integer({ min: 101, max: 140 })
        .map((n) =>
          JSON.stringify({ items: Array.from({ length: n }, (_, i) => ({ sku: `SKU-${i}`, quantity: 1 })) }),
        ),
      fc
        .constantFrom<unknown>("", "x".repeat(65), 1, {}, [], true)
        .map((paymentMethod) => JSON.stringify({ items: [{ sku: "MUG-BLUE", quantity: 1 }], paymentMethod })),
      fc.constantFrom(
        "{}",
        '{"items":[{"sku":"MUG-BLUE"}]}',
        '{"items":[{"quantity":1}]}',
        '{"paymentMethod":"pm_card_visa"}',
        `[{"items":[${line}]}]`,
        "[]",
        `{"items":[${line}],"items":"MUG-BLUE"}`,
      ),
      fc
        .record({ depth: fc.integer({ min: 50, max: 5000 }), where: fc.boolean() })
        .map(({ depth, where }) =>
          where
            ? `{"items":[${line}],"x":${"[".repeat(depth)}${"]".repeat(depth)}}`
            : `{"items":${"[".repeat(depth)}${"]".repeat(depth)}}`,
        ),
    );
    return fc
      .oneof(
        { arbitrary: fc.record({ body, key: fc.uuid() }), weight: 5 },
        {
          // the body is fine; the query string adds what a client must not set
          arbitrary: fc
            .record({
              order: orderBody(),
              key: fc.uuid(),
              field: fc.constantFrom("status", "customerId", "total", "id", "items"),
            })
            .map(({ order, key, field }) => ({ body: JSON.stringify(order), key, path: `?${field}=PAID` })),
          weight: 1,
        },
      )
      .map((generated) => {
        const { body: text, key } = generated;
        const suffix = "path" in generated ? generated.path : "";
        return probe(
          post(`/api/v1/orders${suffix}`, { text, headers: [...tokenOf("alice"), ["Idempotency-Key", key]] }),
          STATUS.invalid,
          "alice",
        );
      });
  }

  function invalidCancelRequest(): fc.Arbitrary<Probe> {
    // alice's cancelled order: a cancel that slipped through would change nothing, but answer 200
    const path = `/api/v1/orders/${world.cancelled}/cancel`;
    return fc.oneof(
      fc
        .record({
          key: fc.constantFrom(
            "status",
            "reason",
            "refund",
            "customerId",
            "total",
            "paymentId",
            "items",
            ...PROTOTYPE_KEYS,
          ),
          value: hostileValue(),
        })
        .map(({ key, value }) =>
          probe(
            post(path, { text: withKey({}, key, value), headers: tokenOf("alice") }),
            STATUS.invalid,
            "alice",
          ),
        ),
      fc.constant(
        probe(
          post(path, { text: '[{"status":"PAID"}]', headers: tokenOf("alice") }),
          STATUS.invalid,
          "alice",
        ),
      ),
      fc
        .constantFrom("status=PAID", "reason=x", "refund=false")
        .map((q) => probe(post(`${path}?${q}`, { headers: tokenOf("alice") }), STATUS.invalid, "alice")),
      fc
        .integer({ min: 129, max: 2000 })
        .map((n) =>
          probe(
            post(`/api/v1/orders/${"a".repeat(n)}/cancel`, { headers: tokenOf("alice") }),
            STATUS.invalid,
            "alice",
          ),
        ),
    );
  }

  function invalidUpsertRequest(): fc.Arbitrary<Probe> {
    const valid = { name: "Hostile mug", price: { minor: 100, currency: "USD" } };
    const body = fc.oneof(
      fc
        .record({
          product: productBody(),
          key: fc.constantFrom(
            "available",
            "reserved",
            "received",
            "onHand",
            "stock",
            "id",
            "_id",
            "createdAt",
            "quantity",
            ...PROTOTYPE_KEYS,
          ),
          value: hostileValue(),
        })
        .map(({ product, key, value }) => withKey(product, key, value)),
      fc
        .record({ key: fc.constantFrom("tax", "amount", ...PROTOTYPE_KEYS), value: hostileValue() })
        .map(({ key, value }) =>
          JSON.stringify(valid).replace('"price":{', `"price":${withKey({}, key, value).slice(0, -1)},`),
        ),
      fc
        .constantFrom<unknown>("", "x".repeat(201), 1, null, {}, [], true)
        .map((name) => JSON.stringify({ ...valid, name })),
      fc
        .constantFrom<unknown>(
          null,
          "100 USD",
          100,
          [],
          {},
          { minor: -1, currency: "USD" },
          { minor: 1.5, currency: "USD" },
          { minor: 2 ** 53, currency: "USD" },
          { minor: "100", currency: "USD" },
          { minor: null, currency: "USD" },
          { minor: 100, currency: "usd" },
          { minor: 100, currency: "US" },
          { minor: 100, currency: "USDX" },
          { minor: 100, currency: 1 },
          { minor: 100 },
          { currency: "USD" },
        )
        .map((price) => JSON.stringify({ ...valid, price })),
      fc.constantFrom(
        '{"name":"Hostile mug"}',
        '{"price":{"minor":100,"currency":"USD"}}',
        `[${JSON.stringify(valid)}]`,
      ),
    );
    const badSku = fc
      .constantFrom(
        "..",
        "%2E%2E%2Fetc",
        "-x",
        "a".repeat(65),
        "MUG%20BLUE",
        "%E6%97%A5",
        "MUG-BLUE%0A",
        "%5Bobject%20Object%5D",
      )
      .map((sku) => ({ sku, text: JSON.stringify(valid) }));
    return fc
      .oneof(
        { arbitrary: fc.record({ sku: fc.oneof(newSku(), fc.constant("MUG-BLUE")), text: body }), weight: 4 },
        { arbitrary: badSku, weight: 1 },
      )
      .map(({ sku, text }) =>
        probe(put(`/api/v1/products/${sku}`, { text, headers: tokenOf("admin") }), STATUS.invalid, "admin"),
      );
  }

  function invalidRestockRequest(): fc.Arbitrary<Probe> {
    const body = fc.oneof(
      fc
        .constantFrom("0", "-5", "1.5", "1000001", '"5"', "null", "[]", "{}", "true", "1e309", "-0")
        .map((quantity) => `{"quantity":${quantity}}`),
      fc.integer({ min: 1_000_001 }).map((quantity) => JSON.stringify({ quantity })),
      fc
        .record({
          key: fc.constantFrom("available", "price", "reserved", "reason", ...PROTOTYPE_KEYS),
          value: hostileValue(),
          quantity: fc.integer({ min: 1, max: 1000 }),
        })
        .map(({ key, value, quantity }) => withKey({ quantity }, key, value)),
      fc.constantFrom("{}", '[{"quantity":5}]', "[]"),
    );
    return fc
      .record({ sku: fc.constantFrom(...CATALOG), text: body })
      .map(({ sku, text }) =>
        probe(
          post(`/api/v1/products/${sku}/restock`, { text, headers: tokenOf("admin") }),
          STATUS.invalid,
          "admin",
        ),
      );
  }

  function invalidQueryRequest(): fc.Arbitrary<Probe> {
    const unknownKey = fc
      .stringMatching(/^[a-z][a-zA-Z0-9_]{0,15}$/)
      .filter((k) => !["limit", "status", "cursor", "customerId", "page", "pageSize", "orderId"].includes(k));
    const cases: fc.Arbitrary<{ path: string; viewer: Viewer }>[] = [
      fc
        .constantFrom(
          "limit=0",
          "limit=-1",
          "limit=101",
          "limit=abc",
          "limit=1.5",
          "limit=",
          "limit=1e3",
          "limit=Infinity",
          "status=BOGUS",
          "status=paid",
          "status=",
          "cursor=",
          `cursor=${"c".repeat(513)}`,
          "sort=-total",
          "a[b]=c",
          "limit=1&limit=2",
          "status=PAID&status=CANCELLED",
          "limit[]=1",
          "status[$ne]=x",
          "cursor[$gt]=",
          "$where=1",
        )
        .map((q) => ({ path: `/api/v1/orders?${q}`, viewer: "alice" as const })),
      fc
        .constantFrom(
          "customerId[$ne]=x",
          `customerId=${"c".repeat(129)}`,
          "customerId=",
          "customerId=a&customerId=b",
        )
        .map((q) => ({ path: `/api/v1/orders?${q}`, viewer: "admin" as const })),
      fc
        .constantFrom(
          "page=0",
          "page=10001",
          "page=abc",
          "page=-1",
          "page=1.5",
          "pageSize=0",
          "pageSize=101",
          "pageSize=abc",
          "sort=price",
          "q=mug",
          "page=1&page=2",
          "pageSize[$gt]=1",
        )
        .map((q) => ({ path: `/api/v1/products?${q}`, viewer: "anonymous" as const })),
      fc
        .constantFrom(
          "",
          "?orderId=",
          `?orderId=${"o".repeat(129)}`,
          "?orderId=a&orderId=b",
          "?orderId[$ne]=x",
          "?orderId[]=x",
        )
        .map((q) => ({ path: `/api/v1/payments${q}`, viewer: "alice" as const })),
      fc.constant({ path: `/api/v1/payments?orderId=${"PAID_ID"}&status=x`, viewer: "alice" as const }),
      fc
        .constantFrom("limit=0", "limit=101", "limit=abc", "cursor=", "limit=1&limit=2", "unread=true")
        .map((q) => ({ path: `/api/v1/notifications?${q}`, viewer: "alice" as const })),
      fc
        .integer({ min: 129, max: 3000 })
        .map((n) => ({ path: `/api/v1/orders/${"a".repeat(n)}`, viewer: "alice" as const })),
      fc.constant({ path: "/api/v1/orders/PAID_ID?expand=payments", viewer: "alice" as const }),
      fc.constant({ path: "/api/v1/products/MUG-BLUE?fields=cost", viewer: "anonymous" as const }),
      fc
        .constantFrom(
          "..",
          "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
          "-MUG",
          "a".repeat(65),
          "MUG%20BLUE",
          "%E6%97%A5%E6%9C%AC",
          "MUG-BLUE%00",
        )
        .map((sku) => ({ path: `/api/v1/products/${sku}`, viewer: "anonymous" as const })),
      fc
        .record({
          route: fc.constantFrom(
            "/api/v1/orders",
            "/api/v1/products",
            "/api/v1/notifications",
            "/api/v1/products/MUG-BLUE",
          ),
          key: unknownKey,
        })
        .map(({ route, key }) => ({
          path: `${route}?${key}=1`,
          viewer: route.includes("products") ? ("anonymous" as const) : ("alice" as const),
        })),
    ];
    return fc
      .oneof(...cases)
      .map(({ path, viewer }) =>
        probe(get(path.replace(/PAID_ID/g, world.paid), tokenOf(viewer)), STATUS.invalid, viewer),
      );
  }

  function invalidDevTokenRequest(): fc.Arbitrary<Probe> {
    return fc
      .oneof(
        fc.constantFrom(
          "{}",
          '{"sub":""}',
          '{"sub":"../x"}',
          JSON.stringify({ sub: "a".repeat(129) }),
          '{"sub":1}',
          '{"sub":null}',
          '{"sub":{"$ne":null}}',
          '{"sub":"mallory","roles":[]}',
          '{"sub":"mallory","roles":["root"]}',
          '{"sub":"mallory","roles":"admin"}',
          '{"sub":"mallory","roles":["admin","admin"]}',
          '{"sub":"mallory","roles":["customer","admin","root"]}',
          '{"sub":"mallory","roles":[{"$ne":1}]}',
          '{"sub":"mallory","exp":0}',
          '{"sub":"mallory","iat":0,"expiresIn":999999999}',
          '[{"sub":"mallory"}]',
        ),
        fc
          .record({ key: fc.constantFrom(...PROTOTYPE_KEYS), value: hostileValue() })
          .map(({ key, value }) => withKey({ sub: "mallory" }, key, value)),
        fc
          .string({ maxLength: 140 })
          .filter((sub) => !SUBJECT.test(sub) && freeOfLeakMarkers(sub))
          .map((sub) => JSON.stringify({ sub })),
      )
      .map((text) => probe(post("/api/v1/dev/token", { text }), STATUS.invalid, "anonymous"));
  }

  function malformedJson(): fc.Arbitrary<string> {
    const notJson = (s: string) => {
      try {
        JSON.parse(s);
        return false;
      } catch {
        return true;
      }
    };
    return fc
      .oneof(
        fc.constantFrom(
          "{",
          '{"items": [',
          "{'items': []}",
          '{"items": NaN}',
          '{"quantity": Infinity}',
          '{"a":1,}',
          "/* comment */ {}",
          '{"a":1} trailing',
          '{"a":1}{"b":2}',
          '"string"',
          "123",
          "null",
          "true",
          '{"a":"\\x"}',
          '{"a": 01}',
          '{"a":"unterminated',
          '{"a" 1}',
          "{a:1}",
          "undefined",
          "\u0000",
          "[1,2",
          '{"__proto__":',
        ),
        fc.record({ order: orderBody(), cut: fc.nat() }).map(({ order, cut }) => {
          const text = JSON.stringify(order);
          return text.slice(0, 1 + (cut % (text.length - 1)));
        }),
        fc.string({ minLength: 1, maxLength: 200 }),
      )
      .filter((s) => s.trim() !== "" && notJson(s) && freeOfLeakMarkers(s));
  }

  function invalidUtf8(): fc.Arbitrary<Buffer> {
    return fc
      .constantFrom(
        [0xff],
        [0xfe, 0xff],
        [0xc0, 0xaf],
        [0xed, 0xa0, 0x80],
        [0xe2, 0x82],
        [0x80],
        [0xf8, 0x88, 0x80, 0x80, 0x80],
        [0xf4, 0x90, 0x80, 0x80],
        [0xc3],
      )
      .map((bytes) => Buffer.from(bytes));
  }

  /** JSON routes and bodies with a string (or a key) where invalid UTF-8 bytes go, at "@". */
  function utf8Target(): fc.Arbitrary<{
    viewer: Viewer;
    template: string;
    request(body: Buffer, key: string): RawRequest;
  }> {
    return fc.constantFrom(
      {
        viewer: "alice" as const,
        template: '{"items":[{"sku":"MUG-@","quantity":1}]}',
        request: (bytes: Buffer, key: string) =>
          post("/api/v1/orders", { bytes, headers: [...tokenOf("alice"), ["Idempotency-Key", key]] }),
      },
      {
        viewer: "admin" as const,
        template: '{"name":"Mug @","price":{"minor":100,"currency":"USD"}}',
        request: (bytes: Buffer) =>
          put("/api/v1/products/HOSTILE-UTF8", { bytes, headers: tokenOf("admin") }),
      },
      {
        viewer: "admin" as const,
        template: '{"quantity":5,"@":1}',
        request: (bytes: Buffer) =>
          post("/api/v1/products/MUG-BLUE/restock", { bytes, headers: tokenOf("admin") }),
      },
      {
        viewer: "alice" as const,
        template: '{"@":1}',
        request: (bytes: Buffer) =>
          post(`/api/v1/orders/${world.cancelled}/cancel`, { bytes, headers: tokenOf("alice") }),
      },
      {
        viewer: "anonymous" as const,
        template: '{"sub":"@"}',
        request: (bytes: Buffer) => post("/api/v1/dev/token", { bytes }),
      },
      {
        viewer: "anonymous" as const,
        template: '{"sub":"mallory","roles":["customer@"]}',
        request: (bytes: Buffer) => post("/api/v1/dev/token", { bytes }),
      },
    );
  }

  function foreignContentType(): fc.Arbitrary<string | null> {
    return fc.constantFrom<string | null>(
      "text/plain",
      "text/plain; charset=utf-8",
      "application/x-www-form-urlencoded",
      "application/xml",
      "text/xml",
      "multipart/form-data; boundary=hostile",
      "application/octet-stream",
      "text/html",
      "text/javascript",
      "image/png",
      "application/jsonp",
      "application/json; charset=latin1",
      "application/json; charset=us-ascii",
      "json",
      "*/*",
      "",
      null,
    );
  }

  function wrongMethodRequest(): fc.Arbitrary<Probe> {
    const METHODS = [
      "GET",
      "POST",
      "PUT",
      "PATCH",
      "DELETE",
      "OPTIONS",
      "TRACE",
      "PROPFIND",
      "PURGE",
      "SEARCH",
      "MKCOL",
    ];
    // each route with the caller and body its own method accepts: if another method ran the
    // action, it would succeed and show in the status and in the stores
    const routes: { path: string; has: string[]; viewer: Viewer; body?: unknown }[] = [
      {
        path: "/api/v1/orders",
        has: ["GET", "POST"],
        viewer: "alice",
        body: { items: [{ sku: "MUG-BLUE", quantity: 1 }] },
      },
      { path: "/api/v1/orders/PAID_ID", has: ["GET"], viewer: "alice", body: { status: "CANCELLED" } },
      { path: "/api/v1/orders/PAID_ID/cancel", has: ["POST"], viewer: "alice" },
      {
        path: "/api/v1/products",
        has: ["GET"],
        viewer: "admin",
        body: { sku: "HOSTILE-M", name: "x", price: { minor: 1, currency: "USD" } },
      },
      {
        path: "/api/v1/products/MUG-BLUE",
        has: ["GET", "PUT"],
        viewer: "admin",
        body: { name: "Renamed", price: { minor: 1, currency: "USD" } },
      },
      { path: "/api/v1/products/MUG-BLUE/restock", has: ["POST"], viewer: "admin", body: { quantity: 5 } },
      { path: "/api/v1/payments?orderId=PAID_ID", has: ["GET"], viewer: "alice" },
      { path: "/api/v1/payments/webhook", has: ["POST"], viewer: "anonymous", body: {} },
      { path: "/api/v1/notifications", has: ["GET"], viewer: "alice" },
      {
        path: "/api/v1/dev/token",
        has: ["POST"],
        viewer: "anonymous",
        body: { sub: "mallory", roles: ["admin"] },
      },
      { path: "/livez", has: ["GET"], viewer: "anonymous" },
      { path: "/readyz", has: ["GET"], viewer: "anonymous" },
    ];
    return fc
      .record({
        route: fc.constantFrom(...routes),
        method: fc.constantFrom(...METHODS),
        withBody: fc.boolean(),
        preflight: fc.boolean(),
        key: fc.uuid(),
      })
      .filter(({ route, method }) => !route.has.includes(method))
      .chain(({ route, method, withBody, preflight, key }) =>
        fc.constantFrom(...route.has).map((asked) => {
          const headers: Header[] = [...tokenOf(route.viewer), ["Idempotency-Key", key]];
          // a CORS preflight names a method it asks about: that method must not run
          if (method === "OPTIONS" && preflight) headers.push(["Access-Control-Request-Method", asked]);
          const body = withBody && method !== "TRACE" && route.body !== undefined ? { json: route.body } : {};
          const request = build(method, route.path.replace(/PAID_ID/g, world.paid), { headers, ...body });
          const expect = method === "OPTIONS" ? { statuses: [204, 404, 405] } : STATUS.noSuchMethod;
          return probe(request, expect, route.viewer);
        }),
      );
  }

  function hostilePathRequest(): fc.Arbitrary<Probe> {
    const segment = fc.oneof(
      fc.constantFrom(
        "..",
        "../..",
        "../../etc/passwd",
        "..%2F..%2Fetc%2Fpasswd",
        "%2e%2e",
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "..\\..\\windows\\win.ini",
        "%00",
        "MUG-BLUE%00",
        "PAID_ID%00",
        "PAID_ID%2Fcancel",
        "PAID_ID/",
        "PAID_ID/.",
        "PAID_ID/cancel/../../PAID_ID",
        "%FF",
        "%FF%FE",
        "%C0%AF",
        "%ED%A0%80",
        "%",
        "%G1",
        "%2",
        "%E6%97%A5%E6%9C%AC",
        "%F0%9F%92%A9",
        "%2F",
        ";x=1",
        "%3F",
        "%23",
        "%0d%0aSet-Cookie:%20x=1",
        "%0A",
        "<script>",
        "'%20OR%201=1",
        "{{7*7}}",
        "${7*7}",
        "$ne",
        "[object%20Object]",
        "__proto__",
        "constructor",
        "prototype",
        "%5B%5D",
        "*",
      ),
      fc.integer({ min: 129, max: 8000 }).map((n) => "x".repeat(n)),
      fc.integer({ min: 2, max: 1000 }).map((n) => "a/".repeat(n)),
      fc
        .string({ unit: "grapheme", minLength: 1, maxLength: 40 })
        .filter(freeOfLeakMarkers)
        .map(percentEncoded),
      fc
        .string({ unit: "binary", minLength: 1, maxLength: 40 })
        .filter(freeOfLeakMarkers)
        .map(percentEncoded),
    );
    const whole = fc.constantFrom(
      "*",
      "http://evil.example/api/v1/orders",
      "//api/v1/orders",
      "/api/v1//orders",
      "/API/V1/ORDERS",
      "/api/v1/orders/",
      "/api/v1\\orders",
      "/./api/v1/orders",
      "/api/v1/./orders",
      "/%61pi/v1/orders",
      "/api/v1/orders#fragment",
      "/api/v1/orders/PAID_ID#",
      "/livez/..",
      "/readyz%00",
      "/%2e%2e/%2e%2e/etc/passwd",
      "/api/v1/%2e%2e/livez",
    );
    const prefix = fc.constantFrom(
      "/",
      "/api/v1/",
      "/api/v1/orders/",
      "/api/v1/products/",
      "/api/v1/payments/",
      "/api/v1/notifications/",
      "/api/v1/dev/",
      "/livez/",
    );
    return fc
      .record({
        path: fc.oneof(
          { arbitrary: fc.tuple(prefix, segment).map(([p, s]) => p + s), weight: 4 },
          { arbitrary: whole, weight: 1 },
        ),
        post: fc.boolean(),
      })
      .map(({ path, post: asPost }) => {
        const target = path.replace(/PAID_ID/g, world.paid);
        // bob, who must never see nor cancel alice's order whatever the path says
        if (asPost && target.startsWith("/api/v1/orders/"))
          return probe(
            build("POST", `${target}${target.endsWith("/") ? "" : "/"}cancel`, { headers: tokenOf("bob") }),
            {
              statuses: [400, 404, 405],
            },
            "bob",
          );
        return probe(get(target, tokenOf("bob")), { statuses: [200, 400, 404, 405] }, "bob");
      });
  }

  function hostileQueryRequest(): fc.Arbitrary<Probe> {
    const q = fc.oneof(
      fc.constantFrom(
        "a=1&a=2",
        "a[b]=c",
        "a[b][c][d][e][f][g][h]=1",
        "__proto__[polluted]=yes",
        "__proto__.polluted=yes",
        "constructor[prototype][polluted]=yes",
        "a[__proto__][polluted]=yes",
        "a[constructor][prototype][polluted]=yes",
        "__proto__[roles][]=admin",
        "toString=x",
        "hasOwnProperty=x",
        "valueOf=1",
        "=x",
        "&&&",
        "%",
        "%FF=%FF",
        "a=%00",
        "a[]=1&a[]=2",
        "a[0]=1&a[999999]=2",
        "a[99999999]=1",
        "%C3%A4=%C3%B6",
      ),
      fc.integer({ min: 1000, max: 6000 }).map((n) => `x=${"y".repeat(n)}`),
      fc
        .integer({ min: 100, max: 1500 })
        .map((n) => Array.from({ length: n }, (_, i) => `a${i}=1`).join("&")),
      fc
        .string({ unit: "binary", maxLength: 40 })
        .filter(freeOfLeakMarkers)
        .map((s) => `${percentEncoded(s)}=1`),
    );
    return fc
      .record({
        target: fc.constantFrom(
          { path: "/api/v1/orders", viewer: "alice" as const },
          { path: "/api/v1/products", viewer: "anonymous" as const },
          { path: "/api/v1/products/MUG-BLUE", viewer: "anonymous" as const },
          { path: "/api/v1/orders/PAID_ID", viewer: "bob" as const },
          { path: "/api/v1/notifications", viewer: "bob" as const },
          { path: "/livez", viewer: "anonymous" as const },
        ),
        q,
      })
      .map(({ target, q: queryString }) =>
        probe(
          get(`${target.path.replace(/PAID_ID/g, world.paid)}?${queryString}`, tokenOf(target.viewer)),
          { statuses: target.viewer === "bob" && target.path.includes("PAID_ID") ? [400, 404] : [200, 400] },
          target.viewer,
        ),
      );
  }

  function hostileHeaderRequest(): fc.Arbitrary<Probe> {
    const garbageBearer = "Bearer not-a-token";
    const headers = fc.oneof(
      fc
        .constantFrom(
          "x".repeat(200),
          "../../etc",
          "\u00ff\u00fe",
          "a b c",
          "<script>",
          "%00",
          "",
          "trace-ok.1:2",
        )
        .chain((id) => fc.constantFrom<Header[]>([["X-Request-Id", id]], [["X-Correlation-Id", id]])),
      fc.constant<Header[]>([
        ["X-Request-Id", "first"],
        ["X-Request-Id", "second"],
      ]),
      fc.constantFrom<Header[]>(
        [["traceparent", "garbage"]],
        [["traceparent", `00-${"0".repeat(32)}-${"0".repeat(16)}-01`]],
        [["traceparent", `00-${"a".repeat(32)}-${"b".repeat(16)}-01-extra`.repeat(50)]],
      ),
      fc.constantFrom<Header[]>(
        [["Accept", "text/html"]],
        [["Accept", "application/xml"]],
        [["Accept", "*/*;q=0"]],
        [["Accept-Encoding", "gzip, br"]],
        [["Accept-Encoding", "*;q=0"]],
        [["Content-Type", "text/plain"]],
        [["Content-Encoding", "gzip"]],
        [["X-HTTP-Method-Override", "DELETE"]],
        [["X-Forwarded-For", "1.2.3.4, ::1, garbage, 999.999.999.999"]],
        [["Forwarded", 'for="[::1]";proto=https;host=evil.example']],
        [["X-Forwarded-Host", "evil.example"]],
        [["Origin", "https://evil.example"]],
        [["Cookie", `session=${"c".repeat(8000)}`]],
        [["User-Agent", "u".repeat(8000)]],
        [["Range", "bytes=0-1"]],
        [["If-None-Match", "*"]],
        [["If-Modified-Since", "yesterday"]],
        [["Referer", "javascript:alert(1)"]],
        [["X-Hostile", "\u00c3\u00a9\u00ff"]],
      ),
      fc
        .integer({ min: 50, max: 400 })
        .map((n) => Array.from({ length: n }, (_, i): Header => [`X-Hostile-${i}`, "1"])),
    );
    const routes = fc.constantFrom(
      { path: "/api/v1/orders", viewer: "alice" as const },
      { path: "/api/v1/products", viewer: "anonymous" as const },
      { path: "/api/v1/orders/PAID_ID", viewer: "alice" as const },
      { path: "/api/v1/notifications", viewer: "alice" as const },
      { path: "/livez", viewer: "anonymous" as const },
    );
    const plain = fc
      .record({ route: routes, headers })
      .map(({ route, headers: extra }) =>
        probe(
          get(route.path.replace(/PAID_ID/g, world.paid), [...tokenOf(route.viewer), ...extra]),
          { statuses: [200, 304, 400, 406] },
          route.viewer,
        ),
      );
    const duplicatedAuthorization = fc
      .constantFrom<Header[]>(
        [bearer(world.tokens.alice), ["Authorization", garbageBearer]],
        [["Authorization", garbageBearer], bearer(world.tokens.alice)],
        [bearer(world.tokens.bob), bearer(world.tokens.alice)],
      )
      .map((auth) =>
        probe(
          get(`/api/v1/orders/${world.paid}`, auth),
          { statuses: [200, 400, 401, 404] },
          // whichever token wins, bob may be the one asking
          auth[0]?.[1] === `Bearer ${world.tokens.alice}` ? "alice" : "bob",
        ),
      );
    const devTokenBodies = fc
      .constantFrom<Header[]>(
        [
          ["Content-Type", "application/json"],
          ["Content-Type", "text/plain"],
        ],
        [
          ["Content-Type", "text/plain"],
          ["Content-Type", "application/json"],
        ],
        [
          ["Content-Type", "application/json"],
          ["Content-Encoding", "gzip"],
        ],
        [
          ["Content-Type", "application/json"],
          ["Content-Encoding", "x-hostile"],
        ],
        [
          ["Content-Type", "application/json"],
          ["Content-Encoding", "gzip, gzip"],
        ],
        [
          ["Content-Type", "application/json"],
          ["Content-Encoding", "deflate"],
        ],
        [
          ["Content-Type", "application/json"],
          ["Content-Encoding", "br"],
        ],
      )
      .map((extra) =>
        probe(
          post("/api/v1/dev/token", { json: { sub: "mallory" }, contentType: null, headers: extra }),
          { statuses: [200, 400, 415] },
          "anonymous",
        ),
      );
    const duplicatedKey = fc
      .record({ order: orderBody(), a: fc.uuid(), b: fc.uuid() })
      .map(({ order, a, b }) =>
        probe(
          post("/api/v1/orders", {
            json: order,
            headers: [...tokenOf("alice"), ["Idempotency-Key", a], ["Idempotency-Key", b]],
          }),
          { statuses: [400] },
          "alice",
        ),
      );
    const badKey = fc
      .record({
        order: orderBody(),
        key: fc.constantFrom("", "k".repeat(256), "\u00ff\u00fe", "a b", "\u00c3\u00a9t\u00c3\u00a9"),
      })
      .map(({ order, key }) =>
        probe(
          post("/api/v1/orders", { json: order, headers: [...tokenOf("alice"), ["Idempotency-Key", key]] }),
          { statuses: [400], codes: ["INVALID_IDEMPOTENCY_KEY", "IDEMPOTENCY_KEY_REQUIRED"] },
          "alice",
        ),
      );
    return fc.oneof(
      { arbitrary: plain, weight: 6 },
      { arbitrary: duplicatedAuthorization, weight: 1 },
      { arbitrary: devTokenBodies, weight: 1 },
      { arbitrary: duplicatedKey, weight: 1 },
      { arbitrary: badKey, weight: 1 },
    );
  }

  function forgedWebhookRequest(): fc.Arbitrary<Probe> {
    const now = () => Math.floor(Date.now() / 1000);
    const event = fc
      .record({
        type: fc.constantFrom(
          "payment_intent.succeeded",
          "payment_intent.payment_failed",
          "charge.refunded",
          "evil.event",
        ),
        id: fc.uuid(),
      })
      .map(({ type, id }) =>
        JSON.stringify({
          id: `evt_${id}`,
          type,
          created: now(),
          data: {
            object: {
              id: world.providerPaymentId,
              object: "payment_intent",
              status: "succeeded",
              metadata: { orderId: world.paid },
            },
          },
        }),
      );
    const body = fc.oneof(
      event,
      fc.constantFrom("", "{}", "[]", "null", "{", '{"__proto__":{"polluted":"yes"}}'),
      fc.string({ maxLength: 300 }).filter(freeOfLeakMarkers),
    );
    return fc
      .record({
        body,
        signature: fc.constantFrom(
          "none",
          "empty",
          "garbage",
          "old-format",
          "wrong-secret",
          "stale",
          "future",
          "other-body",
          "v1-only",
          "huge",
          "duplicated",
        ),
        contentType: fc.constantFrom<string | null>(
          "application/json",
          "text/plain",
          "application/octet-stream",
          null,
        ),
      })
      .map(({ body: text, signature, contentType }) => {
        const t = now();
        const headers: Header[] = [];
        const sig = (value: string) => headers.push(["Psp-Signature", value]);
        switch (signature) {
          case "none":
            break;
          case "empty":
            sig("");
            break;
          case "garbage":
            sig("garbage");
            break;
          case "old-format":
            sig("t=1,v1=abc");
            break;
          case "wrong-secret":
            sig(signPayload("whsec_not_the_secret_0123", text, t));
            break;
          case "stale":
            sig(signPayload(WEBHOOK_SECRET, text, t - 3600));
            break;
          case "future":
            sig(signPayload(WEBHOOK_SECRET, text, t + 3600));
            break;
          case "other-body":
            sig(signPayload(WEBHOOK_SECRET, `${text} `, t));
            break;
          case "v1-only":
            sig(`v1=${"0".repeat(64)}`);
            break;
          case "huge":
            sig(`t=${t},${Array.from({ length: 100 }, () => `v1=${"f".repeat(64)}`).join(",")}`);
            break;
          default:
            sig("garbage");
            sig(signPayload(WEBHOOK_SECRET, text, t - 3600));
        }
        const expect: Expectation =
          contentType === "application/json"
            ? { statuses: [400], codes: ["INVALID_SIGNATURE", "VALIDATION_ERROR"] }
            : {
                statuses: [400, 415],
                codes: ["INVALID_SIGNATURE", "VALIDATION_ERROR", "UNSUPPORTED_MEDIA_TYPE"],
              };
        return probe(post("/api/v1/payments/webhook", { text, contentType, headers }), expect, "anonymous");
      });
  }
});
