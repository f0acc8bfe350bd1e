/**
 * The order flow end to end, over HTTP through the gateway, in both runtime modes:
 * - embedded: `ordermesh start`, one process, in-process bus;
 * - cluster: `ordermesh cluster`, one process per service over a nats-server the supervisor
 *   starts, JetStream bus.
 * The payment provider is the simulator, run by the test (like a real provider, it lives outside
 * ordermesh and survives its crashes), with its webhooks pointed at the gateway.
 */
import { randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startPspSimulator, type PspSimulator } from "../../lib/psp/psp.simulator";
import { Api, type OrderBody } from "../support/api";
import { requireBinary } from "../support/infra";
import { runOrdermesh, waitForHttp, type OrdermeshProcess } from "../support/ordermesh-process";
import { freePort } from "../support/ports";
import { waitFor } from "../support/wait";

jest.setTimeout(180_000);

const nats = requireBinary("nats-server", "apt-get install nats-server");

const JWT_SECRET = "e2e-jwt-Hq7Lx2Vm9Pk4Rt8Wz3Nb6";
const WEBHOOK_SECRET = "whsec_e2e_0123456789abcdef";
/** Short enough for the timeout scenario, longer than the provider outage scenario lasts. */
const PAYMENT_TIMEOUT = "12s";
const SLOW_CARD_MS = 15_000;

interface ProductBody {
  sku: string;
  available: number;
  reserved?: number;
  sold?: number;
  received?: number;
  price: { minor: number; currency: string };
}

interface NotificationBody {
  eventId: string;
  orderId: string;
  type: string;
  channel: string;
  status: string;
}

const FINAL = ["PAID", "CANCELLED"];

