/**
 * The payments service on a real broker (embedded store, in-process bus) against the real
 * provider simulator. The simulator's webhooks reach a small local receiver that forwards the raw
 * body and signature to `payments.webhook`, as the gateway does. Events are published on the
 * broker's bus as the orders service would; what payments publishes is read from its outbox.
 *
 * The service reads a manual clock: retries, polls and leases fall due only when a test moves it.
 * A negative check waits until everything has settled (no webhook owed, no intent of the order
 * still processing, the charger idle after a fresh look), never for a quiet period.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ServiceBroker } from "moleculer";
import type { EventBus } from "../../lib/bus/bus.port";
import type { BreakerStats } from "../../lib/breaker";
import { ManualClock } from "../../lib/clock";
import { loadConfig } from "../../lib/config";
import type { InboxStats } from "../../lib/inbox/inbox.consumer";
import { infrastructureOf } from "../../lib/infrastructure";
import { OUTBOX_COLLECTION, buildEnvelope, encodeEnvelope, type OutboxRow } from "../../lib/outbox/outbox";
import type { PaymentIntent, PspEvent, Refund } from "../../lib/psp/psp.port";
import { signPayload } from "../../lib/psp/psp.signature";
import { startPspSimulator, type PspSimulator } from "../../lib/psp/psp.simulator";
import { PaymentRepository } from "../../lib/repositories/payment.repository";
import type { Doc, DocumentStore } from "../../lib/store/store.port";
import type { LeaseWorker } from "../../lib/work/lease-worker";
import type { AnyServiceSchema } from "../../mixins/schema";
import { subjectOf, type EventEnvelope, type EventType } from "../../models/events";
import { createBrokerOptions } from "../../moleculer.config";
import PaymentsService, { type PaymentStats, type PaymentView } from "../../services/payments.service";
import { orderCreatedEnvelope } from "../fixtures/events";
import { TEST_WEBHOOK_SECRET, callPsp, startWebhookReceiver, type WebhookReceiver } from "../support/psp";
import { waitFor } from "../support/wait";

const SLOW_MS = 2500;
const LONG = 15_000;
/** The service's retry settings here (see the schema below). */
const BACKOFF_MAX_MS = 300;
const WEBHOOK_WAIT_MS = 300;
const MAX_REFUND_REJECTIONS = 3;

interface PaymentDoc extends Doc {
  orderId: string;
  status: string;
  attempts: number;
  cancelRequested: boolean;
  providerPaymentId?: string;
  declineCode?: string;
  refundId?: string;
  refundRejections?: number;
  history: { status: string }[];
}

let orderCounter = 0;

function nextOrderId(): string {
  orderCounter += 1;
  return `ord-${process.pid}-${Date.now().toString(36)}-${orderCounter}`;
}

function orderCreated(
  orderId: string,
  paymentMethod = "pm_card_visa",
  minor = 2599,
  customerId = "cus-1",
): EventEnvelope<"order.created"> {
  return orderCreatedEnvelope({ orderId, customerId, paymentMethod, unitMinor: minor });
}

function orderCancelled(
  orderId: string,
  previousStatus: "PENDING_PAYMENT" | "PAID",
  minor = 2599,
  customerId = "cus-1",
): EventEnvelope<"order.cancelled"> {
  return buildEnvelope({
    type: "order.cancelled",
    aggregateType: "order",
    aggregateId: orderId,
    payload: {
      orderId,
      customerId,
      reason: "customer_request",
      previousStatus,
      total: { minor, currency: "USD" },
    },
  });
}

