/**
 * The gateway's edge over real HTTP: rate limits (per principal, per address, X-Forwarded-For
 * only from trusted proxies, one bucket across gateway instances through Redis), content types,
 * CORS, W3C traceparent carried into the outbox, webhook secret rotation, and REQUEST_TIMEOUT for
 * slow clients and slow call chains.
 */
import { generateKeyPairSync, randomUUID } from "node:crypto";
import { createServer } from "node:http";
import { connect, type AddressInfo } from "node:net";
import jwt from "jsonwebtoken";
import type { BrokerOptions, Context, Middleware } from "moleculer";
import { infrastructureOf } from "../../lib/infrastructure";
import { OUTBOX_COLLECTION, type OutboxRow } from "../../lib/outbox/outbox";
import { signPayload } from "../../lib/psp/psp.signature";
import type { ErrorBody } from "../support/api";
import { startGatewayNode, type GatewayNode } from "../support/gateway-node";
import { redisServerBinary, startRedisServer, type RedisServer } from "../support/redis-server";

const JWT_SECRET = "gateway-edge-secret-0123456789";
const WEBHOOK_SECRET = "whsec_gateway_edge_new_0123456789";
const WEBHOOK_SECRET_PREVIOUS = "whsec_gateway_edge_old_0123456789";

const nodes: GatewayNode[] = [];

async function startNode(
  env: Record<string, string> = {},
  broker: Partial<BrokerOptions> = {},
): Promise<GatewayNode> {
  const node = await startGatewayNode({
    name: "gateway-edge",
    jwtSecret: JWT_SECRET,
    webhookSecret: WEBHOOK_SECRET,
    env: { PSP_WEBHOOK_SECRET_PREVIOUS: WEBHOOK_SECRET_PREVIOUS, ...env },
    broker,
    // the rate-limit tests look at every 429 themselves
    retryReadsWhenLimited: false,
  });
  nodes.push(node);
  return node;
}

afterEach(async () => {
  for (const node of nodes.splice(0)) await node.stop();
});