describe.each([
  ["embedded", "start"],
  ["cluster", "cluster"],
] as const)("order flow, %s mode", (mode, command) => {
  const describeMode = mode === "cluster" ? nats.describe : describe;

  describeMode(`ordermesh ${command}`, () => {
    let dir: string;
    let port: number;
    let sim: PspSimulator;
    let proc: OrdermeshProcess;
    let api: Api;
    let admin: string;

    const env = (): Record<string, string> => ({
      PORT: String(port),
      DATA_DIR: dir,
      JWT_SECRET,
      PSP_URL: sim.url,
      PSP_WEBHOOK_SECRET: WEBHOOK_SECRET,
      ORDER_PAYMENT_TIMEOUT: PAYMENT_TIMEOUT,
      LOG_LEVEL: "warn",
    });

    async function launch(): Promise<void> {
      proc = runOrdermesh([command], env());
      const alive = (): boolean => proc.child.exitCode === null;
      await waitForHttp(`http://127.0.0.1:${port}/readyz`, (s) => s === 200, 90_000, alive);
    }

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), `ordermesh-flow-${mode}-`));
      port = await freePort();
      sim = await startPspSimulator({
        dataDir: join(dir, "provider"),
        port: 0,
        webhookUrl: `http://127.0.0.1:${port}/api/v1/payments/webhook`,
        webhookSecret: WEBHOOK_SECRET,
        slowMs: SLOW_CARD_MS,
      });
      api = new Api(`http://127.0.0.1:${port}`, JWT_SECRET);
      admin = api.token("ops", ["admin"]);
      await launch();
    });

    afterAll(async () => {
      await proc?.stop();
      await sim?.close();
      rmSync(dir, { recursive: true, force: true });
    });

    async function product(sku: string): Promise<ProductBody> {
      const res = await api.request<ProductBody>("GET", `/api/v1/products/${sku}`, { token: admin });
      expect(res.status).toBe(200);
      return res.body;
    }

    /** A fresh product with `quantity` in stock, so that scenarios never share stock. */
    async function aProduct(quantity: number, minor = 1250, currency = "USD"): Promise<string> {
      const sku = `E2E-${randomUUID().slice(0, 8).toUpperCase()}`;
      const put = await api.request("PUT", `/api/v1/products/${sku}`, {
        token: admin,
        body: { name: `Test ${sku}`, price: { minor, currency } },
      });
      expect(put.status).toBe(200);
      if (quantity > 0) {
        const restock = await api.request("POST", `/api/v1/products/${sku}/restock`, {
          token: admin,
          body: { quantity },
        });
        expect(restock.status).toBe(200);
      }
      return sku;
    }

    function expectInvariant(p: ProductBody): void {
      expect(p.available + (p.reserved ?? 0) + (p.sold ?? 0)).toBe(p.received);
    }

    async function notifications(token: string): Promise<NotificationBody[]> {
      const res = await api.request<{ items: NotificationBody[] }>("GET", "/api/v1/notifications?limit=100", {
        token,
      });
      expect(res.status).toBe(200);
      return res.body.items;
    }

    async function waitForNotifications(
      token: string,
      orderId: string,
      types: string[],
    ): Promise<NotificationBody[]> {
      let mine: NotificationBody[] = [];
      await waitFor(
        `notifications ${types.join(", ")} sent for ${orderId}`,
        async () => {
          mine = (await notifications(token)).filter((n) => n.orderId === orderId);
          return types.every((type) => mine.some((n) => n.type === type && n.status === "sent"));
        },
        30_000,
      );
      return mine;
    }

    async function payments(token: string, orderId: string): Promise<{ status: string }[]> {
      const res = await api.request<{ items: { status: string }[] }>(
        "GET",
        `/api/v1/payments?orderId=${orderId}`,
        { token },
      );
      expect(res.status).toBe(200);
      return res.body.items;
    }

    it("card succeeds → PAID, stock committed, customer notified", async () => {
      const sku = await aProduct(10);
      const alice = api.token(`alice-${mode}`);
      const placed = await api.placeOrder(alice, [{ sku, quantity: 3 }]);
      expect(placed.status).toBe(201);
      expect(placed.body).toMatchObject({
        status: "PENDING_PAYMENT",
        total: { minor: 3750, currency: "USD" },
      });

      const paid = await api.waitForOrder(alice, placed.body.id, FINAL);
      expect(paid.status).toBe("PAID");
      expect(paid.statusHistory.map((s) => s.status)).toEqual(["PENDING_PAYMENT", "PAID"]);
      await waitFor("stock committed", async () => (await product(sku)).sold === 3, 20_000);
      const stock = await product(sku);
      expect(stock).toMatchObject({ available: 7, reserved: 0, sold: 3, received: 10 });
      expectInvariant(stock);

      const sent = await waitForNotifications(alice, paid.id, ["order.created", "order.paid"]);
      expect(new Set(sent.map((n) => `${n.eventId}/${n.channel}`)).size).toBe(sent.length);
      expect(await payments(alice, paid.id)).toEqual([expect.objectContaining({ status: "captured" })]);

      // someone else's order is not found, not forbidden
      const bob = api.token(`bob-${mode}`);
      expect((await api.request("GET", `/api/v1/orders/${paid.id}`, { token: bob })).status).toBe(404);
      expect((await api.request("GET", `/api/v1/payments?orderId=${paid.id}`, { token: bob })).status).toBe(
        404,
      );
    });

    it("a retried request with the same Idempotency-Key gets the same order, never a second one", async () => {
      const sku = await aProduct(5);
      const carol = api.token(`carol-${mode}`);
      const key = randomUUID();
      const [a, b] = await Promise.all([
        api.placeOrder(carol, [{ sku, quantity: 1 }], "pm_card_visa", key),
        api.placeOrder(carol, [{ sku, quantity: 1 }], "pm_card_visa", key),
      ]);
      // concurrent duplicates: one runs, the other is told the first is still in flight (or, if it
      // came late enough, gets the replay)
      const first = [a, b].find((r) => r.status === 201);
      expect(first).toBeDefined();
      for (const r of [a, b]) {
        expect([201, 409]).toContain(r.status);
        if (r.status === 409) expect(r.body.error.code).toBe("IDEMPOTENCY_KEY_IN_FLIGHT");
        else expect(r.body.id).toBe(first?.body.id);
      }
      const c = await api.placeOrder(carol, [{ sku, quantity: 1 }], "pm_card_visa", key);
      expect(c.status).toBe(201);
      expect(c.headers.get("idempotent-replayed")).toBe("true");
      expect(c.body.id).toBe(first?.body.id);
      const other = await api.placeOrder(carol, [{ sku, quantity: 2 }], "pm_card_visa", key);
      expect([other.status, other.body.error.code]).toEqual([422, "IDEMPOTENCY_KEY_REUSED"]);
      await api.waitForOrder(carol, first?.body.id ?? "", FINAL);
      const list = await api.request<{ items: OrderBody[] }>("GET", "/api/v1/orders", { token: carol });
      expect(list.body.items).toHaveLength(1);
      await waitFor("stock committed once", async () => (await product(sku)).sold === 1, 20_000);
      expect(await product(sku)).toMatchObject({ available: 4, sold: 1 });
    });

    it("card declined → CANCELLED (payment_failed), stock back", async () => {
      const sku = await aProduct(4);
      const dave = api.token(`dave-${mode}`);
      const placed = await api.placeOrder(dave, [{ sku, quantity: 2 }], "pm_card_declined");
      expect(placed.status).toBe(201);
      const order = await api.waitForOrder(dave, placed.body.id, FINAL);
      expect(order).toMatchObject({ status: "CANCELLED", cancelReason: "payment_failed" });
      await waitFor("stock released", async () => (await product(sku)).available === 4, 20_000);
      expect(await product(sku)).toMatchObject({ available: 4, reserved: 0, sold: 0, received: 4 });
      expect(await payments(dave, order.id)).toEqual([expect.objectContaining({ status: "failed" })]);
      await waitForNotifications(dave, order.id, ["order.created", "order.cancelled"]);
    });

    it("payment timeout → CANCELLED (payment_timeout), stock back, the late capture refunded", async () => {
      const sku = await aProduct(3);
      const erin = api.token(`erin-${mode}`);
      const placed = await api.placeOrder(erin, [{ sku, quantity: 1 }], "pm_card_slow");
      const order = await api.waitForOrder(erin, placed.body.id, FINAL, 30_000);
      expect(order).toMatchObject({ status: "CANCELLED", cancelReason: "payment_timeout" });
      await waitFor("stock released", async () => (await product(sku)).available === 3, 20_000);
      // the provider captures after the order was cancelled: money for a cancelled order never stays
      await waitFor(
        "late capture refunded",
        async () => (await payments(erin, order.id))[0]?.status === "refunded",
        30_000,
      );
      await waitForNotifications(erin, order.id, ["order.cancelled", "payment.refunded"]);
      expect((await api.order(erin, order.id)).status).toBe("CANCELLED");
    });

    it("cancelling a paid order refunds it and tells the customer", async () => {
      const sku = await aProduct(2);
      const frank = api.token(`frank-${mode}`);
      const placed = await api.placeOrder(frank, [{ sku, quantity: 1 }]);
      await api.waitForOrder(frank, placed.body.id, ["PAID"]);
      const cancelled = await api.request<OrderBody>("POST", `/api/v1/orders/${placed.body.id}/cancel`, {
        token: frank,
      });
      expect(cancelled.status).toBe(200);
      expect(cancelled.body).toMatchObject({ status: "CANCELLED", cancelReason: "customer_request" });
      await waitFor(
        "refunded",
        async () => (await payments(frank, placed.body.id))[0]?.status === "refunded",
        30_000,
      );
      await waitForNotifications(frank, placed.body.id, ["payment.refunded"]);
      await waitFor("stock back", async () => (await product(sku)).available === 2, 20_000);
      expectInvariant(await product(sku));
    });

    it("out of stock → 409 OUT_OF_STOCK with details, nothing reserved", async () => {
      const plenty = await aProduct(50);
      const scarce = await aProduct(1);
      const gina = api.token(`gina-${mode}`);
      const res = await api.placeOrder(gina, [
        { sku: plenty, quantity: 5 },
        { sku: scarce, quantity: 2 },
      ]);
      expect(res.status).toBe(409);
      expect(res.body.error).toMatchObject({
        code: "OUT_OF_STOCK",
        details: { items: [{ sku: scarce, requested: 2, available: 1 }] },
      });
      expect(await product(plenty)).toMatchObject({ available: 50, reserved: 0 });
      expect(await product(scarce)).toMatchObject({ available: 1, reserved: 0 });
    });

    it("many concurrent buyers of a scarce SKU: exactly the stock is sold, the rest get 409", async () => {
      const stock = 7;
      const sku = await aProduct(stock);
      const buyers = Array.from({ length: 40 }, (_, i) => api.token(`buyer-${mode}-${i}`));
      const results = await Promise.all(buyers.map((token) => api.placeOrder(token, [{ sku, quantity: 1 }])));
      const placed = results.filter((r) => r.status === 201);
      const refused = results.filter((r) => r.status === 409);
      expect(placed).toHaveLength(stock);
      expect(refused).toHaveLength(buyers.length - stock);
      expect(refused.every((r) => r.body.error.code === "OUT_OF_STOCK")).toBe(true);
      await waitFor("all sold", async () => (await product(sku)).sold === stock, 30_000);
      const after = await product(sku);
      expect(after).toMatchObject({ available: 0, reserved: 0, sold: stock, received: stock });
      expectInvariant(after);
    });

    it("provider outage: the breaker opens, orders wait, nothing is lost, all complete after it returns", async () => {
      const sku = await aProduct(20);
      const hank = api.token(`hank-${mode}`);
      sim.setFaults({ outage: true });
      const ids: string[] = [];
      for (let i = 0; i < 8; i++) {
        const res = await api.placeOrder(hank, [{ sku, quantity: 1 }]);
        expect(res.status).toBe(201);
        ids.push(res.body.id);
      }
      await waitFor("breaker open", async () => proc.output().includes("breaker psp: closed → open"), 30_000);
      // while the provider is down, orders wait in PENDING_PAYMENT
      for (const id of ids) expect((await api.order(hank, id)).status).toBe("PENDING_PAYMENT");
      sim.setFaults({ outage: false });
      for (const id of ids) expect((await api.waitForOrder(hank, id, FINAL, 60_000)).status).toBe("PAID");
      expect(proc.output()).toMatch(/breaker psp: halfOpen → closed/);
      await waitFor("stock committed", async () => (await product(sku)).sold === ids.length, 20_000);
    });

    it("kill -9 mid-flow: after restart every order is final, one payment each, money kept only for paid orders, no duplicate notification", async () => {
      const sku = await aProduct(100);
      const ivan = api.token(`ivan-${mode}`);
      const ids: string[] = [];
      for (let i = 0; i < 12; i++) {
        const res = await api.placeOrder(
          ivan,
          [{ sku, quantity: 1 }],
          i % 4 === 3 ? "pm_card_declined" : "pm_card_visa",
        );
        expect(res.status).toBe(201);
        ids.push(res.body.id);
      }
      // no waiting: the flow is in the middle of reserving, charging, confirming and notifying
      if (proc.child.pid !== undefined) process.kill(-proc.child.pid, "SIGKILL");
      await proc.exited;
      await launch();

      const finals = await Promise.all(ids.map((id) => api.waitForOrder(ivan, id, FINAL, 60_000)));
      const paid = finals.filter((o) => o.status === "PAID");
      // the declined cards end cancelled; a visa order ends PAID, or — when the restart outlasted
      // its payment deadline — cancelled for payment_timeout with the late capture refunded
      finals.forEach((order, i) => {
        if (i % 4 === 3) expect(order.status).toBe("CANCELLED");
        else if (order.status === "CANCELLED") expect(order.cancelReason).toBe("payment_timeout");
      });
      for (const order of finals) {
        await waitFor(
          `payment of ${order.id} settled`,
          async () => {
            const mine = await payments(ivan, order.id);
            expect(mine).toHaveLength(1);
            const status = mine[0]?.status;
            return order.status === "PAID"
              ? status === "captured"
              : status === "failed" || status === "cancelled" || status === "refunded";
          },
          60_000,
        );
      }
      // the provider: at most one intent per order; money stays only for paid orders
      const intents = sim.intents().filter((intent) => ids.includes(intent.metadata?.orderId ?? ""));
      expect(new Set(intents.map((intent) => intent.metadata?.orderId)).size).toBe(intents.length);
      const refunded = new Set(sim.refunds().map((refund) => refund.payment_intent));
      const kept = intents.filter((intent) => intent.status === "succeeded" && !refunded.has(intent.id));
      expect(kept.map((intent) => intent.metadata?.orderId).sort()).toEqual(paid.map((o) => o.id).sort());

      await waitFor(
        "notifications sent",
        async () => {
          const mine = (await notifications(ivan)).filter((n) => ids.includes(n.orderId));
          return (
            mine.filter((n) => n.type === "order.created" && n.status === "sent").length >= 2 * ids.length
          );
        },
        60_000,
      );
      const mine = (await notifications(ivan)).filter((n) => ids.includes(n.orderId));
      expect(new Set(mine.map((n) => `${n.eventId}/${n.channel}`)).size).toBe(mine.length);
      // the provider of messages got each notification once (the file provider keeps one line per id)
      const lines = readFileSync(join(dir, "messages.jsonl"), "utf8").trim().split("\n");
      const delivered = lines.map((line) => (JSON.parse(line) as { id: string }).id);
      expect(new Set(delivered).size).toBe(delivered.length);
      await waitFor("stock settled", async () => (await product(sku)).reserved === 0, 20_000);
      const stock = await product(sku);
      expect(stock.sold).toBe(paid.length);
      expectInvariant(stock);
    });
  });
});