describe("payments service", () => {
  let dir: string;
  let sim: PspSimulator;
  let receiver: WebhookReceiver;
  let broker: ServiceBroker;
  let bus: EventBus;
  let store: DocumentStore;
  let clock: ManualClock;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ordermesh-payments-"));
    receiver = await startWebhookReceiver(async ({ body, signature }) => {
      try {
        return { status: 200, body: await broker.call("payments.webhook", { body, signature }) };
      } catch (err) {
        const { code, type } = err as { code?: unknown; type?: unknown };
        return { status: typeof code === "number" && code >= 400 && code < 500 ? code : 500, body: { type } };
      }
    });
    sim = await startPspSimulator({
      dataDir: join(dir, "provider"),
      webhookUrl: receiver.url,
      webhookSecret: TEST_WEBHOOK_SECRET,
      slowMs: SLOW_MS,
    });
    const config = loadConfig({
      DATA_DIR: join(dir, "data"),
      LOG_LEVEL: "fatal",
      SERVICES: "payments",
      PSP_URL: sim.url,
      PSP_WEBHOOK_SECRET: TEST_WEBHOOK_SECRET,
    });
    clock = new ManualClock(Date.now());
    broker = new ServiceBroker({ ...createBrokerOptions(config, {}, { clock }), logger: false });
    const schema: AnyServiceSchema = {
      ...PaymentsService,
      settings: {
        ...PaymentsService.settings,
        chargerPollIntervalMs: 50,
        backoffBaseMs: 50,
        backoffMaxMs: BACKOFF_MAX_MS,
        webhookWaitMs: WEBHOOK_WAIT_MS,
        pollBackoffMaxMs: 600,
        maxRefundRejections: MAX_REFUND_REJECTIONS,
        pspTimeoutMs: 2000,
        pspBreaker: { resetTimeoutMs: 400 },
      },
    };
    broker.createService(schema);
    await broker.start();
    bus = await infrastructureOf(broker).bus();
    store = await infrastructureOf(broker).store("payments");
  });

  afterAll(async () => {
    await broker.stop();
    await sim.close();
    await receiver.close();
    rmSync(dir, { recursive: true, force: true });
  });

  afterEach(() => {
    sim.setFaults({ latencyMs: 0, errorRate: 0, outage: false, dropWebhooks: false });
  });

  /** Publish without waiting: the in-process bus resolves a publish only once it is handled. */
  function send(event: EventEnvelope): void {
    bus
      .publish({ id: event.id, subject: subjectOf(event.type), data: encodeEnvelope(event) })
      .catch(() => undefined);
  }

  const paymentOf = (orderId: string): Promise<PaymentDoc | null> =>
    store.collection<PaymentDoc>("payments").findOne({ orderId });
  const statusOf = async (orderId: string): Promise<string | undefined> => (await paymentOf(orderId))?.status;
  const published = (type: EventType, orderId: string): Promise<OutboxRow[]> =>
    store.collection<OutboxRow>(OUTBOX_COLLECTION).find({ type, "payload.orderId": orderId });
  const intentsOf = (orderId: string): PaymentIntent[] =>
    sim.intents().filter((i) => i.metadata.orderId === orderId);
  const pspBreaker = async (): Promise<BreakerStats | undefined> =>
    (await broker.call<BreakerStats[]>("payments.breakers")).find((b) => b.name === "psp");
  const webhook = (body: string, signature: string) =>
    broker.call<Record<string, unknown>, { body: string; signature: string }>("payments.webhook", {
      body,
      signature,
    });

  async function waitForStatus(orderId: string, status: string, timeoutMs = LONG): Promise<PaymentDoc> {
    await waitFor(
      `payment of ${orderId} to be ${status}`,
      async () => (await statusOf(orderId)) === status,
      timeoutMs,
    );
    return (await paymentOf(orderId)) as PaymentDoc;
  }

  /** Like waitForStatus, moving the clock `stepMs` at each look, so that retries and polls fall due. */
  async function advanceUntilStatus(orderId: string, status: string, stepMs: number): Promise<PaymentDoc> {
    await waitFor(
      `payment of ${orderId} to be ${status} as time passes`,
      async () => {
        if ((await statusOf(orderId)) === status) return true;
        clock.advance(stepMs);
        return false;
      },
      LONG,
    );
    return (await paymentOf(orderId)) as PaymentDoc;
  }

  /**
   * Wait until nothing more can happen to `orderIds` without the clock moving: no webhook owed, no
   * intent of theirs still processing at the provider, and the charger idle after a fresh look.
   */
  async function settled(...orderIds: string[]): Promise<void> {
    await waitFor("the provider to have nothing in flight", () => {
      const processing = orderIds.flatMap(intentsOf).some((intent) => intent.status === "processing");
      return !processing && sim.stats().webhooks.pending === 0;
    });
    const charger = (broker.getLocalService("payments") as unknown as { charger: LeaseWorker<unknown> })
      .charger;
    charger.wake();
    await charger.idle();
  }

  async function rejection(
    promise: Promise<unknown>,
  ): Promise<{ code?: unknown; type?: unknown; data?: unknown }> {
    try {
      await promise;
    } catch (err) {
      return err as { code?: unknown; type?: unknown; data?: unknown };
    }
    throw new Error("expected a rejection");
  }

  it("captures a visa payment once and publishes payment.captured once", async () => {
    const orderId = nextOrderId();
    send(orderCreated(orderId, "pm_card_visa", 4200, "cus-visa"));

    const payment = await waitForStatus(orderId, "captured");
    await waitFor(
      "payment.captured",
      async () => (await published("payment.captured", orderId)).length === 1,
    );
    await settled(orderId);

    const events = await published("payment.captured", orderId);
    expect(events).toHaveLength(1);
    expect(events[0]?.payload).toEqual({
      paymentId: payment._id,
      orderId,
      customerId: "cus-visa",
      amount: { minor: 4200, currency: "USD" },
      providerPaymentId: payment.providerPaymentId,
    });
    expect(intentsOf(orderId)).toHaveLength(1);
    expect(intentsOf(orderId)[0]).toMatchObject({
      id: payment.providerPaymentId,
      amount: 4200,
      metadata: { paymentId: payment._id },
    });
    expect(payment.history.map((h) => h.status)[0]).toBe("pending");
    expect(payment.history.map((h) => h.status).at(-1)).toBe("captured");
  });

  it("lists an order's payments to its owner and to admins, not to another customer", async () => {
    const orderId = nextOrderId();
    send(orderCreated(orderId, "pm_card_visa", 1000, "cus-owner"));
    await waitForStatus(orderId, "captured");

    const as = (id: string, roles: string[]) =>
      broker.call<{ items: PaymentView[] }, { orderId: string }>(
        "payments.list",
        { orderId },
        { meta: { user: { id, roles } } },
      );
    const own = await as("cus-owner", ["customer"]);
    expect(own.items).toHaveLength(1);
    expect(own.items[0]).toMatchObject({
      orderId,
      status: "captured",
      amount: { minor: 1000, currency: "USD" },
      paymentMethod: "pm_card_visa",
      providerPaymentId: expect.stringMatching(/^pi_/),
    });
    expect((await as("cus-stranger", ["customer"])).items).toEqual([]);
    expect((await as("ops", ["admin"])).items).toHaveLength(1);
    expect(
      (await broker.call<{ items: PaymentView[] }, { orderId: string }>("payments.list", { orderId })).items,
    ).toHaveLength(1);

    const stats = await broker.call<PaymentStats>("payments.stats");
    expect(stats.byStatus.captured).toBeGreaterThanOrEqual(1);
    expect(stats.total).toBe(Object.values(stats.byStatus).reduce((a, b) => a + b, 0));
  });

  it("fails a declined payment with its decline code, and the breaker stays closed", async () => {
    const orderId = nextOrderId();
    send(orderCreated(orderId, "pm_card_declined"));

    const payment = await waitForStatus(orderId, "failed");
    await waitFor("payment.failed", async () => (await published("payment.failed", orderId)).length === 1);

    expect(payment.declineCode).toBe("generic_decline");
    expect((await published("payment.failed", orderId))[0]?.payload).toMatchObject({
      paymentId: payment._id,
      orderId,
      customerId: "cus-1",
      declineCode: "generic_decline",
      reason: expect.any(String),
    });
    expect(await published("payment.captured", orderId)).toHaveLength(0);
    expect((await pspBreaker())?.state).toBe("closed");
  });

  it("makes one payment and one charge of a duplicated order.created", async () => {
    const orderId = nextOrderId();
    const event = orderCreated(orderId);
    send(event);
    send(event);
    // the same order announced again under another event id
    send(orderCreated(orderId));

    await waitForStatus(orderId, "captured");
    await waitFor("both event ids handled", async () => {
      const stats = await broker.call<InboxStats>("payments.inboxStats");
      return (stats.subscriptions["order.created"]?.processed ?? 0) >= 2;
    });
    await settled(orderId);

    expect(await store.collection("payments").countDocuments({ orderId })).toBe(1);
    expect(intentsOf(orderId)).toHaveLength(1);
    expect(await published("payment.captured", orderId)).toHaveLength(1);
  });

  it("keeps payments pending through an outage, opens the breaker, and captures each once after it", async () => {
    sim.setFaults({ outage: true });
    const orderIds = Array.from({ length: 6 }, () => nextOrderId());
    for (const orderId of orderIds) send(orderCreated(orderId));

    await waitFor("the breaker to open", async () => (await pspBreaker())?.state === "open", LONG);
    await waitFor(
      "every payment tried and still pending",
      async () => {
        const docs = await Promise.all(orderIds.map(paymentOf));
        return docs.every((d) => d !== null && d.status === "pending" && d.attempts >= 1);
      },
      LONG,
    );
    expect(orderIds.flatMap(intentsOf)).toHaveLength(0);

    sim.setFaults({ outage: false });
    // the retries fall due as time passes; the breaker lets them through once its probe succeeds
    for (const orderId of orderIds) await advanceUntilStatus(orderId, "captured", BACKOFF_MAX_MS);
    await waitFor("the breaker to close", async () => (await pspBreaker())?.state === "closed", LONG);
    await settled(...orderIds);
    for (const orderId of orderIds) {
      expect(intentsOf(orderId)).toHaveLength(1);
      expect(await published("payment.captured", orderId)).toHaveLength(1);
    }
    expect((await pspBreaker())?.transitions.open).toBeGreaterThanOrEqual(1);
  });

  it("captures by polling when the webhook is dropped", async () => {
    sim.setFaults({ dropWebhooks: true });
    const orderId = nextOrderId();
    send(orderCreated(orderId));
    await waitForStatus(orderId, "processing");
    await waitFor("the intent to succeed at the provider", () =>
      intentsOf(orderId).every((intent) => intent.status === "succeeded"),
    );
    expect(await statusOf(orderId)).toBe("processing");

    // no webhook comes: once it has waited webhookWaitMs, the payment is polled
    clock.advance(WEBHOOK_WAIT_MS);
    const payment = await waitForStatus(orderId, "captured");

    expect(
      receiver.received.filter((r) => r.event.data.object.id === payment.providerPaymentId),
    ).toHaveLength(0);
    expect(sim.stats().webhooks.dropped).toBeGreaterThanOrEqual(1);
    expect(payment.history.map((h) => h.status)).toEqual(["pending", "processing", "captured"]);
    expect(await published("payment.captured", orderId)).toHaveLength(1);
  });

  it("refuses forged, stale and unsigned webhooks without changing anything", async () => {
    const orderId = nextOrderId();
    send(orderCreated(orderId, "pm_card_slow"));
    const payment = await waitForStatus(orderId, "processing");
    const intent = intentsOf(orderId)[0] as PaymentIntent;
    const forged: PspEvent = {
      id: `evt_forged_${orderId}`,
      type: "payment_intent.succeeded",
      created: Math.floor(Date.now() / 1000),
      data: { object: { ...intent, status: "succeeded" } },
    };
    const body = JSON.stringify(forged);
    const now = Math.floor(Date.now() / 1000);

    const cases: [string, string][] = [
      [signPayload("whsec_an_attackers_secret", body, now), "SIGNATURE_MISMATCH"],
      [signPayload(TEST_WEBHOOK_SECRET, body, now - 600), "SIGNATURE_EXPIRED"],
      ["", "SIGNATURE_MISSING"],
      ["sha256=abc", "SIGNATURE_MALFORMED"],
    ];
    for (const [signature, reason] of cases) {
      expect(await rejection(webhook(body, signature))).toMatchObject({
        code: 400,
        type: "INVALID_SIGNATURE",
        data: { reason },
      });
    }
    // a genuine signature over a body that is not an event
    expect(
      await rejection(webhook("not json", signPayload(TEST_WEBHOOK_SECRET, "not json", now))),
    ).toMatchObject({
      code: 400,
      type: "INVALID_WEBHOOK",
    });

    expect(await statusOf(orderId)).toBe("processing");
    expect(await store.collection("webhook_events").countDocuments({ _id: forged.id })).toBe(0);
    expect(await published("payment.captured", orderId)).toHaveLength(0);
    // the real capture still lands
    await waitForStatus(orderId, "captured");
    expect((await paymentOf(orderId))?._id).toBe(payment._id);
  });

  it("answers a replayed genuine webhook as a duplicate, with no second event", async () => {
    const orderId = nextOrderId();
    send(orderCreated(orderId));
    const payment = await waitForStatus(orderId, "captured");
    await waitFor("the webhook to be accepted", () =>
      receiver
        .accepted()
        .some(
          (r) =>
            r.event.type === "payment_intent.succeeded" &&
            r.event.data.object.id === payment.providerPaymentId,
        ),
    );
    const genuine = receiver
      .accepted()
      .find(
        (r) =>
          r.event.type === "payment_intent.succeeded" && r.event.data.object.id === payment.providerPaymentId,
      );

    const replayed = await webhook(genuine?.body ?? "", genuine?.signature ?? "");

    expect(replayed).toEqual({ received: true, duplicate: true });
    expect(await published("payment.captured", orderId)).toHaveLength(1);
  });

  it("acknowledges and ignores signed webhooks about no payment of ours, or of other kinds", async () => {
    const event: PspEvent = {
      id: `evt_stranger_${nextOrderId()}`,
      type: "payment_intent.succeeded",
      created: Math.floor(Date.now() / 1000),
      data: {
        object: {
          id: "pi_not_ours",
          object: "payment_intent",
          status: "succeeded",
          amount: 1,
          currency: "USD",
          payment_method: "pm_card_visa",
          metadata: { paymentId: "no-such-payment" },
          created: 0,
        },
      },
    };
    const body = JSON.stringify(event);
    const now = Math.floor(Date.now() / 1000);
    expect(await webhook(body, signPayload(TEST_WEBHOOK_SECRET, body, now))).toEqual({
      received: true,
      ignored: true,
    });

    // an event this service does not act on is acknowledged too, so the provider stops sending it
    const other = JSON.stringify({
      id: `evt_other_${nextOrderId()}`,
      type: "customer.created",
      created: now,
      data: { object: { id: "cus_1", object: "customer" } },
    });
    expect(await webhook(other, signPayload(TEST_WEBHOOK_SECRET, other, now))).toEqual({
      received: true,
      ignored: true,
    });
  });

  it("refunds a captured payment when its order is cancelled, once", async () => {
    const orderId = nextOrderId();
    send(orderCreated(orderId, "pm_card_visa", 3100));
    const payment = await waitForStatus(orderId, "captured");
    const cancelled = orderCancelled(orderId, "PAID", 3100);
    send(cancelled);
    send(cancelled);

    const done = await waitForStatus(orderId, "refunded");
    await waitFor(
      "payment.refunded",
      async () => (await published("payment.refunded", orderId)).length === 1,
    );
    await settled(orderId);

    const events = await published("payment.refunded", orderId);
    expect(events).toHaveLength(1);
    expect(events[0]?.payload).toEqual({
      paymentId: payment._id,
      orderId,
      customerId: "cus-1",
      amount: { minor: 3100, currency: "USD" },
      refundId: done.refundId,
    });
    const refunds = sim.refunds().filter((r) => r.payment_intent === payment.providerPaymentId);
    expect(refunds).toHaveLength(1);
    expect(refunds[0]).toMatchObject({ id: done.refundId, amount: 3100 });
    expect(done.history.map((h) => h.status).slice(-3)).toEqual(["captured", "refunding", "refunded"]);
  });

  it("refunds a capture that lands after the order was cancelled", async () => {
    const orderId = nextOrderId();
    send(orderCreated(orderId, "pm_card_slow"));
    await waitForStatus(orderId, "processing");
    send(orderCancelled(orderId, "PENDING_PAYMENT"));
    await waitFor(
      "the cancellation to be noted",
      async () => (await paymentOf(orderId))?.cancelRequested === true,
    );

    const done = await waitForStatus(orderId, "refunded", LONG);
    await waitFor(
      "payment.refunded",
      async () => (await published("payment.refunded", orderId)).length === 1,
    );

    expect(await published("payment.captured", orderId)).toHaveLength(1);
    expect(sim.refunds().filter((r) => r.payment_intent === done.providerPaymentId)).toHaveLength(1);
    expect(done.history.map((h) => h.status)).toEqual([
      "pending",
      "processing",
      "captured",
      "refunding",
      "refunded",
    ]);
  });

  it("parks a refund the provider keeps refusing as refund_dead, and records a refund it reports later", async () => {
    const orderId = nextOrderId();
    send(orderCreated(orderId, "pm_card_visa", 1500));
    const payment = await waitForStatus(orderId, "captured");
    // refunded at the provider by someone else, and its webhook lost: our own refund is refused
    sim.setFaults({ dropWebhooks: true });
    const outOfBand = await callPsp<Refund>(sim.url, "POST", "/v1/refunds", {
      idempotencyKey: `manual_${payment._id}`,
      body: { payment_intent: payment.providerPaymentId },
    });
    expect(outOfBand.status).toBe(200);
    send(orderCancelled(orderId, "PAID", 1500));

    const dead = await advanceUntilStatus(orderId, "refund_dead", BACKOFF_MAX_MS);

    expect(dead).toMatchObject({ refundRejections: MAX_REFUND_REJECTIONS, attempts: MAX_REFUND_REJECTIONS });
    expect(dead.history.map((h) => h.status).slice(-3)).toEqual(["captured", "refunding", "refund_dead"]);
    expect(await published("payment.refunded", orderId)).toHaveLength(0);
    expect(sim.refunds().filter((r) => r.payment_intent === payment.providerPaymentId)).toHaveLength(1);
    expect((await broker.call<PaymentStats>("payments.stats")).byStatus.refund_dead).toBeGreaterThanOrEqual(
      1,
    );

    // the provider's report of that refund still lands
    const event: PspEvent = {
      id: `evt_refund_${orderId}`,
      type: "charge.refunded",
      created: Math.floor(Date.now() / 1000),
      data: { object: outOfBand.body },
    };
    const body = JSON.stringify(event);
    expect(
      await webhook(body, signPayload(TEST_WEBHOOK_SECRET, body, Math.floor(Date.now() / 1000))),
    ).toEqual({
      received: true,
    });
    expect(await paymentOf(orderId)).toMatchObject({ status: "refunded", refundId: outOfBand.body.id });
    expect(await published("payment.refunded", orderId)).toHaveLength(1);
  });

  it("never charges an order whose cancellation arrived before its creation", async () => {
    const orderId = nextOrderId();
    send(orderCancelled(orderId, "PENDING_PAYMENT"));
    await waitForStatus(orderId, "cancelled");
    const before =
      (await broker.call<InboxStats>("payments.inboxStats")).subscriptions["order.created"]?.processed ?? 0;

    send(orderCreated(orderId));
    await waitFor("order.created handled", async () => {
      const stats = await broker.call<InboxStats>("payments.inboxStats");
      return (stats.subscriptions["order.created"]?.processed ?? 0) > before;
    });
    await settled(orderId);

    expect(await statusOf(orderId)).toBe("cancelled");
    expect(await store.collection("payments").countDocuments({ orderId })).toBe(1);
    expect(intentsOf(orderId)).toHaveLength(0);
    expect(await published("payment.captured", orderId)).toHaveLength(0);
  });

  it("cancels a pending payment without charging it", async () => {
    // the provider answers 503 (it did nothing), so the payment waits as pending; the cancellation ends it for good
    sim.setFaults({ outage: true });
    const orderId = nextOrderId();
    send(orderCreated(orderId));
    await waitFor("a failed attempt", async () => ((await paymentOf(orderId))?.attempts ?? 0) >= 1, LONG);
    send(orderCancelled(orderId, "PENDING_PAYMENT"));

    const done = await waitForStatus(orderId, "cancelled");
    sim.setFaults({ outage: false });
    // long past any retry it had pending
    clock.advance(BACKOFF_MAX_MS * 2);
    await settled(orderId);

    expect(await statusOf(orderId)).toBe("cancelled");
    expect(done.cancelRequested).toBe(true);
    expect(intentsOf(orderId)).toHaveLength(0);
    expect(await published("payment.captured", orderId)).toHaveLength(0);
  });

  it("asks the provider again when a cancelled payment's charge may have landed, and refunds what it took", async () => {
    // 500: the provider may have acted on the create
    sim.setFaults({ errorRate: 1 });
    const orderId = nextOrderId();
    send(orderCreated(orderId, "pm_card_visa", 1234));
    await waitFor("a failed attempt", async () => ((await paymentOf(orderId))?.attempts ?? 0) >= 1, LONG);
    send(orderCancelled(orderId, "PENDING_PAYMENT", 1234));
    await waitFor(
      "the cancellation to be noted",
      async () => (await paymentOf(orderId))?.cancelRequested === true,
    );
    expect(await statusOf(orderId)).toBe("pending");
    sim.setFaults({ errorRate: 0 });

    const done = await advanceUntilStatus(orderId, "refunded", BACKOFF_MAX_MS);
    await waitFor(
      "payment.refunded",
      async () => (await published("payment.refunded", orderId)).length === 1,
    );

    expect(intentsOf(orderId)).toHaveLength(1);
    expect(await published("payment.captured", orderId)).toHaveLength(1);
    expect(sim.refunds().filter((r) => r.payment_intent === done.providerPaymentId)).toHaveLength(1);
  });

  it("takes over a charge left by a crashed instance with the same key, and still refunds a cancelled order", async () => {
    sim.setFaults({ outage: true });
    const orderId = nextOrderId();
    send(orderCreated(orderId, "pm_card_visa", 777));
    await waitFor("a failed attempt", async () => ((await paymentOf(orderId))?.attempts ?? 0) >= 1, LONG);
    // another instance, whose claim ran a minute later, took it with a 1 s lease, marked the charge
    // as sent (it went out, below) and died before recording anything
    const crashedClock = new ManualClock(clock.now() + 60_000);
    const crashed = new PaymentRepository(store, crashedClock, { leaseMs: 1000 });
    const crashedOwner = "crashed-node:payments";
    await waitFor("the payment to be between attempts, and taken by the other instance", async () => {
      const claimed = (await crashed.claimDue(50, crashedOwner)).find((p) => p.orderId === orderId);
      if (claimed === undefined) return false;
      claimed.startCharge(new Date(crashedClock.now()));
      await crashed.saveAlone(claimed, { heldBy: crashedOwner });
      return true;
    });
    const payment = (await paymentOf(orderId)) as PaymentDoc;
    sim.setFaults({ outage: false, dropWebhooks: true });
    const landed = await callPsp(sim.url, "POST", "/v1/payment_intents", {
      idempotencyKey: payment._id,
      body: {
        amount: 777,
        currency: "USD",
        payment_method: "pm_card_visa",
        metadata: { paymentId: payment._id, orderId },
      },
    });
    expect(landed.status).toBe(200);
    send(orderCancelled(orderId, "PENDING_PAYMENT", 777));
    await waitFor(
      "the cancellation to be noted",
      async () => (await paymentOf(orderId))?.cancelRequested === true,
    );

    expect(await statusOf(orderId)).toBe("pending");

    // its lease runs out: this instance takes the payment over, sends the same key, learns of the
    // charge by polling (webhooks are dropped) and refunds it
    clock.set(crashedClock.now() + 1000);
    const done = await advanceUntilStatus(orderId, "refunded", WEBHOOK_WAIT_MS);

    expect(intentsOf(orderId).map((i) => i.id)).toEqual([landed.body.id]);
    expect(done.providerPaymentId).toBe(landed.body.id);
    expect(await published("payment.captured", orderId)).toHaveLength(1);
    expect(await published("payment.refunded", orderId)).toHaveLength(1);
    expect(sim.refunds().filter((r) => r.payment_intent === landed.body.id)).toHaveLength(1);
  });
});

describe("payments service configuration", () => {
  it("refuses to start without PSP_URL or PSP_WEBHOOK_SECRET, naming the variable", async () => {
    for (const [env, variable] of [
      [{ PSP_WEBHOOK_SECRET: TEST_WEBHOOK_SECRET }, "PSP_URL"],
      [{ PSP_URL: "http://127.0.0.1:9" }, "PSP_WEBHOOK_SECRET"],
    ] as const) {
      const dir = mkdtempSync(join(tmpdir(), "ordermesh-payments-config-"));
      const config = loadConfig({ DATA_DIR: dir, LOG_LEVEL: "fatal", SERVICES: "payments", ...env });
      const broker = new ServiceBroker({ ...createBrokerOptions(config), logger: false });
      broker.createService(PaymentsService as AnyServiceSchema);
      try {
        await expect(broker.start()).rejects.toThrow(variable);
      } finally {
        await broker.stop().catch(() => undefined);
        rmSync(dir, { recursive: true, force: true });
      }
    }
  });
});