describe("rate limits", () => {
  it("refuses a caller over its budget with 429, Retry-After and RateLimit headers; others are untouched", async () => {
    const { api } = await startNode({ RATE_LIMIT_READS: "1:3" });
    const alice = api.token("alice");
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await api.request("GET", "/api/v1/products", { token: alice }));
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 429]);
    expect(answers[0]?.headers.get("ratelimit-policy")).toBe('"reads";q=3;w=3');
    expect(answers[0]?.headers.get("ratelimit")).toBe('"reads";r=2;t=1');
    const refused = answers[3] as { headers: Headers; body: ErrorBody };
    expect(refused.headers.get("retry-after")).toBe("1");
    expect(refused.headers.get("ratelimit")).toMatch(/^"reads";r=0;t=\d+$/);
    expect(refused.body.error).toMatchObject({
      code: "RATE_LIMITED",
      requestId: refused.headers.get("x-request-id"),
    });

    // bob's bucket is his own; alice's writes draw from another budget
    expect((await api.request("GET", "/api/v1/products", { token: api.token("bob") })).status).toBe(200);
    const order = await api.placeOrder(alice, [{ sku: "MUG-BLUE", quantity: 1 }]);
    expect(order.status).toBe(201);
    expect(order.headers.get("ratelimit-policy")).toBe('"orders";q=20;w=2');

    // the bucket refills: after Retry-After the caller is served again
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    expect((await api.request("GET", "/api/v1/products", { token: alice })).status).toBe(200);
  });

  it("limits order creation per customer with its own budget", async () => {
    const { api } = await startNode({ RATE_LIMIT_ORDERS: "0.1:2" });
    const carol = api.token("carol");
    const statuses = [];
    for (let i = 0; i < 3; i++)
      statuses.push((await api.placeOrder(carol, [{ sku: "MUG-BLUE", quantity: 1 }])).status);
    expect(statuses).toEqual([201, 201, 429]);
    // the refused attempt reserved nothing and wrote nothing
    const mine = await api.request<{ items: unknown[] }>("GET", "/api/v1/orders", { token: carol });
    expect(mine.body.items).toHaveLength(2);
  });

  it("does not let a client reset its limit by inventing X-Forwarded-For, unless a trusted proxy says so", async () => {
    const untrusted = await startNode({ RATE_LIMIT_READS: "0.1:2" });
    const spoofed = [];
    for (let i = 0; i < 3; i++)
      spoofed.push(
        (
          await untrusted.api.request("GET", "/api/v1/products", {
            headers: { "x-forwarded-for": `198.51.100.${i}` },
          })
        ).status,
      );
    expect(spoofed).toEqual([200, 200, 429]);

    // behind a trusted proxy (loopback here), the forwarded address is the client
    const proxied = await startNode({ RATE_LIMIT_READS: "0.1:2", TRUSTED_PROXIES: "127.0.0.1" });
    const viaProxy = async (client: string) =>
      (await proxied.api.request("GET", "/api/v1/products", { headers: { "x-forwarded-for": client } }))
        .status;
    expect([
      await viaProxy("198.51.100.1"),
      await viaProxy("198.51.100.1"),
      await viaProxy("198.51.100.1"),
    ]).toEqual([200, 200, 429]);
    expect(await viaProxy("198.51.100.2")).toBe(200);
  });

  it("answers probes and the webhook without a limit", async () => {
    const { api } = await startNode({ RATE_LIMIT_READS: "0.1:1", RATE_LIMIT_WRITES: "0.1:1" });
    for (let i = 0; i < 3; i++) expect((await api.request("GET", "/livez")).status).toBe(200);
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${api.base}/api/v1/payments/webhook`, { method: "POST", body: "{}" });
      expect(res.status).toBe(400); // unsigned, never 429
    }
  });
});

redisServerBinary.describe("rate limits shared through Redis", () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedisServer();
  });
  afterAll(async () => {
    await redis.stop();
  });

  it("draws one bucket across two gateway instances, exactly its burst under concurrency", async () => {
    const env = {
      REDIS_URL: redis.url,
      RATE_LIMIT_READS: "0.1:10",
      NAMESPACE: `edge-${randomUUID().slice(0, 8)}`,
    };
    const [a, b] = [await startNode(env), await startNode(env)] as [GatewayNode, GatewayNode];
    const dave = a.api.token("dave");
    const statuses = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        (i % 2 === 0 ? a : b).api.request("GET", "/api/v1/products", { token: dave }),
      ),
    );
    const counts = statuses.reduce<Record<number, number>>(
      (acc, r) => ({ ...acc, [r.status]: (acc[r.status] ?? 0) + 1 }),
      {},
    );
    expect(counts).toEqual({ 200: 10, 429: 20 });
  });
});

describe("content types", () => {
  it("answers 415 to a body that is not JSON, before anything runs", async () => {
    const { api } = await startNode();
    const alice = api.token("alice");
    for (const type of ["text/plain", "application/x-www-form-urlencoded", "application/xml", undefined]) {
      const res = await fetch(`${api.base}/api/v1/orders`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${alice}`,
          "idempotency-key": randomUUID(),
          ...(type === undefined ? {} : { "content-type": type }),
        },
        body: Buffer.from(JSON.stringify({ items: [{ sku: "MUG-BLUE", quantity: 1 }] })),
      });
      expect(res.status).toBe(415);
      expect(((await res.json()) as ErrorBody).error.code).toBe("UNSUPPORTED_MEDIA_TYPE");
    }
    const mine = await api.request<{ items: unknown[] }>("GET", "/api/v1/orders", { token: alice });
    expect(mine.body.items).toHaveLength(0);
    // JSON with a charset, and the +json suffix, are JSON
    const ok = await fetch(`${api.base}/api/v1/orders`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${alice}`,
        "idempotency-key": randomUUID(),
        "content-type": "application/json; charset=utf-8",
      },
      body: JSON.stringify({ items: [{ sku: "MUG-BLUE", quantity: 1 }] }),
    });
    expect(ok.status).toBe(201);
  });
});

describe("CORS", () => {
  it("sends no CORS headers unless origins are configured", async () => {
    const { api } = await startNode();
    const res = await fetch(`${api.base}/api/v1/products`, {
      headers: { origin: "https://shop.example.com" },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("access-control-allow-origin")).toBeNull();
  });

  it("answers preflights and echoes an allowed origin; refuses any other", async () => {
    const { api } = await startNode({ CORS_ORIGINS: "https://shop.example.com" });
    const preflight = await fetch(`${api.base}/api/v1/orders`, {
      method: "OPTIONS",
      headers: {
        origin: "https://shop.example.com",
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type, idempotency-key",
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get("access-control-allow-origin")).toBe("https://shop.example.com");
    expect(preflight.headers.get("access-control-allow-headers")).toMatch(/Idempotency-Key/i);
    expect(preflight.headers.get("access-control-allow-methods")).toContain("POST");

    const allowed = await fetch(`${api.base}/api/v1/products`, {
      headers: { origin: "https://shop.example.com" },
    });
    expect(allowed.status).toBe(200);
    expect(allowed.headers.get("access-control-allow-origin")).toBe("https://shop.example.com");
    expect(allowed.headers.get("access-control-expose-headers")).toMatch(/X-Request-Id/);

    const other = await fetch(`${api.base}/api/v1/products`, {
      headers: { origin: "https://evil.example.net" },
    });
    expect(other.status).toBe(403);
    expect(other.headers.get("access-control-allow-origin")).toBeNull();
    expect(((await other.json()) as ErrorBody).error.code).toBe("ORIGIN_NOT_ALLOWED");
  });
});

describe("trace context", () => {
  it("carries a well-formed traceparent into the events the request causes, and drops a malformed one", async () => {
    const node = await startNode();
    const { api } = node;
    const alice = api.token("alice");
    const traceparent = `00-${randomUUID().replace(/-/g, "")}-${randomUUID().replace(/-/g, "").slice(0, 16)}-01`;
    const traced = await api.request<{ id: string }>("POST", "/api/v1/orders", {
      token: alice,
      body: { items: [{ sku: "MUG-BLUE", quantity: 1 }] },
      headers: { "idempotency-key": randomUUID(), traceparent },
    });
    expect(traced.status).toBe(201);
    const untraced = await api.request<{ id: string }>("POST", "/api/v1/orders", {
      token: alice,
      body: { items: [{ sku: "MUG-BLUE", quantity: 1 }] },
      headers: { "idempotency-key": randomUUID(), traceparent: "00-not-a-trace-01" },
    });
    expect(untraced.status).toBe(201);

    const store = await infrastructureOf(node.broker).store("orders");
    const rows = await store.collection<OutboxRow>(OUTBOX_COLLECTION).find({ type: "order.created" });
    const byOrder = new Map(rows.map((row) => [(row.payload as { orderId?: string }).orderId, row]));
    expect(byOrder.get(traced.body.id)?.traceparent).toBe(traceparent);
    expect(byOrder.get(untraced.body.id)?.traceparent).toBeUndefined();
  });
});

describe("payment webhook secret rotation", () => {
  it("accepts webhooks signed with the current or the previous secret, and a header carrying both", async () => {
    const { api } = await startNode();
    const now = Math.floor(Date.now() / 1000);
    const event = (id: string) =>
      JSON.stringify({
        id,
        type: "payment_intent.created",
        created: now,
        data: {
          object: { id: `pi_${id}`, object: "payment_intent", status: "requires_capture", metadata: {} },
        },
      });
    const post = (body: string, signature: string) =>
      fetch(`${api.base}/api/v1/payments/webhook`, {
        method: "POST",
        headers: { "content-type": "application/json", "psp-signature": signature },
        body,
      });
    const current = event(`evt_${randomUUID()}`);
    expect((await post(current, signPayload(WEBHOOK_SECRET, current, now))).status).toBe(200);
    const previous = event(`evt_${randomUUID()}`);
    expect((await post(previous, signPayload(WEBHOOK_SECRET_PREVIOUS, previous, now))).status).toBe(200);
    // a provider rolling its secret signs with both: v1 values side by side
    const both = event(`evt_${randomUUID()}`);
    const v1 = (secret: string) => (signPayload(secret, both, now).split(",")[1] as string).slice(3);
    const header = `t=${now},v1=${v1("whsec_some_other_secret_01234")},v1=${v1(WEBHOOK_SECRET)}`;
    expect((await post(both, header)).status).toBe(200);
    // a secret that is neither is refused
    const forged = event(`evt_${randomUUID()}`);
    const refused = await post(forged, signPayload("whsec_some_other_secret_01234", forged, now));
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as ErrorBody).error.code).toBe("INVALID_SIGNATURE");
  });
});

describe("tokens from an identity provider (JWKS_URL)", () => {
  it("accepts RS256 tokens signed by the provider's keys and refuses the same claims forged with HS256 and its public key", async () => {
    const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const jwk = { ...publicKey.export({ format: "jwk" }), kid: "idp-1", use: "sig", alg: "RS256" };
    const idp = createServer((_req, res) => {
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ keys: [jwk] }));
    });
    await new Promise<void>((resolve) => idp.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = idp.address() as AddressInfo;
      const { api } = await startNode({
        JWKS_URL: `http://127.0.0.1:${port}/.well-known/jwks.json`,
        JWT_ISSUER: "https://idp.example.com/",
        JWT_AUDIENCE: "ordermesh",
      });
      const claims = { roles: ["customer"] };
      const options = {
        subject: "erin",
        issuer: "https://idp.example.com/",
        audience: "ordermesh",
        expiresIn: 300,
      };
      const good = jwt.sign(claims, privateKey, { ...options, algorithm: "RS256", keyid: "idp-1" });
      const mine = await api.request("GET", "/api/v1/orders", { token: good });
      expect(mine.status).toBe(200);

      const pem = publicKey.export({ format: "pem", type: "spki" }).toString();
      const confused = jwt.sign(claims, pem, { ...options, algorithm: "HS256", keyid: "idp-1" });
      const wrongAudience = jwt.sign(claims, privateKey, {
        ...options,
        audience: "other",
        algorithm: "RS256",
        keyid: "idp-1",
      });
      const ownSecretWrongIssuer = api.token("erin");
      for (const token of [confused, wrongAudience, ownSecretWrongIssuer]) {
        const res = await api.request<ErrorBody>("GET", "/api/v1/orders", { token });
        expect(res.status).toBe(401);
        expect(res.body.error.code).toBe("UNAUTHORIZED");
      }
    } finally {
      await new Promise((resolve) => idp.close(resolve));
    }
  });
});

