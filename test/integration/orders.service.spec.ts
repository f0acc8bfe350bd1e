/**
 * The orders service on a real broker with inventory beside it (embedded stores, in-process bus).
 * Payment events are published on the bus as payments would; what orders publishes is read from
 * its outbox.
 */
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ServiceBroker, type Context } from "moleculer";
import { createBrokerOptions } from "../../moleculer.config";
import { ManualClock } from "../../lib/clock";
import { loadConfig } from "../../lib/config";
import type { EventBus } from "../../lib/bus/bus.port";
import { infrastructureOf } from "../../lib/infrastructure";
import { OUTBOX_COLLECTION, buildEnvelope, encodeEnvelope, type OutboxRow } from "../../lib/outbox/outbox";
import type { Principal } from "../../lib/principal";
import type { DocumentStore } from "../../lib/store/store.port";
import { subjectOf, type EventEnvelope } from "../../models/events";
import InventoryService from "../../services/inventory.service";
import OrdersService, { type OrderPage, type OrderView } from "../../services/orders.service";
import { waitFor } from "../support/wait";

const admin: Principal = { id: "ops", roles: ["admin"] };
const customer = (id: string): Principal => ({ id, roles: ["customer"] });

describe("orders service", () => {
  let dir: string;
  let broker: ServiceBroker;
  let bus: EventBus;
  let ordersStore: DocumentStore;
  /** The time every service of the broker reads: tests move it instead of writing deadlines into the store. */
  let clock: ManualClock;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "ordermesh-orders-"));
    const config = loadConfig({
      DATA_DIR: dir,
      LOG_LEVEL: "fatal",
      SERVICES: "orders,inventory",
      SEED_DEMO: "false",
      ORDER_PAYMENT_TIMEOUT: "1h",
    });
    clock = new ManualClock();
    broker = new ServiceBroker({ ...createBrokerOptions(config, {}, { clock }), logger: false });
    broker.createService({
      ...OrdersService,
      settings: { ...OrdersService.settings, sweepIntervalMs: 3_600_000 },
    });
    broker.createService(InventoryService);
    await broker.start();
    bus = await infrastructureOf(broker).bus();
    ordersStore = await infrastructureOf(broker).store("orders");
  });

  afterEach(async () => {
    await broker.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const call = <T>(action: string, params: unknown, meta: Record<string, unknown> = {}): Promise<T> =>
    broker.call<T, unknown>(action, params, { meta });

  async function aProduct(sku: string, quantity: number, minor = 1000, currency = "USD"): Promise<void> {
    await call("inventory.upsert", { sku, name: sku, price: { minor, currency } }, { user: admin });
    if (quantity > 0) await call("inventory.restock", { sku, quantity }, { user: admin });
  }

  async function stock(
    sku: string,
  ): Promise<{ available: number; reserved: number; sold: number; received: number }> {
    return call("inventory.getProduct", { sku }, { user: admin });
  }

  function place(
    who: Principal,
    items: { sku: string; quantity: number }[],
    key: string = randomUUID(),
  ): Promise<OrderView> {
    return call("orders.place", { items }, { user: who, idempotencyKey: key });
  }

  async function published(type: string, orderId?: string): Promise<OutboxRow[]> {
    const rows = await ordersStore.collection<OutboxRow>(OUTBOX_COLLECTION).find({ type });
    return rows.filter((row) => orderId === undefined || row.aggregateId === orderId);
  }

  function send(event: EventEnvelope): void {
    bus
      .publish({ id: event.id, subject: subjectOf(event.type), data: encodeEnvelope(event) })
      .catch(() => undefined);
  }

  function captured(order: OrderView, paymentId = `pay-${order.id}`): EventEnvelope<"payment.captured"> {
    return buildEnvelope({
      type: "payment.captured",
      aggregateType: "payment",
      aggregateId: paymentId,
      payload: {
        paymentId,
        orderId: order.id,
        customerId: order.customerId,
        amount: order.total,
        providerPaymentId: `pi_${paymentId}`,
      },
    });
  }

  function failed(order: OrderView): EventEnvelope<"payment.failed"> {
    return buildEnvelope({
      type: "payment.failed",
      aggregateType: "payment",
      aggregateId: `pay-${order.id}`,
      payload: {
        paymentId: `pay-${order.id}`,
        orderId: order.id,
        customerId: order.customerId,
        reason: "card declined",
        declineCode: "generic_decline",
      },
    });
  }

  /** Deliveries of `type` the orders inbox has handled to the end (duplicates not counted). */
  async function handled(type: string): Promise<number> {
    const stats = await call<{ subscriptions: Record<string, { processed: number }> }>(
      "orders.inboxStats",
      {},
    );
    return stats.subscriptions[type]?.processed ?? 0;
  }

  async function statusOf(order: OrderView): Promise<string> {
    return (await call<OrderView>("orders.getOrder", { id: order.id })).status;
  }

  it("places an order: stock reserved, the order and order.created committed together", async () => {
    await aProduct("MUG", 10, 1250);
    const order = await place(customer("alice"), [{ sku: "MUG", quantity: 2 }]);
    expect(order).toMatchObject({
      customerId: "alice",
      status: "PENDING_PAYMENT",
      items: [{ sku: "MUG", quantity: 2, unitPrice: { minor: 1250, currency: "USD" } }],
      total: { minor: 2500, currency: "USD" },
      paymentMethod: "pm_card_visa",
    });
    expect(order.statusHistory).toEqual([{ status: "PENDING_PAYMENT", at: order.createdAt }]);
    // placed at the broker's clock, due an hour later (ORDER_PAYMENT_TIMEOUT)
    expect(order.createdAt).toBe(new Date(clock.now()).toISOString());
    expect(order.paymentDueAt).toBe(new Date(clock.now() + 3_600_000).toISOString());
    const [event] = await published("order.created", order.id);
    expect(event?.payload).toMatchObject({ orderId: order.id, customerId: "alice", total: order.total });
    expect(await stock("MUG")).toMatchObject({ available: 8, reserved: 2 });
  });

  it("answers a retried request with the same order: same key, sequential and concurrent", async () => {
    await aProduct("MUG", 10);
    const key = randomUUID();
    const first = await place(customer("alice"), [{ sku: "MUG", quantity: 1 }], key);
    const [a, b] = await Promise.all([
      place(customer("alice"), [{ sku: "MUG", quantity: 1 }], key),
      place(customer("alice"), [{ sku: "MUG", quantity: 1 }], key),
    ]);
    expect(new Set([first.id, a.id, b.id])).toEqual(new Set([first.id]));
    expect(await published("order.created")).toHaveLength(1);
    expect(await stock("MUG")).toMatchObject({ available: 9, reserved: 1 });
    // the same key for another customer is another order
    const other = await place(customer("bob"), [{ sku: "MUG", quantity: 1 }], key);
    expect(other.id).not.toBe(first.id);
  });

  it("two identical requests racing from scratch produce one order and one reservation", async () => {
    await aProduct("MUG", 10);
    const key = randomUUID();
    const results = await Promise.all(
      Array.from({ length: 6 }, () => place(customer("carol"), [{ sku: "MUG", quantity: 3 }], key)),
    );
    expect(new Set(results.map((o) => o.id)).size).toBe(1);
    expect(await published("order.created")).toHaveLength(1);
    expect(await stock("MUG")).toMatchObject({ available: 7, reserved: 3 });
  });

  it("refuses an order it cannot fill: 409 OUT_OF_STOCK with details, nothing reserved or stored", async () => {
    await aProduct("MUG", 10);
    await aProduct("RARE", 1);
    await expect(
      place(customer("dave"), [
        { sku: "MUG", quantity: 2 },
        { sku: "RARE", quantity: 2 },
      ]),
    ).rejects.toMatchObject({
      code: 409,
      type: "OUT_OF_STOCK",
      data: { items: [{ sku: "RARE", requested: 2, available: 1 }] },
    });
    expect(await stock("MUG")).toMatchObject({ available: 10, reserved: 0 });
    expect(await ordersStore.collection("orders").countDocuments({})).toBe(0);
    expect(await published("order.created")).toHaveLength(0);
  });

  it("refuses bad input with a client error and changes nothing", async () => {
    await aProduct("MUG", 10);
    await expect(place(customer("erin"), [])).rejects.toMatchObject({ code: 422, type: "VALIDATION_ERROR" });
    await expect(place(customer("erin"), [{ sku: "MUG", quantity: 0 }])).rejects.toMatchObject({ code: 422 });
    await expect(
      call(
        "orders.place",
        { items: [{ sku: "MUG", quantity: 1 }], status: "PAID" },
        { user: customer("erin"), idempotencyKey: "k" },
      ),
    ).rejects.toMatchObject({ code: 422, type: "VALIDATION_ERROR" });
    await expect(place(customer("erin"), [{ sku: "NOPE", quantity: 1 }])).rejects.toMatchObject({
      code: 422,
      type: "UNKNOWN_SKU",
    });
    await expect(
      call("orders.place", { items: [{ sku: "MUG", quantity: 1 }] }, { user: customer("erin") }),
    ).rejects.toMatchObject({
      code: 400,
      type: "IDEMPOTENCY_KEY_REQUIRED",
    });
    await expect(place(admin, [{ sku: "MUG", quantity: 1 }])).rejects.toMatchObject({ code: 403 });
    expect(await stock("MUG")).toMatchObject({ available: 10, reserved: 0 });
  });

  it("refuses lines in two currencies (422) and gives the reserved stock back", async () => {
    await aProduct("MUG", 10, 1000, "USD");
    await aProduct("TEA", 10, 900, "JPY");
    await expect(
      place(customer("frank"), [
        { sku: "MUG", quantity: 1 },
        { sku: "TEA", quantity: 1 },
      ]),
    ).rejects.toMatchObject({ code: 422, type: "INVALID_ORDER" });
    expect(await stock("MUG")).toMatchObject({ available: 10, reserved: 0 });
    expect(await stock("TEA")).toMatchObject({ available: 10, reserved: 0 });
  });

  it("releases the reservation when the order cannot be stored", async () => {
    await aProduct("MUG", 10);
    const key = randomUUID();
    // find the id this request will get, and put something else there first
    const probe = await place(customer("gina"), [{ sku: "MUG", quantity: 1 }], key);
    await ordersStore.collection("orders").deleteOne({ _id: probe.id });
    await call("inventory.release", { orderId: probe.id });
    await ordersStore
      .collection("orders")
      .insertOne({ _id: probe.id, customerId: "someone-else", idempotencyKey: "x" });
    const before = await stock("MUG");

    await expect(place(customer("gina"), [{ sku: "MUG", quantity: 1 }], key)).rejects.toBeDefined();
    expect(await stock("MUG")).toMatchObject({ available: before.available, reserved: before.reserved });
  });

  it("shows a customer only their own orders (someone else's is ORDER_NOT_FOUND) and pages by cursor", async () => {
    await aProduct("MUG", 100);
    const mine: OrderView[] = [];
    // a second apart: newest first is then the reverse of the order they were placed in
    for (let i = 0; i < 5; i++) {
      clock.advance(1000);
      mine.push(await place(customer("hank"), [{ sku: "MUG", quantity: 1 }]));
    }
    const theirs = await place(customer("ivan"), [{ sku: "MUG", quantity: 1 }]);

    await expect(
      call("orders.getOrder", { id: theirs.id }, { user: customer("hank") }),
    ).rejects.toMatchObject({
      code: 404,
      type: "ORDER_NOT_FOUND",
    });
    expect((await call<OrderView>("orders.getOrder", { id: theirs.id }, { user: admin })).id).toBe(theirs.id);

    const page1 = await call<OrderPage>("orders.listOrders", { limit: 2 }, { user: customer("hank") });
    const page2 = await call<OrderPage>(
      "orders.listOrders",
      { limit: 2, cursor: page1.nextCursor },
      { user: customer("hank") },
    );
    const page3 = await call<OrderPage>(
      "orders.listOrders",
      { limit: 2, cursor: page2.nextCursor },
      { user: customer("hank") },
    );
    const listed = [...page1.items, ...page2.items, ...page3.items];
    expect(page3.nextCursor).toBeNull();
    expect(listed.map((o) => o.id)).toEqual([...mine].reverse().map((o) => o.id));
    expect(listed.every((o) => o.customerId === "hank")).toBe(true);

    const all = await call<OrderPage>("orders.listOrders", { limit: 100 }, { user: admin });
    expect(all.items).toHaveLength(6);
    await expect(
      call("orders.listOrders", { cursor: "not-a-cursor" }, { user: admin }),
    ).rejects.toMatchObject({
      code: 400,
      type: "INVALID_CURSOR",
    });
  });

  it("payment.captured → PAID and order.paid, once, however often it arrives", async () => {
    await aProduct("MUG", 10);
    const order = await place(customer("judy"), [{ sku: "MUG", quantity: 1 }]);
    const event = captured(order);
    send(event);
    send(event);
    send(captured(order, "another-payment")); // a second capture for the same order: no second order.paid
    await waitFor("order paid", async () => (await statusOf(order)) === "PAID");
    await waitFor("inventory committed", async () => (await stock("MUG")).sold === 1);
    // both captures handled (the repeated delivery of the first is a duplicate at most)
    await waitFor("both captures handled", async () => (await handled("payment.captured")) >= 2);
    const paid = await published("order.paid", order.id);
    expect(paid).toHaveLength(1);
    expect(paid[0]?.payload).toMatchObject({
      orderId: order.id,
      paymentId: `pay-${order.id}`,
      total: order.total,
    });
  });

  it("payment.failed → CANCELLED (payment_failed) and order.cancelled; the stock comes back", async () => {
    await aProduct("MUG", 10);
    const order = await place(customer("kim"), [{ sku: "MUG", quantity: 4 }]);
    send(failed(order));
    await waitFor("order cancelled", async () => (await statusOf(order)) === "CANCELLED");
    const [event] = await published("order.cancelled", order.id);
    expect(event?.payload).toMatchObject({ reason: "payment_failed", previousStatus: "PENDING_PAYMENT" });
    await waitFor("stock released", async () => (await stock("MUG")).available === 10);
  });

  it("a capture after the order was cancelled leaves it cancelled (payments refunds)", async () => {
    await aProduct("MUG", 10);
    const order = await place(customer("leo"), [{ sku: "MUG", quantity: 1 }]);
    await call("orders.cancel", { id: order.id }, { user: customer("leo") });
    send(captured(order));
    await waitFor("capture handled", async () => (await handled("payment.captured")) >= 1);
    expect(await statusOf(order)).toBe("CANCELLED");
    expect(await published("order.paid", order.id)).toHaveLength(0);
  });

  it("cancels: pending and paid orders, idempotently; a delivered one is refused; only the owner or an admin", async () => {
    await aProduct("MUG", 10);
    const pending = await place(customer("mia"), [{ sku: "MUG", quantity: 1 }]);
    await expect(call("orders.cancel", { id: pending.id }, { user: customer("ned") })).rejects.toMatchObject({
      code: 404,
    });
    const cancelled = await call<OrderView>("orders.cancel", { id: pending.id }, { user: customer("mia") });
    expect(cancelled).toMatchObject({ status: "CANCELLED", cancelReason: "customer_request" });
    const again = await call<OrderView>("orders.cancel", { id: pending.id }, { user: customer("mia") });
    expect(again.status).toBe("CANCELLED");
    expect(await published("order.cancelled", pending.id)).toHaveLength(1);

    const paid = await place(customer("mia"), [{ sku: "MUG", quantity: 1 }]);
    send(captured(paid));
    await waitFor("paid", async () => (await statusOf(paid)) === "PAID");
    const byAdmin = await call<OrderView>("orders.cancel", { id: paid.id }, { user: admin });
    expect(byAdmin).toMatchObject({ status: "CANCELLED", cancelReason: "admin_request" });
    const [event] = await published("order.cancelled", paid.id);
    expect(event?.payload).toMatchObject({ previousStatus: "PAID", reason: "admin_request" });

    await ordersStore.collection("orders").updateOne({ _id: pending.id }, { $set: { status: "DELIVERED" } });
    const delivered = await place(customer("mia"), [{ sku: "MUG", quantity: 1 }]);
    await ordersStore
      .collection("orders")
      .updateOne({ _id: delivered.id }, { $set: { status: "DELIVERED" } });
    await expect(
      call("orders.cancel", { id: delivered.id }, { user: customer("mia") }),
    ).rejects.toMatchObject({
      code: 409,
      type: "ILLEGAL_ORDER_TRANSITION",
    });
  });

  it("the sweeper cancels unpaid orders past their deadline, once, even when two sweeps race", async () => {
    await aProduct("MUG", 10);
    // payment timeout 1 h: the first order is a second past its deadline, the second half-way to it
    const overdue = await place(customer("olga"), [{ sku: "MUG", quantity: 1 }]);
    clock.advance(30 * 60_000 + 1000);
    const fresh = await place(customer("olga"), [{ sku: "MUG", quantity: 1 }]);
    clock.advance(30 * 60_000);

    const [a, b] = await Promise.all([
      call<{ cancelled: number }>("orders.sweep", {}),
      call<{ cancelled: number }>("orders.sweep", {}),
    ]);
    expect(a.cancelled + b.cancelled).toBe(1);
    expect(await statusOf(overdue)).toBe("CANCELLED");
    expect(await statusOf(fresh)).toBe("PENDING_PAYMENT");
    const events = await published("order.cancelled", overdue.id);
    expect(events).toHaveLength(1);
    expect(events[0]?.payload).toMatchObject({ reason: "payment_timeout" });
    await waitFor("stock released", async () => (await stock("MUG")).reserved === 1);
  });

  it("runs the sweeper on its own", async () => {
    const service = broker.getLocalService("orders") as unknown as { settings: { sweepIntervalMs: number } };
    expect(service.settings.sweepIntervalMs).toBeGreaterThan(0);
    await aProduct("MUG", 10);
    const order = await place(customer("pat"), [{ sku: "MUG", quantity: 1 }]);
    await broker.stop();
    // past the order's deadline (payment timeout 1 h) before the next broker starts
    clock.advance(60 * 60_000 + 1000);
    // a broker whose sweeper runs every 100 ms, on the same data and the same clock
    const config = loadConfig({
      DATA_DIR: dir,
      LOG_LEVEL: "fatal",
      SERVICES: "orders,inventory",
      SEED_DEMO: "false",
    });
    broker = new ServiceBroker({ ...createBrokerOptions(config, {}, { clock }), logger: false });
    broker.createService({ ...OrdersService, settings: { ...OrdersService.settings, sweepIntervalMs: 100 } });
    broker.createService(InventoryService);
    await broker.start();
    await waitFor("swept", async () => (await statusOf(order)) === "CANCELLED", 5000);
  });
});

// keeps the Context import meaningful for readers of the handler signatures above
export type { Context };
