/**
 * The HTTP API of the gateway over real HTTP, with every service on one broker (embedded stores,
 * in-process bus) and the payment-provider simulator: authentication, roles, the error envelope,
 * bad input, the dev-token switch and the payment webhook's signature check.
 */
import { waitFor } from "../support/wait";
import { randomUUID } from "node:crypto";
import type { ServiceBroker } from "moleculer";
import { issueToken } from "../../lib/auth/jwt";
import { infrastructureOf } from "../../lib/infrastructure";
import { signPayload } from "../../lib/psp/psp.signature";
import type { PspSimulator } from "../../lib/psp/psp.simulator";
import type { Api, ErrorBody, OrderBody } from "../support/api";
import { startGatewayNode, type GatewayNode } from "../support/gateway-node";

const JWT_SECRET = "gateway-api-secret-0123456789";
const WEBHOOK_SECRET = "whsec_gateway_api_0123456789";

describe("gateway HTTP API", () => {
  let node: GatewayNode | undefined;
  let broker: ServiceBroker;
  let sim: PspSimulator;
  let api: Api;

  async function startBroker(devTokens: boolean): Promise<void> {
    node = await startGatewayNode({
      name: "gateway-api",
      jwtSecret: JWT_SECRET,
      webhookSecret: WEBHOOK_SECRET,
      devTokens,
    });
    ({ broker, sim, api } = node);
  }

  afterEach(async () => {
    await node?.stop();
    node = undefined;
  });

  describe("with dev tokens off", () => {
    beforeEach(() => startBroker(false));

    it("answers 401 without a token or with a bad one, in the error envelope", async () => {
      const none = await api.request<ErrorBody>("GET", "/api/v1/orders");
      expect(none.status).toBe(401);
      expect(none.body.error).toMatchObject({ code: "UNAUTHORIZED" });
      expect(typeof none.body.error.requestId).toBe("string");
      expect(none.headers.get("www-authenticate")).toMatch(/^Bearer/);

      const forged = issueToken({ sub: "alice", roles: ["admin"] }, { secret: "not-the-secret-at-all" });
      expect((await api.request("GET", "/api/v1/orders", { token: forged })).status).toBe(401);
      const none_alg = `${Buffer.from('{"alg":"none"}').toString("base64url")}.${Buffer.from('{"sub":"a","roles":["admin"]}').toString("base64url")}.`;
      expect((await api.request("GET", "/api/v1/orders", { token: none_alg })).status).toBe(401);
      const garbage = await api.request<ErrorBody>("GET", "/api/v1/orders", {
        headers: { authorization: "Basic Zm9v" },
      });
      expect(garbage.status).toBe(401);
    });

    it("answers with a request id — the client's when well-formed — and security headers, errors included", async () => {
      const mine = await api.request<ErrorBody>("GET", "/api/v1/orders", {
        headers: { "x-request-id": "trace-123.a:b" },
      });
      expect(mine.headers.get("x-request-id")).toBe("trace-123.a:b");
      expect(mine.body.error.requestId).toBe("trace-123.a:b");
      const hostile = await api.request<ErrorBody>("GET", "/api/v1/orders", {
        headers: { "x-request-id": "x".repeat(500) },
      });
      const replaced = hostile.headers.get("x-request-id") ?? "";
      expect(replaced).toMatch(/^[0-9a-f-]{36}$/);
      expect(hostile.body.error.requestId).toBe(replaced);
      for (const res of [
        mine,
        await api.request("GET", "/api/v1/products/MUG-BLUE"),
        await api.request("GET", "/nope"),
      ]) {
        expect(res.headers.get("x-content-type-options")).toBe("nosniff");
        expect(res.headers.get("x-frame-options")).toBe("DENY");
        expect(res.headers.get("cache-control")).toBe("no-store");
        expect(res.headers.get("x-request-id")).toBeTruthy();
      }
    });

    it("enforces roles: 403 for a customer on admin routes and for an admin placing an order", async () => {
      const customer = api.token("alice");
      const admin = api.token("ops", ["admin"]);
      const put = await api.request<ErrorBody>("PUT", "/api/v1/products/NEW-ONE", {
        token: customer,
        body: { name: "x", price: { minor: 100, currency: "USD" } },
      });
      expect(put.status).toBe(403);
      expect(put.body.error.code).toBe("FORBIDDEN");
      expect(
        (
          await api.request("POST", "/api/v1/products/MUG-BLUE/restock", {
            token: customer,
            body: { quantity: 5 },
          })
        ).status,
      ).toBe(403);
      expect((await api.placeOrder(admin, [{ sku: "MUG-BLUE", quantity: 1 }])).status).toBe(403);
      expect((await api.request("GET", "/api/v1/orders?customerId=bob", { token: customer })).status).toBe(
        403,
      );
    });

    it("refuses bad input with 4xx and changes nothing", async () => {
      const alice = api.token("alice");
      const before = await api.request<{ available: number }>("GET", "/api/v1/products/MUG-BLUE");
      expect(before.body.available).toBeGreaterThan(0);
      const noKey = await api.request<ErrorBody>("POST", "/api/v1/orders", {
        token: alice,
        body: { items: [{ sku: "MUG-BLUE", quantity: 1 }] },
      });
      expect(noKey.status).toBe(400);
      expect(noKey.body.error.code).toBe("IDEMPOTENCY_KEY_REQUIRED");

      const cases: unknown[] = [
        { items: [{ sku: "MUG-BLUE", quantity: 1 }], status: "PAID" },
        { items: [{ sku: "MUG-BLUE", quantity: 1 }], customerId: "bob" },
        { items: [{ sku: "MUG-BLUE", quantity: 0 }] },
        { items: [{ sku: "MUG-BLUE", quantity: 1001 }] },
        { items: [{ sku: "MUG-BLUE", quantity: 1.5 }] },
        { items: [{ sku: "../etc", quantity: 1 }] },
        { items: [] },
        { items: Array.from({ length: 101 }, (_, i) => ({ sku: `S${i}`, quantity: 1 })) },
        { items: "MUG-BLUE" },
        [],
      ];
      for (const body of cases) {
        const res = await api.request<ErrorBody>("POST", "/api/v1/orders", {
          token: alice,
          body,
          headers: { "idempotency-key": randomUUID() },
        });
        expect([res.status, res.body.error.code]).toEqual([400, "VALIDATION_ERROR"]);
      }
      const unknownSku = await api.placeOrder(alice, [{ sku: "NO-SUCH-THING", quantity: 1 }]);
      expect([unknownSku.status, unknownSku.body.error.code]).toEqual([422, "UNKNOWN_SKU"]);

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
      expect(((await badJson.json()) as ErrorBody).error.code).toBe("INVALID_JSON");

      const huge = await fetch(`${api.base}/api/v1/orders`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${alice}`,
          "content-type": "application/json",
          "idempotency-key": "k2",
        },
        body: JSON.stringify({ items: [{ sku: "MUG-BLUE", quantity: 1 }], pad: "x".repeat(70 * 1024) }),
      });
      expect(huge.status).toBe(413);

      const orders = await api.request<{ items: unknown[] }>("GET", "/api/v1/orders", { token: alice });
      expect(orders.body.items).toHaveLength(0);
      const after = await api.request<{ available: number }>("GET", "/api/v1/products/MUG-BLUE");
      expect(after.body.available).toBe(before.body.available);
    });

    it("answers 404 in the envelope for unknown routes, and for the dev-token endpoint when it is off", async () => {
      const unknown = await api.request<ErrorBody>("GET", "/api/v1/nothing-here");
      expect(unknown.status).toBe(404);
      expect(unknown.body.error.code).toBe("NOT_FOUND");
      const dev = await api.request<ErrorBody>("POST", "/api/v1/dev/token", { body: { sub: "alice" } });
      expect(dev.status).toBe(404);
    });

    it("serves products to anyone, and the full counters to admins", async () => {
      const list = await api.request<{ rows: { sku: string }[]; total: number }>(
        "GET",
        "/api/v1/products?pageSize=5",
      );
      expect(list.status).toBe(200);
      expect(list.body.rows).toHaveLength(5);
      expect(list.body.total).toBeGreaterThanOrEqual(12);
      const anon = await api.request<Record<string, unknown>>("GET", "/api/v1/products/MUG-BLUE");
      expect(Object.keys(anon.body).sort()).toEqual(["available", "name", "price", "sku"]);
      const asAdmin = await api.request<Record<string, unknown>>("GET", "/api/v1/products/MUG-BLUE", {
        token: api.token("ops", ["admin"]),
      });
      expect(asAdmin.body).toHaveProperty("received");
      // the list shows the same: public fields to anyone and to customers, every counter to admins
      for (const token of [undefined, api.token("alice")]) {
        const page = await api.request<{ rows: Record<string, unknown>[] }>(
          "GET",
          "/api/v1/products?pageSize=5",
          {
            ...(token === undefined ? {} : { token }),
          },
        );
        for (const row of page.body.rows)
          expect(Object.keys(row).sort()).toEqual(["available", "name", "price", "sku"]);
      }
      const adminList = await api.request<{ rows: Record<string, unknown>[] }>(
        "GET",
        "/api/v1/products?pageSize=5",
        {
          token: api.token("ops", ["admin"]),
        },
      );
      expect(adminList.body.rows).toHaveLength(5);
      for (const row of adminList.body.rows) {
        expect(row).toEqual(
          expect.objectContaining({ reserved: expect.any(Number), sold: expect.any(Number) }),
        );
        expect(row.received).toBe(Number(row.available) + Number(row.reserved) + Number(row.sold));
      }
      expect((await api.request("GET", "/api/v1/products/NOPE")).status).toBe(404);
    });

    it("refuses unsigned, forged and stale webhooks; a forged 'succeeded' never pays an order", async () => {
      const alice = api.token("alice");
      sim.setFaults({ dropWebhooks: true });
      const placed = await api.placeOrder(alice, [{ sku: "MUG-BLUE", quantity: 1 }], "pm_card_slow");
      expect(placed.status).toBe(201);
      const payment = async () =>
        (
          await api.request<{ items: { id: string; providerPaymentId?: string }[] }>(
            "GET",
            `/api/v1/payments?orderId=${placed.body.id}`,
            { token: alice },
          )
        ).body.items[0];
      await waitFor(
        "the provider's payment id",
        async () => (await payment())?.providerPaymentId !== undefined,
      );
      const current = await payment();
      const body = JSON.stringify({
        id: `evt_forged_${randomUUID()}`,
        type: "payment_intent.succeeded",
        created: Math.floor(Date.now() / 1000),
        data: {
          object: {
            id: current?.providerPaymentId,
            object: "payment_intent",
            status: "succeeded",
            metadata: { paymentId: current?.id, orderId: placed.body.id },
          },
        },
      });
      const post = (signature?: string) =>
        fetch(`${api.base}/api/v1/payments/webhook`, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            ...(signature === undefined ? {} : { "psp-signature": signature }),
          },
          body,
        });
      const now = Math.floor(Date.now() / 1000);
      for (const signature of [
        undefined,
        "t=1,v1=abc",
        signPayload("whsec_wrong_secret_0123", body, now),
        signPayload(WEBHOOK_SECRET, body, now - 3600),
      ]) {
        const res = await post(signature);
        expect(res.status).toBe(400);
        expect(((await res.json()) as ErrorBody).error.code).toBe("INVALID_SIGNATURE");
      }
      const order = await api.request<OrderBody>("GET", `/api/v1/orders/${placed.body.id}`, { token: alice });
      expect(order.body.status).toBe("PENDING_PAYMENT");
    });
  });

  describe("Idempotency-Key", () => {
    beforeEach(() => startBroker(false));

    it("replays the stored response to a retry, refuses the key with another body, scopes keys per customer", async () => {
      const alice = api.token("alice");
      const key = randomUUID();
      const first = await api.placeOrder(alice, [{ sku: "MUG-BLUE", quantity: 1 }], "pm_card_visa", key);
      expect(first.status).toBe(201);
      expect(first.headers.get("idempotent-replayed")).toBeNull();
      expect(first.headers.get("location")).toBe(`/api/v1/orders/${first.body.id}`);

      const retry = await api.placeOrder(alice, [{ sku: "MUG-BLUE", quantity: 1 }], "pm_card_visa", key);
      expect(retry.status).toBe(201);
      expect(retry.headers.get("idempotent-replayed")).toBe("true");
      expect(retry.body).toEqual(first.body); // the stored response, not today's state

      const other = await api.placeOrder(alice, [{ sku: "MUG-BLUE", quantity: 2 }], "pm_card_visa", key);
      expect([other.status, other.body.error.code]).toEqual([422, "IDEMPOTENCY_KEY_REUSED"]);

      const bob = await api.placeOrder(
        api.token("bob"),
        [{ sku: "MUG-BLUE", quantity: 1 }],
        "pm_card_visa",
        key,
      );
      expect(bob.status).toBe(201);
      expect(bob.headers.get("idempotent-replayed")).toBeNull();
      expect(bob.body.id).not.toBe(first.body.id);

      const tooLong = await api.placeOrder(
        alice,
        [{ sku: "MUG-BLUE", quantity: 1 }],
        "pm_card_visa",
        "k".repeat(256),
      );
      expect([tooLong.status, tooLong.body.error.code]).toEqual([400, "INVALID_IDEMPOTENCY_KEY"]);
    });

    it("answers 409 while the first request with the key is in flight", async () => {
      const alice = api.token("alice");
      const results = await Promise.all(
        Array.from({ length: 8 }, () =>
          api.placeOrder(alice, [{ sku: "MUG-BLUE", quantity: 1 }], "pm_card_visa", "same-key"),
        ),
      );
      const statuses = results.map((r) => r.status);
      expect(statuses.filter((s) => s === 409).length).toBeGreaterThan(0);
      expect(
        results
          .filter((r) => r.status === 409)
          .every((r) => r.body.error.code === "IDEMPOTENCY_KEY_IN_FLIGHT"),
      ).toBe(true);
      expect(new Set(results.filter((r) => r.status === 201).map((r) => r.body.id)).size).toBe(1);
    });

    it("still places one order when the key-value store lost every record (the database holds the key)", async () => {
      const alice = api.token("alice");
      const first = await api.placeOrder(
        alice,
        [{ sku: "MUG-BLUE", quantity: 1 }],
        "pm_card_visa",
        "flushed",
      );
      const kv = await infrastructureOf(broker).kv();
      // what FLUSHALL does to Redis: every idempotency record gone
      expect(kv.kind).toBe("memory");
      (kv as unknown as { entries: Map<string, unknown> }).entries.clear();
      const again = await api.placeOrder(
        alice,
        [{ sku: "MUG-BLUE", quantity: 1 }],
        "pm_card_visa",
        "flushed",
      );
      expect(again.status).toBe(201);
      expect(again.headers.get("idempotent-replayed")).toBeNull();
      expect(again.body.id).toBe(first.body.id);
      const orders = await api.request<{ items: unknown[] }>("GET", "/api/v1/orders", { token: alice });
      expect(orders.body.items).toHaveLength(1);
    });

    it("makes an optional key on cancel replay the first answer", async () => {
      const alice = api.token("alice");
      const placed = await api.placeOrder(alice, [{ sku: "MUG-BLUE", quantity: 1 }], "pm_card_declined");
      const cancel = () =>
        api.request<OrderBody>("POST", `/api/v1/orders/${placed.body.id}/cancel`, {
          token: alice,
          headers: { "idempotency-key": "cancel-1" },
        });
      const first = await cancel();
      expect([200, 409]).toContain(first.status);
      const second = await cancel();
      if (first.status === 200) expect(second.headers.get("idempotent-replayed")).toBe("true");
      expect(second.status).toBe(first.status);
    });
  });

  describe("with dev tokens on", () => {
    beforeEach(() => startBroker(true));

    it("issues tokens that the API accepts, customer by default", async () => {
      const res = await api.request<{ token: string; expiresIn: number }>("POST", "/api/v1/dev/token", {
        body: { sub: "alice" },
      });
      expect(res.status).toBe(200);
      const orders = await api.request<{ items: unknown[] }>("GET", "/api/v1/orders", {
        token: res.body.token,
      });
      expect(orders.status).toBe(200);
      const bad = await api.request<ErrorBody>("POST", "/api/v1/dev/token", {
        body: { sub: "alice", roles: ["root"] },
      });
      expect(bad.status).toBe(400);
    });
  });
});