describe("request timeout", () => {
  it("answers a client too slow to send its request 408 in the envelope, and closes the connection", async () => {
    const { api } = await startNode({ REQUEST_TIMEOUT: "1s" });
    const port = Number(new URL(api.base).port);
    const started = Date.now();
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect(port, "127.0.0.1", () =>
        socket.write("GET /api/v1/products HTTP/1.1\r\nHost: x\r\n"),
      );
      let received = "";
      socket.on("data", (chunk) => (received += chunk.toString()));
      socket.on("close", () => resolve(received));
      socket.on("error", reject);
    });
    const [head, body] = answer.split("\r\n\r\n") as [string, string];
    expect(head.split("\r\n")[0]).toBe("HTTP/1.1 408 Request Timeout");
    expect(head).toMatch(/^Connection: close$/im);
    const requestId = /^X-Request-Id: (.+)$/im.exec(head)?.[1];
    expect(JSON.parse(body)).toEqual({
      error: { code: "REQUEST_TIMEOUT", message: "request timeout", requestId },
    });
    // answered about when the second went by, not at node's default 30 s check
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it("answers 503 with Retry-After when the call chain behind a request outlasts it", async () => {
    // a test-only broker middleware: the product list takes 3 s
    const slowProducts: Middleware = {
      localAction(next: (ctx: Context) => Promise<unknown>, action: { name?: string }) {
        if (action.name !== "inventory.listProducts") return next;
        return async (ctx: Context) => {
          await new Promise((resolve) => setTimeout(resolve, 3_000));
          return next(ctx);
        };
      },
    };
    const { api } = await startNode({ REQUEST_TIMEOUT: "1s" }, { middlewares: [slowProducts] });
    const res = await api.request<ErrorBody>("GET", "/api/v1/products");
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("1");
    expect(res.body.error.code).toBe("SERVICE_UNAVAILABLE");
    // the other routes are not held up
    expect((await api.request("GET", "/api/v1/products/MUG-BLUE")).status).toBe(200);
  });
});
