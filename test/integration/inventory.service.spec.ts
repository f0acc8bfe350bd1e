/**
 * The inventory service on a real broker built from moleculer.config (embedded store in a temp
 * DATA_DIR, in-process bus): the demo seed, reservations all-or-nothing and idempotent, no oversell
 * under concurrency, the order events through the inbox, the hold sweeper (time moved by a manual
 * clock), admin writes and reads.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ServiceBroker, type Service } from "moleculer";
import { createBrokerOptions } from "../../moleculer.config";
import type { EventBus } from "../../lib/bus/bus.port";
import { ManualClock, type Clock } from "../../lib/clock";
import { loadConfig } from "../../lib/config";
import type { InboxStats } from "../../lib/inbox/inbox.consumer";
import { infrastructureOf } from "../../lib/infrastructure";
import { buildEnvelope, encodeEnvelope } from "../../lib/outbox/outbox";
import type { Doc, DocumentStore } from "../../lib/store/store.port";
import { subjectOf, type EventEnvelope, type EventType, type PayloadOf } from "../../models/events";
import { DEMO_CATALOG } from "../../lib/catalog/demo-catalog";
import type { ReservationLine, ReservationStatus } from "../../models/inventory";
import InventoryService, {
  type ProductAdminView,
  type ProductView,
  type ReservationStatusView,
  type ReservationView,
  type StockReport,
} from "../../services/inventory.service";
import { waitFor } from "../support/wait";

const ADMIN = { meta: { user: { id: "admin-1", roles: ["admin"] } } };
const CUSTOMER = { meta: { user: { id: "cus-1", roles: ["customer"] } } };

interface ReservationDoc extends Doc {
  status: ReservationStatus;
  lines: ReservationLine[];
  releaseReason?: string;
  unfulfilled?: unknown;
}

type Line = { sku: string; quantity: number };

describe("inventory service", () => {
  let dir: string;
  let broker: ServiceBroker;
  let store: DocumentStore;
  let bus: EventBus;
  let orderCounter = 0;

  /**
   * A broker running the inventory service with these settings (seeded unless SEED_DEMO says
   * otherwise), reading the time from `clock`.
   */
  async function start(
    settings: Record<string, unknown> = {},
    env: Record<string, string> = {},
    clock?: Clock,
  ): Promise<void> {
    const config = loadConfig({ DATA_DIR: dir, LOG_LEVEL: "fatal", SERVICES: "inventory", ...env });
    const runtime = clock === undefined ? {} : { clock };
    broker = new ServiceBroker({ ...createBrokerOptions(config, {}, runtime), logger: false });
    broker.createService({
      ...InventoryService,
      settings: { ...InventoryService.settings, sweepIntervalMs: 50, ...settings },
    });
    await broker.start();
    store = await infrastructureOf(broker).store("inventory");
    bus = await infrastructureOf(broker).bus();
  }

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "ordermesh-inventory-"));
  });

  afterEach(async () => {
    await broker.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const nextOrderId = (): string => `ord-${++orderCounter}`;
  const reserve = (orderId: string, items: Line[], opts = {}): Promise<ReservationView> =>
    broker.call("inventory.reserve", { orderId, items }, opts);
  const release = (orderId: string): Promise<ReservationStatusView> =>
    broker.call("inventory.release", { orderId });
  const commit = (orderId: string): Promise<ReservationStatusView> =>
    broker.call("inventory.commit", { orderId });
  const report = (): Promise<StockReport> => broker.call("inventory.stockReport");
  const reservation = (orderId: string): Promise<ReservationDoc | null> =>
    store.collection<ReservationDoc>("reservations").findOne({ _id: orderId });
  const product = (sku: string): Promise<ProductAdminView> =>
    broker.call("inventory.getProduct", { sku }, ADMIN);
  const counters = async (sku: string) => {
    const { available, reserved, sold, received } = await product(sku);
    return { available, reserved, sold, received };
  };

  /** A product with exactly `quantity` units, through the admin actions. */
  async function aProduct(sku: string, quantity: number, minor = 1000): Promise<void> {
    await broker.call("inventory.upsert", { sku, name: `Product ${sku}`, price: { minor, currency: "USD" } });
    if (quantity > 0) await broker.call("inventory.restock", { sku, quantity });
  }

  /** Publish an event on the bus without waiting (the in-process bus resolves once it is handled). */
  function send(envelope: EventEnvelope): void {
    bus
      .publish({ id: envelope.id, subject: subjectOf(envelope.type), data: encodeEnvelope(envelope) })
      .catch(() => undefined);
  }

  /**
   * Publish a copy of an event under another bus message id: the bus's duplicate window lets it
   * through, as it would a relay re-publish after the window, so only the inbox can recognise it.
   */
  function sendCopy(envelope: EventEnvelope): void {
    bus
      .publish({
        id: `${envelope.id}-copy`,
        subject: subjectOf(envelope.type),
        data: encodeEnvelope(envelope),
      })
      .catch(() => undefined);
  }

  function event<T extends EventType>(type: T, orderId: string, payload: PayloadOf<T>): EventEnvelope<T> {
    return buildEnvelope({ type, aggregateType: "order", aggregateId: orderId, payload });
  }

  const total = { minor: 1000, currency: "USD" };
  const orderCreated = (orderId: string, items: ReservationLine[]) =>
    event("order.created", orderId, {
      orderId,
      customerId: "cus-1",
      items,
      total,
      paymentMethod: "pm_card_visa",
      paymentDueAt: "2030-01-01T00:15:00.000Z",
    });
  const orderPaid = (orderId: string) =>
    event("order.paid", orderId, { orderId, customerId: "cus-1", paymentId: `pay-${orderId}`, total });
  const orderCancelled = (orderId: string, previousStatus: "PENDING_PAYMENT" | "PAID" = "PENDING_PAYMENT") =>
    event("order.cancelled", orderId, {
      orderId,
      customerId: "cus-1",
      reason: "payment_failed",
      previousStatus,
      total,
    });

  async function statusBecomes(orderId: string, status: ReservationStatus): Promise<void> {
    await waitFor(
      `reservation ${orderId} ${status}`,
      async () => (await reservation(orderId))?.status === status,
    );
  }

  async function processed(
    type: EventType,
    count: { processed?: number; duplicates?: number },
  ): Promise<void> {
    await waitFor(`${type} handled ${JSON.stringify(count)}`, async () => {
      const stats = await broker.call<InboxStats>("inventory.inboxStats");
      const sub = stats.subscriptions[type];
      return (
        (count.processed === undefined || sub?.processed === count.processed) &&
        (count.duplicates === undefined || sub?.duplicates === count.duplicates)
      );
    });
  }

  describe("seed", () => {
    it("seeds the demo catalog into an empty store once, with received = available", async () => {
      await start();
      const first = await report();
      expect(first.products).toHaveLength(DEMO_CATALOG.length);
      expect(first.invariantHolds).toBe(true);
      for (const entry of DEMO_CATALOG) {
        expect(first.products.find((p) => p.sku === entry.sku)).toEqual({
          sku: entry.sku,
          available: entry.quantity,
          reserved: 0,
          sold: 0,
          received: entry.quantity,
          invariantHolds: true,
        });
      }
      await reserve(nextOrderId(), [{ sku: "MUG-BLUE", quantity: 3 }]);
      await broker.stop();

      await start();

      const second = await report();
      expect(second.products).toHaveLength(DEMO_CATALOG.length);
      expect(second.products.find((p) => p.sku === "MUG-BLUE")).toMatchObject({
        available: 117,
        reserved: 3,
      });
    });

    it("seeds nothing when SEED_DEMO is off", async () => {
      await start({}, { SEED_DEMO: "false" });
      expect((await report()).products).toEqual([]);
    });
  });

  describe("reserve", () => {
    beforeEach(() => start());

    it("holds every line at the current price and answers the same for a repeated call", async () => {
      const orderId = nextOrderId();
      const items = [
        { sku: "MUG-BLUE", quantity: 2 },
        { sku: "DRIPPER-LIMITED", quantity: 5 },
      ];

      const first = await reserve(orderId, items);
      const again = await reserve(orderId, [...items].reverse());

      expect(first).toEqual({
        orderId,
        status: "held",
        items: [
          { sku: "MUG-BLUE", quantity: 2, unitPrice: { minor: 1299, currency: "USD" } },
          { sku: "DRIPPER-LIMITED", quantity: 5, unitPrice: { minor: 8900, currency: "USD" } },
        ],
      });
      expect(again).toEqual(first);
      expect(await counters("MUG-BLUE")).toEqual({ available: 118, reserved: 2, sold: 0, received: 120 });
      expect(await counters("DRIPPER-LIMITED")).toEqual({ available: 0, reserved: 5, sold: 0, received: 5 });
    });

    it("reserves nothing when one line is short, and lists every short line", async () => {
      const before = await report();

      const attempt = reserve(nextOrderId(), [
        { sku: "MUG-BLUE", quantity: 2 },
        { sku: "DRIPPER-LIMITED", quantity: 6 },
        { sku: "KETTLE-GOOSENECK", quantity: 26 },
      ]);

      await expect(attempt).rejects.toMatchObject({
        code: 409,
        type: "OUT_OF_STOCK",
        data: {
          items: [
            { sku: "DRIPPER-LIMITED", requested: 6, available: 5 },
            { sku: "KETTLE-GOOSENECK", requested: 26, available: 25 },
          ],
        },
      });
      expect(await report()).toEqual(before);
      expect(await store.collection("reservations").countDocuments({})).toBe(0);
    });

    it("answers a different request for the same order with RESERVATION_MISMATCH", async () => {
      const orderId = nextOrderId();
      await reserve(orderId, [{ sku: "MUG-BLUE", quantity: 2 }]);

      await expect(reserve(orderId, [{ sku: "MUG-BLUE", quantity: 3 }])).rejects.toMatchObject({
        code: 409,
        type: "RESERVATION_MISMATCH",
        data: { orderId, reserved: [{ sku: "MUG-BLUE", quantity: 2 }] },
      });
      expect(await counters("MUG-BLUE")).toMatchObject({ available: 118, reserved: 2 });
    });

    it("refuses unknown SKUs with 422 UNKNOWN_SKU and malformed requests before touching stock", async () => {
      await expect(
        reserve(nextOrderId(), [
          { sku: "MUG-BLUE", quantity: 1 },
          { sku: "NOPE-1", quantity: 1 },
          { sku: "NOPE-2", quantity: 1 },
        ]),
      ).rejects.toMatchObject({ code: 422, type: "UNKNOWN_SKU", data: { skus: ["NOPE-1", "NOPE-2"] } });
      await expect(
        reserve(nextOrderId(), [
          { sku: "MUG-BLUE", quantity: 1 },
          { sku: "MUG-BLUE", quantity: 2 },
        ]),
      ).rejects.toMatchObject({ code: 422, type: "INVALID_RESERVATION" });
      await expect(reserve(nextOrderId(), [{ sku: "MUG-BLUE", quantity: 1001 }])).rejects.toMatchObject({
        type: "VALIDATION_ERROR",
      });
      await expect(reserve(nextOrderId(), [])).rejects.toMatchObject({ type: "VALIDATION_ERROR" });
      expect(await counters("MUG-BLUE")).toMatchObject({ available: 120, reserved: 0 });
    });

    it("never oversells a scarce SKU: 60 concurrent orders for 7 units, exactly 7 succeed", async () => {
      await aProduct("SCARCE-7", 7);

      const outcomes = await Promise.allSettled(
        Array.from({ length: 60 }, () => reserve(nextOrderId(), [{ sku: "SCARCE-7", quantity: 1 }])),
      );

      const won = outcomes.filter((o) => o.status === "fulfilled");
      const lost = outcomes.flatMap((o) => (o.status === "rejected" ? [o.reason as { type?: string }] : []));
      expect(won).toHaveLength(7);
      expect(lost).toHaveLength(53);
      expect(lost.every((err) => err.type === "OUT_OF_STOCK")).toBe(true);
      expect(await counters("SCARCE-7")).toEqual({ available: 0, reserved: 7, sold: 0, received: 7 });
      expect((await report()).invariantHolds).toBe(true);
    });

    it("keeps every SKU's invariant and counters in step with the reservations under mixed concurrent orders", async () => {
      const skus = ["MIX-A", "MIX-B", "MIX-C", "MIX-D"];
      for (const [i, sku] of skus.entries()) await aProduct(sku, 6 + 3 * i);
      const orders = Array.from({ length: 40 }, (_, i) => ({
        orderId: nextOrderId(),
        items: skus
          .filter((_, j) => (i + j) % 3 !== 0)
          .map((sku, j) => ({ sku, quantity: 1 + ((i + j) % 3) })),
      }));

      await Promise.allSettled(
        orders.map(async ({ orderId, items }, i) => {
          await reserve(orderId, items);
          if (i % 3 === 0) await release(orderId);
          else if (i % 3 === 1) await commit(orderId);
        }),
      );

      const stock = await report();
      expect(stock.invariantHolds).toBe(true);
      const held = await store.collection<ReservationDoc>("reservations").find({});
      expect(held.length).toBeGreaterThan(0);
      for (const sku of skus) {
        const line = stock.products.find((p) => p.sku === sku);
        const sum = (statuses: ReservationStatus[]) =>
          held
            .filter((r) => statuses.includes(r.status))
            .flatMap((r) => r.lines)
            .filter((l) => l.sku === sku)
            .reduce((n, l) => n + l.quantity, 0);
        expect(line).toMatchObject({
          invariantHolds: true,
          reserved: sum(["held", "bound"]),
          sold: sum(["committed"]),
        });
      }
    });
  });

  describe("release and commit", () => {
    beforeEach(() => start());

    it("releases once however often it is asked, then refuses to reserve or commit the order again", async () => {
      const orderId = nextOrderId();
      await reserve(orderId, [{ sku: "MUG-RED", quantity: 4 }]);

      expect(await release(orderId)).toEqual({ orderId, status: "released" });
      expect(await release(orderId)).toEqual({ orderId, status: "released" });

      expect(await counters("MUG-RED")).toEqual({ available: 80, reserved: 0, sold: 0, received: 80 });
      await expect(reserve(orderId, [{ sku: "MUG-RED", quantity: 4 }])).rejects.toMatchObject({
        code: 409,
        type: "RESERVATION_RELEASED",
      });
      await expect(commit(orderId)).rejects.toMatchObject({ code: 409, type: "RESERVATION_RELEASED" });
    });

    it("commits once however often it is asked, then refuses to release", async () => {
      const orderId = nextOrderId();
      await reserve(orderId, [{ sku: "MUG-RED", quantity: 4 }]);

      expect(await commit(orderId)).toEqual({ orderId, status: "committed" });
      expect(await commit(orderId)).toEqual({ orderId, status: "committed" });

      expect(await counters("MUG-RED")).toEqual({ available: 76, reserved: 0, sold: 4, received: 80 });
      await expect(release(orderId)).rejects.toMatchObject({ code: 409, type: "RESERVATION_COMMITTED" });
      expect((await reserve(orderId, [{ sku: "MUG-RED", quantity: 4 }])).status).toBe("committed");
    });

    it("answers an unknown order: release → none, commit → 404", async () => {
      expect(await release("ord-unknown")).toEqual({ orderId: "ord-unknown", status: "none" });
      await expect(commit("ord-unknown")).rejects.toMatchObject({ code: 404, type: "RESERVATION_NOT_FOUND" });
    });
  });

  describe("order events", () => {
    beforeEach(() => start());

    it("binds on order.created, commits on order.paid, and ignores duplicates", async () => {
      const orderId = nextOrderId();
      const { items } = await reserve(orderId, [{ sku: "TEA-EARL-GREY", quantity: 3 }]);
      const created = orderCreated(orderId, items);
      const paid = orderPaid(orderId);

      send(created);
      await statusBecomes(orderId, "bound");
      sendCopy(created);
      await processed("order.created", { processed: 1, duplicates: 1 });
      send(paid);
      await statusBecomes(orderId, "committed");
      sendCopy(paid);
      send(orderPaid(orderId)); // another event for the same fact: a no-op, not an error
      await processed("order.paid", { processed: 2, duplicates: 1 });

      expect(await counters("TEA-EARL-GREY")).toEqual({
        available: 147,
        reserved: 0,
        sold: 3,
        received: 150,
      });
      expect(await broker.call("inventory.deadLetters")).toEqual([]);
    });

    it("releases on order.cancelled, once", async () => {
      const orderId = nextOrderId();
      const { items } = await reserve(orderId, [{ sku: "GRINDER-HAND", quantity: 2 }]);
      send(orderCreated(orderId, items));
      await statusBecomes(orderId, "bound");
      const cancelled = orderCancelled(orderId);

      send(cancelled);
      await statusBecomes(orderId, "released");
      sendCopy(cancelled);
      send(orderCancelled(orderId));
      await processed("order.cancelled", { processed: 2, duplicates: 1 });

      expect(await counters("GRINDER-HAND")).toEqual({ available: 40, reserved: 0, sold: 0, received: 40 });
      expect((await reservation(orderId))?.releaseReason).toBe("order_cancelled");
    });

    it("puts the units of a paid order cancelled before shipping back on sale", async () => {
      const orderId = nextOrderId();
      const { items } = await reserve(orderId, [{ sku: "MATCHA-WHISK", quantity: 5 }]);
      send(orderCreated(orderId, items));
      send(orderPaid(orderId));
      await statusBecomes(orderId, "committed");

      send(orderCancelled(orderId, "PAID"));
      await statusBecomes(orderId, "released");

      expect(await counters("MATCHA-WHISK")).toEqual({ available: 35, reserved: 0, sold: 0, received: 35 });
    });

    it("does not reserve again for an order.created arriving after its order.cancelled", async () => {
      const orderId = nextOrderId();
      const { items } = await reserve(orderId, [{ sku: "MUG-BLUE", quantity: 1 }]);

      send(orderCancelled(orderId));
      await statusBecomes(orderId, "released");
      send(orderCreated(orderId, items));
      await processed("order.created", { processed: 1 });

      expect((await reservation(orderId))?.status).toBe("released");
      expect(await counters("MUG-BLUE")).toMatchObject({ available: 120, reserved: 0 });
    });
  });

  describe("holds", () => {
    const HOLD_MS = 60_000;
    let clock: ManualClock;

    beforeEach(() => {
      clock = new ManualClock(new Date("2030-01-01T00:00:00.000Z"));
    });

    /** Runs one sweep of expired holds to its end; resolves to how many it released. */
    const sweep = (): Promise<number> =>
      (
        broker.getLocalService("inventory") as Service & { sweepExpiredHolds(): Promise<number> }
      ).sweepExpiredHolds();

    it("releases a held reservation when its hold expires, but never a bound one", async () => {
      await start({ holdTtlMs: HOLD_MS }, {}, clock);
      const heldId = nextOrderId();
      const boundId = nextOrderId();
      await reserve(heldId, [{ sku: "MUG-BLUE", quantity: 2 }]);
      const { items } = await reserve(boundId, [{ sku: "MUG-BLUE", quantity: 3 }]);
      send(orderCreated(boundId, items));
      await statusBecomes(boundId, "bound");
      clock.advance(HOLD_MS - 1);
      expect(await sweep()).toBe(0);
      expect((await reservation(heldId))?.status).toBe("held");

      clock.advance(2);
      await statusBecomes(heldId, "released");
      // settled: a whole sweep that saw the clock past both holds finds nothing more to release
      expect(await sweep()).toBe(0);

      expect((await reservation(heldId))?.releaseReason).toBe("expired");
      expect((await reservation(boundId))?.status).toBe("bound");
      expect(await counters("MUG-BLUE")).toEqual({ available: 117, reserved: 3, sold: 0, received: 120 });
    });

    it("reserves again for an order created after its hold expired, when stock allows", async () => {
      await start({ holdTtlMs: HOLD_MS }, {}, clock);
      const orderId = nextOrderId();
      const { items } = await reserve(orderId, [{ sku: "DRIPPER-LIMITED", quantity: 2 }]);
      clock.advance(HOLD_MS + 1);
      await statusBecomes(orderId, "released");
      expect(await counters("DRIPPER-LIMITED")).toMatchObject({ available: 5, reserved: 0 });

      send(orderCreated(orderId, items));
      await statusBecomes(orderId, "bound");

      expect(await counters("DRIPPER-LIMITED")).toEqual({ available: 3, reserved: 2, sold: 0, received: 5 });
      send(orderPaid(orderId));
      await statusBecomes(orderId, "committed");
      expect(await counters("DRIPPER-LIMITED")).toMatchObject({ reserved: 0, sold: 2 });
    });

    it("records an order created after its hold expired whose stock is gone, without failing the event", async () => {
      await start({ holdTtlMs: HOLD_MS }, {}, clock);
      const late = nextOrderId();
      const { items } = await reserve(late, [{ sku: "DRIPPER-LIMITED", quantity: 3 }]);
      clock.advance(HOLD_MS + 1);
      await statusBecomes(late, "released");
      const rival = nextOrderId();
      await reserve(rival, [{ sku: "DRIPPER-LIMITED", quantity: 4 }]);
      await commit(rival);

      send(orderCreated(late, items));
      await processed("order.created", { processed: 1 });

      const doc = await reservation(late);
      expect(doc?.status).toBe("released");
      expect(doc?.unfulfilled).toMatchObject({
        shortfalls: [{ sku: "DRIPPER-LIMITED", requested: 3, available: 1 }],
      });
      const stock = await report();
      expect(stock.unfulfilled).toBe(1);
      expect(stock.invariantHolds).toBe(true);
      expect(await counters("DRIPPER-LIMITED")).toEqual({ available: 1, reserved: 0, sold: 4, received: 5 });
      expect(await broker.call("inventory.deadLetters")).toEqual([]);
    });
  });

  describe("admin writes", () => {
    beforeEach(() => start());

    it("creates a product with no stock, updates its name and price, and restocks it", async () => {
      const created = await broker.call<ProductAdminView, Record<string, unknown>>(
        "inventory.upsert",
        { sku: "NEW-1", name: "New thing", price: { minor: 500, currency: "EUR" } },
        ADMIN,
      );
      expect(created).toMatchObject({
        sku: "NEW-1",
        name: "New thing",
        price: { minor: 500, currency: "EUR" },
        available: 0,
        reserved: 0,
        sold: 0,
        received: 0,
      });

      await broker.call("inventory.restock", { sku: "NEW-1", quantity: 10 }, ADMIN);
      await reserve(nextOrderId(), [{ sku: "NEW-1", quantity: 4 }]);
      const updated = await broker.call<ProductAdminView, Record<string, unknown>>(
        "inventory.upsert",
        { sku: "NEW-1", name: "Renamed thing", price: { minor: 650, currency: "EUR" } },
        ADMIN,
      );
      const restocked = await broker.call<ProductAdminView, Record<string, unknown>>(
        "inventory.restock",
        { sku: "NEW-1", quantity: 5 },
        ADMIN,
      );

      expect(updated).toMatchObject({
        name: "Renamed thing",
        price: { minor: 650 },
        available: 6,
        reserved: 4,
      });
      expect(restocked).toMatchObject({ available: 11, reserved: 4, sold: 0, received: 15 });
      expect(restocked.createdAt).toBe(created.createdAt);
      const { items } = await reserve(nextOrderId(), [{ sku: "NEW-1", quantity: 1 }]);
      expect(items[0]?.unitPrice).toEqual({ minor: 650, currency: "EUR" });
    });

    it("answers a restock of an unknown SKU with 404 and an unknown currency with 422", async () => {
      await expect(
        broker.call("inventory.restock", { sku: "NOPE", quantity: 1 }, ADMIN),
      ).rejects.toMatchObject({
        code: 404,
        type: "PRODUCT_NOT_FOUND",
      });
      await expect(
        broker.call(
          "inventory.upsert",
          { sku: "X-1", name: "x", price: { minor: 1, currency: "XYZ" } },
          ADMIN,
        ),
      ).rejects.toMatchObject({ code: 422, type: "INVALID_PRICE" });
    });

    it("refuses a customer caller on the admin actions", async () => {
      await expect(
        broker.call(
          "inventory.upsert",
          { sku: "MUG-BLUE", name: "mine", price: { minor: 1, currency: "USD" } },
          CUSTOMER,
        ),
      ).rejects.toMatchObject({ code: 403, type: "FORBIDDEN" });
      await expect(
        broker.call("inventory.restock", { sku: "MUG-BLUE", quantity: 1000 }, CUSTOMER),
      ).rejects.toMatchObject({ code: 403, type: "FORBIDDEN" });
      await expect(
        broker.call("inventory.restock", { sku: "MUG-BLUE", quantity: 1 }, { meta: { user: { id: "x" } } }),
      ).rejects.toMatchObject({ code: 403, type: "FORBIDDEN" });
      expect(await counters("MUG-BLUE")).toEqual({ available: 120, reserved: 0, sold: 0, received: 120 });
      expect((await product("MUG-BLUE")).name).toBe("Blue enamel mug");
    });
  });

  describe("reads", () => {
    beforeEach(() => start());

    it("lists the catalog by page, sorted, with the public fields only", async () => {
      const first = await broker.call<{ rows: ProductView[]; total: number; totalPages: number }, object>(
        "inventory.list",
        { pageSize: 5, sort: "sku" },
      );
      const last = await broker.call<{ rows: ProductView[] }, object>("inventory.list", {
        pageSize: 5,
        page: 3,
        sort: "sku",
      });

      const skus = DEMO_CATALOG.map((p) => p.sku).sort();
      expect(first).toMatchObject({ total: 12, totalPages: 3 });
      expect(first.rows.map((p) => p.sku)).toEqual(skus.slice(0, 5));
      expect(last.rows.map((p) => p.sku)).toEqual(skus.slice(10));
      expect(Object.keys(first.rows[0] ?? {}).sort()).toEqual(["available", "name", "price", "sku"]);
      const cheapest = await broker.call<{ rows: ProductView[] }, object>("inventory.list", {
        pageSize: 1,
        sort: "price.minor",
        query: { "price.currency": "USD" },
      });
      expect(cheapest.rows[0]?.sku).toBe("FILTER-PAPER-100");
    });

    it("shows availability as it changes (no stale cache)", async () => {
      const before = await broker.call<ProductView, object>("inventory.get", { id: "MUG-BLUE" });
      await reserve(nextOrderId(), [{ sku: "MUG-BLUE", quantity: 7 }]);
      const after = await broker.call<ProductView, object>("inventory.get", { id: "MUG-BLUE" });
      const listed = await broker.call<{ rows: ProductView[] }, object>("inventory.listProducts", {
        pageSize: 100,
      });

      expect(before).toEqual({
        sku: "MUG-BLUE",
        name: "Blue enamel mug",
        price: { minor: 1299, currency: "USD" },
        available: 120,
      });
      expect(after.available).toBe(113);
      expect(listed.rows.find((p) => p.sku === "MUG-BLUE")?.available).toBe(113);
    });

    it("gets products by SKU: the public view for anyone, every counter for an admin", async () => {
      const anyone = await broker.call("inventory.getProduct", { sku: "TEA-SENCHA-JP" }, CUSTOMER);
      const admin = await product("TEA-SENCHA-JP");
      const several = await broker.call<ProductView[], object>("inventory.get", {
        id: ["MUG-RED", "MUG-BLUE"],
      });

      expect(anyone).toEqual({
        sku: "TEA-SENCHA-JP",
        name: "Sencha green tea, 100 g",
        price: { minor: 1800, currency: "JPY" },
        available: 60,
      });
      expect(admin).toMatchObject({
        sku: "TEA-SENCHA-JP",
        available: 60,
        reserved: 0,
        sold: 0,
        received: 60,
      });
      expect(several.map((p) => p.sku)).toEqual(["MUG-RED", "MUG-BLUE"]);
      await expect(broker.call("inventory.getProduct", { sku: "NOPE" })).rejects.toMatchObject({
        code: 404,
        type: "PRODUCT_NOT_FOUND",
      });
      await expect(broker.call("inventory.get", { id: "NOPE" })).rejects.toMatchObject({ code: 404 });
    });

    it("lists every counter to an admin, and only the public view to anyone else", async () => {
      await reserve(nextOrderId(), [{ sku: "MUG-BLUE", quantity: 2 }]);
      type Page = { rows: Record<string, unknown>[]; total: number };
      const list = (opts: object): Promise<Page> =>
        broker.call<Page, object>("inventory.listProducts", { pageSize: 100, sort: "sku" }, opts);

      const asAdmin = await list(ADMIN);
      const asCustomer = await list(CUSTOMER);
      const internal = await list({});

      const mug = asAdmin.rows.find((p) => p.sku === "MUG-BLUE");
      expect(mug).toEqual(await product("MUG-BLUE"));
      expect(mug).toMatchObject({ available: 118, reserved: 2, sold: 0, received: 120 });
      expect(asAdmin.total).toBe(12);
      for (const row of asAdmin.rows)
        expect(Object.keys(row).sort()).toEqual(
          [
            "available",
            "createdAt",
            "name",
            "price",
            "received",
            "reserved",
            "sku",
            "sold",
            "updatedAt",
          ].sort(),
        );
      for (const page of [asCustomer, internal]) {
        expect(page.total).toBe(12);
        for (const row of page.rows)
          expect(Object.keys(row).sort()).toEqual(["available", "name", "price", "sku"]);
      }
      // asking `list` for the counters does not show them to a customer
      const asked = await broker.call<{ rows: Record<string, unknown>[] }, object>(
        "inventory.list",
        { fields: ["sku", "reserved", "sold"], pageSize: 1 },
        CUSTOMER,
      );
      expect(Object.keys(asked.rows[0] ?? {})).toEqual(["sku"]);
    });

    it("offers no generic write actions", async () => {
      for (const action of ["create", "insert", "update", "remove"]) {
        await expect(broker.call(`inventory.${action}`, { id: "MUG-BLUE" })).rejects.toMatchObject({
          type: "SERVICE_NOT_FOUND",
        });
      }
    });
  });
});
