/**
 * The notifications service on a real broker built from moleculer.config (embedded store,
 * in-process bus): events go in through the bus, messages come out at a small HTTP provider
 * (test/support/notify-receiver.ts: deduplicates by Idempotency-Key, fails on demand) or in
 * DATA_DIR/messages.jsonl.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ServiceBroker } from "moleculer";
import type { EventBus } from "../../lib/bus/bus.port";
import { Breaker, type BreakerStats } from "../../lib/breaker";
import { loadConfig } from "../../lib/config";
import type { InboxStats } from "../../lib/inbox/inbox.consumer";
import { infrastructureOf } from "../../lib/infrastructure";
import { FileNotificationProvider, MESSAGES_FILE } from "../../lib/notify/file.adapter";
import { HttpNotificationProvider } from "../../lib/notify/http.adapter";
import type { NotificationProvider, OutboundMessage } from "../../lib/notify/notify.port";
import { buildEnvelope, encodeEnvelope } from "../../lib/outbox/outbox";
import type { DocumentStore } from "../../lib/store/store.port";
import { subjectOf, type EventEnvelope } from "../../models/events";
import { shortRef } from "../../models/notification-template";
import { createBrokerOptions } from "../../moleculer.config";
import { NotificationRepository, type NotificationDoc } from "../../lib/repositories/notification.repository";
import { ManualClock, systemClock, type Clock } from "../../lib/clock";
import NotificationsService, {
  type DeadNotificationView,
  type NotificationPage,
  type NotificationStats,
  type NotificationView,
  type NotificationsSettings,
} from "../../services/notifications.service";
import { NotificationSender } from "../../services/notifications.sender";
import { orderCreatedEnvelope } from "../fixtures/events";
import { FakeProvider } from "../support/notify-receiver";
import { freePort } from "../support/ports";
import { waitFor } from "../support/wait";

// ── events ───────────────────────────────────────────────────────────────

let counter = 0;
const USD = (minor: number) => ({ minor, currency: "USD" });

function orderCreated(customerId = "cus-1"): EventEnvelope<"order.created"> {
  return orderCreatedEnvelope({ orderId: `order-${++counter}`, customerId, quantity: 2, unitMinor: 1249 });
}

function orderPaid(customerId = "cus-1"): EventEnvelope<"order.paid"> {
  const orderId = `order-${++counter}`;
  return buildEnvelope({
    type: "order.paid",
    aggregateType: "order",
    aggregateId: orderId,
    payload: { orderId, customerId, paymentId: `pay-${counter}`, total: USD(2498) },
  });
}

function orderCancelled(customerId = "cus-1"): EventEnvelope<"order.cancelled"> {
  const orderId = `order-${++counter}`;
  return buildEnvelope({
    type: "order.cancelled",
    aggregateType: "order",
    aggregateId: orderId,
    payload: { orderId, customerId, reason: "customer_request", previousStatus: "PAID", total: USD(2498) },
  });
}

function paymentRefunded(customerId = "cus-1"): EventEnvelope<"payment.refunded"> {
  const orderId = `order-${++counter}`;
  return buildEnvelope({
    type: "payment.refunded",
    aggregateType: "payment",
    aggregateId: `pay-${counter}`,
    payload: {
      paymentId: `pay-${counter}`,
      orderId,
      customerId,
      amount: USD(2498),
      refundId: `re_${counter}`,
    },
  });
}

// ── the broker ───────────────────────────────────────────────────────────

/** Fast polls and retries; the breaker out of the way unless a test brings it in. */
const FAST: Partial<NotificationsSettings> = {
  pollIntervalMs: 100,
  backoffBaseMs: 20,
  backoffMaxMs: 100,
  // long enough that a loaded machine does not turn a slow answer into a timeout (and a resend)
  sendTimeoutMs: 2000,
  leaseMs: 10_000,
  breakerVolumeThreshold: 10_000,
};

interface Harness {
  dir: string;
  broker: ServiceBroker;
  bus: EventBus;
  store: DocumentStore;
}

async function startHarness(
  env: Record<string, string>,
  settings: Partial<NotificationsSettings> = {},
  clock: Clock = systemClock,
) {
  const dir = mkdtempSync(join(tmpdir(), "ordermesh-notifications-"));
  const config = loadConfig({ DATA_DIR: dir, LOG_LEVEL: "fatal", SERVICES: "notifications", ...env });
  const broker = new ServiceBroker({ ...createBrokerOptions(config, {}, { clock }), logger: false });
  broker.createService({
    ...NotificationsService,
    settings: { ...NotificationsService.settings, ...FAST, ...settings },
  });
  await broker.start();
  const infra = infrastructureOf(broker);
  const harness: Harness = { dir, broker, bus: await infra.bus(), store: await infra.store("notifications") };
  return harness;
}

async function stopHarness(h: Harness | undefined): Promise<void> {
  if (h === undefined) return;
  await h.broker.stop();
  rmSync(h.dir, { recursive: true, force: true });
}

/** Publish without waiting (the in-process bus resolves once the event is handled). */
function publish(h: Harness, event: EventEnvelope, messageId = event.id): void {
  h.bus
    .publish({ id: messageId, subject: subjectOf(event.type), data: encodeEnvelope(event) })
    .catch(() => undefined);
}

function docs(h: Harness, filter: Record<string, unknown> = {}): Promise<NotificationDoc[]> {
  return h.store.collection<NotificationDoc>("notifications").find(filter, { sort: { _id: 1 } });
}

async function countWhere(h: Harness, filter: Record<string, unknown>): Promise<number> {
  return h.store.collection<NotificationDoc>("notifications").countDocuments(filter);
}

async function notifyBreaker(h: Harness): Promise<BreakerStats> {
  const all = await h.broker.call<BreakerStats[], Record<string, never>>("notifications.breakers", {});
  const found = all.find((b) => b.name === "notify");
  if (found === undefined) throw new Error("no notify breaker");
  return found;
}

/** The service's sender, to wait until it has nothing to do. */
function senderOf(h: Harness): NotificationSender {
  const service = h.broker.getLocalService("notifications") as unknown as { sender?: NotificationSender };
  if (service.sender === undefined) throw new Error("the notifications service has no sender");
  return service.sender;
}

const customer = (id: string) => ({ meta: { user: { id, roles: ["customer"] } } });
const admin = { meta: { user: { id: "admin-1", roles: ["admin"] } } };

// ── the suites ───────────────────────────────────────────────────────────

describe("notifications service with an HTTP provider", () => {
  let provider: FakeProvider;
  let h: Harness | undefined;

  async function start(settings: Partial<NotificationsSettings> = {}, clock?: Clock): Promise<Harness> {
    h = await startHarness({ NOTIFY_URL: provider.url }, settings, clock);
    return h;
  }

  beforeEach(async () => {
    provider = new FakeProvider();
    await provider.start();
  });

  afterEach(async () => {
    await stopHarness(h);
    h = undefined;
    await provider.stop();
  });

  it("sends one message per channel for each of the four events, once each", async () => {
    const h = await start();
    const events = [orderCreated(), orderPaid(), orderCancelled(), paymentRefunded()];

    for (const event of events) publish(h, event);

    await waitFor(
      "8 notifications sent",
      async () => (await countWhere(h, { status: "sent" })) === 8,
      10_000,
    );
    const stored = await docs(h);
    expect(stored).toHaveLength(8);
    for (const event of events) {
      const mine = stored.filter((d) => d.eventId === event.id);
      expect(mine.map((d) => d.channel).sort()).toEqual(["email", "sms"]);
      expect(mine.every((d) => d.type === event.type && d.orderId === event.payload.orderId)).toBe(true);
    }
    // the provider saw each notification id once, and accepted it once
    expect(provider.received).toHaveLength(8);
    expect([...provider.accepted.keys()].sort()).toEqual(stored.map((d) => d._id).sort());
    expect([...provider.accepted.values()].every((a) => a.times === 1)).toBe(true);
    for (const doc of stored) {
      const accepted = provider.accepted.get(doc._id);
      expect(doc).toMatchObject({ attempts: 1, providerMessageId: accepted?.id, sentAt: expect.any(Date) });
      expect(doc.leaseOwner).toBeUndefined();
      expect(accepted?.body).toEqual({
        channel: doc.channel,
        to: "customer:cus-1",
        ...(doc.channel === "email" ? { subject: doc.subject } : {}),
        body: doc.body,
      });
    }
    const created = stored.find((d) => d.eventId === events[0]?.id && d.channel === "sms");
    expect(created?.body).toBe(
      `Order ${shortRef(events[0]?.payload.orderId ?? "")} confirmed: 2 items, total $24.98. We are waiting for your payment.`,
    );
    const stats = await h.broker.call<NotificationStats>("notifications.stats");
    expect(stats).toEqual({ pending: 0, failed: 0, sent: 8, dead: 0 });
  });

  it("keeps one notification per (event, channel) when an event arrives twice", async () => {
    const h = await start();
    const event = orderPaid();

    publish(h, event);
    // the same message id is dropped by the bus; another message id reaches the inbox again
    publish(h, event);
    publish(h, event, `${event.id}-redelivered`);

    await waitFor(
      "the second copy to be seen",
      async () => {
        const stats = await h.broker.call<InboxStats>("notifications.inboxStats");
        return stats.subscriptions["order.paid"]?.duplicates === 1;
      },
      10_000,
    );
    await waitFor(
      "2 notifications sent",
      async () => (await countWhere(h, { status: "sent" })) === 2,
      10_000,
    );
    expect(await docs(h, { eventId: event.id })).toHaveLength(2);
    expect(provider.accepted.size).toBe(2);
    expect(provider.received).toHaveLength(2);
    // and the store refuses a second (event, channel) whatever the path
    await expect(
      h.store.collection<NotificationDoc>("notifications").insertOne({
        ...((await docs(h, { eventId: event.id, channel: "sms" }))[0] as NotificationDoc),
        _id: "another-id",
      }),
    ).rejects.toMatchObject({ code: "DUPLICATE_KEY" });
  });

  it("retries through a provider outage and a hanging provider, then sends each message once", async () => {
    const h = await start();
    provider.mode = "fail";
    const event = orderCreated();

    publish(h, event);

    await waitFor(
      "failed attempts on both notifications",
      async () => (await countWhere(h, { status: "failed", attempts: { $gte: 2 } })) === 2,
      10_000,
    );
    const failing = await docs(h, { eventId: event.id });
    expect(failing.every((d) => d.lastError?.startsWith("NOTIFY_UNAVAILABLE") === true)).toBe(true);
    expect(failing.every((d) => d.nextAttemptAt instanceof Date)).toBe(true);

    provider.mode = "hang";
    await waitFor(
      "a timed-out attempt",
      async () =>
        (await docs(h, { eventId: event.id })).some((d) => /did not answer/.test(d.lastError ?? "")),
      10_000,
    );

    provider.mode = "ok";
    await waitFor("both sent", async () => (await countWhere(h, { status: "sent" })) === 2, 10_000);
    const sent = await docs(h, { eventId: event.id });
    expect(provider.accepted.size).toBe(2);
    expect([...provider.accepted.values()].every((a) => a.times === 1)).toBe(true);
    for (const doc of sent) {
      expect(doc.attempts).toBeGreaterThan(2);
      expect(doc.attempts).toBe(provider.requestsFor(doc._id));
      expect(doc.providerMessageId).toBe(provider.accepted.get(doc._id)?.id);
    }
  });

  it("gives up after maxAttempts, keeps the dead notifications, and replays them on request", async () => {
    const h = await start({ maxAttempts: 3 });
    provider.mode = "fail";
    const event = orderPaid();

    publish(h, event);

    await waitFor(
      "2 dead notifications",
      async () => (await countWhere(h, { status: "dead" })) === 2,
      10_000,
    );
    const dead = await h.broker.call<DeadNotificationView[]>("notifications.dead");
    expect(dead).toHaveLength(2);
    for (const view of dead) {
      expect(view).toMatchObject({ status: "dead", attempts: 3, customerId: "cus-1", eventId: event.id });
      expect(view.lastError).toMatch(/^NOTIFY_UNAVAILABLE: .*HTTP 500/);
      expect(provider.requestsFor(view.id)).toBe(3);
    }
    expect(await h.broker.call("notifications.stats")).toEqual({ pending: 0, failed: 0, sent: 0, dead: 2 });

    provider.mode = "ok";
    const [first, second] = dead as [DeadNotificationView, DeadNotificationView];
    const replayed = await h.broker.call<NotificationView, { id: string }>("notifications.replay", {
      id: first.id,
    });
    expect(replayed).toMatchObject({ id: first.id, status: "pending", attempts: 0 });
    await waitFor(
      "the replayed one sent",
      async () => (await countWhere(h, { _id: first.id, status: "sent" })) === 1,
    );
    expect(await countWhere(h, { _id: second.id, status: "dead" })).toBe(1);

    await expect(h.broker.call("notifications.replay", { id: first.id })).rejects.toMatchObject({
      code: 409,
      type: "NOTIFICATION_NOT_DEAD",
    });
    await expect(h.broker.call("notifications.replay", { id: "no-such-notification" })).rejects.toMatchObject(
      {
        code: 404,
        type: "NOTIFICATION_NOT_FOUND",
      },
    );
    await expect(
      h.broker.call("notifications.replay", { id: second.id }, customer("cus-1")),
    ).rejects.toMatchObject({ code: 403, type: "FORBIDDEN" });
    await h.broker.call("notifications.replay", { id: second.id }, admin);
    await waitFor("both sent", async () => (await countWhere(h, { status: "sent" })) === 2);
    expect(provider.accepted.get(first.id)?.times).toBe(1);
    expect(provider.accepted.get(second.id)?.times).toBe(1);
  });

  it("retries a failed send when the clock reaches its retry time, and not before", async () => {
    const clock = new ManualClock(Date.parse("2026-11-20T10:00:00.000Z"));
    // a retry is due in [0, 60 s) after the first failure; the clock stands still until moved
    const h = await start({ backoffBaseMs: 60_000, backoffMaxMs: 60_000 }, clock);
    provider.mode = "fail";
    const event = orderPaid();

    publish(h, event);

    await waitFor(
      "both failed once",
      async () => (await countWhere(h, { status: "failed", attempts: 1 })) === 2,
      10_000,
    );
    for (const doc of await docs(h, { eventId: event.id })) {
      expect(doc.nextAttemptAt?.getTime()).toBeGreaterThanOrEqual(clock.now());
      expect(doc.nextAttemptAt?.getTime()).toBeLessThan(clock.now() + 60_000);
      expect(doc.updatedAt.getTime()).toBe(clock.now());
    }
    provider.mode = "ok";
    await senderOf(h).idle();
    // settled: nothing was due while the clock stood, so nothing was sent again
    expect(provider.received).toHaveLength(2);

    clock.advance(60_000);

    await waitFor("both sent", async () => (await countWhere(h, { status: "sent" })) === 2, 10_000);
    for (const doc of await docs(h, { eventId: event.id })) {
      expect(doc).toMatchObject({ attempts: 2, sentAt: new Date(clock.now()) });
      expect(provider.requestsFor(doc._id)).toBe(2);
    }
  });

  it("kills a message the provider rejects (4xx) at once, without counting it against the breaker", async () => {
    const h = await start({ breakerVolumeThreshold: 1 });
    provider.mode = "reject";
    const event = orderCancelled();

    publish(h, event);

    await waitFor(
      "2 dead notifications",
      async () => (await countWhere(h, { status: "dead" })) === 2,
      10_000,
    );
    for (const doc of await docs(h, { eventId: event.id })) {
      expect(doc.attempts).toBe(1);
      expect(doc.lastError).toMatch(/^NOTIFY_REJECTED: .*HTTP 400/);
      expect(provider.requestsFor(doc._id)).toBe(1);
    }
    const breaker = await notifyBreaker(h);
    expect(breaker).toMatchObject({ state: "closed", failures: 0 });
    expect(breaker.ignored).toBeGreaterThanOrEqual(2);
    expect(breaker.transitions.open).toBe(0);
  });

  it("opens the breaker during an outage, stops counting refused sends as attempts, and closes after it", async () => {
    const h = await start({
      maxAttempts: 100,
      breakerVolumeThreshold: 2,
      breakerErrorThresholdPercentage: 50,
      breakerResetTimeoutMs: 300,
    });
    provider.mode = "fail";
    const events = [orderCreated(), orderPaid(), paymentRefunded()];

    for (const event of events) publish(h, event);

    await waitFor("the breaker to open", async () => (await notifyBreaker(h)).state === "open", 10_000);
    // a few half-open probes fail and open it again
    await waitFor("a failed probe", async () => (await notifyBreaker(h)).transitions.open >= 2, 10_000);

    provider.mode = "ok";
    await waitFor("all 6 sent", async () => (await countWhere(h, { status: "sent" })) === 6, 15_000);
    const breaker = await notifyBreaker(h);
    expect(breaker.state).toBe("closed");
    expect(breaker.transitions.halfOpen).toBeGreaterThanOrEqual(2);
    expect(breaker.transitions.closed).toBeGreaterThanOrEqual(1);
    expect([...provider.accepted.values()].every((a) => a.times === 1)).toBe(true);
    // every attempt counted reached the provider: a send refused by the open breaker counts none
    for (const doc of await docs(h)) expect(doc.attempts).toBe(provider.requestsFor(doc._id));
  });

  it("lists the caller's own notifications, newest first, page by page", async () => {
    const h = await start();
    const mine = [orderCreated("cus-a"), orderPaid("cus-a"), paymentRefunded("cus-a")];
    const theirs = orderCreated("cus-b");
    for (const event of mine) {
      publish(h, event);
      // distinct creation times between events
      await waitFor("stored", async () => (await countWhere(h, { eventId: event.id })) === 2);
    }
    publish(h, theirs);
    await waitFor("all stored", async () => (await countWhere(h, {})) === 8);

    const list = (params: Record<string, unknown>, opts: object = customer("cus-a")) =>
      h.broker.call<NotificationPage, Record<string, unknown>>("notifications.list", params, opts);
    const first = await list({ limit: 4 });
    expect(first.items).toHaveLength(4);
    expect(first.nextCursor).toEqual(expect.any(String));
    const second = await list({ limit: 4, cursor: first.nextCursor });
    expect(second.items).toHaveLength(2);
    expect(second.nextCursor).toBeNull();

    const items = [...first.items, ...second.items];
    const expected = (await docs(h, { customerId: "cus-a" }))
      .sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a._id < b._id ? 1 : -1))
      .map((d) => d._id);
    expect(items.map((i) => i.id)).toEqual(expected);
    expect(new Set(items.map((i) => i.eventId))).toEqual(new Set(mine.map((e) => e.id)));
    // newest first: the last event's notifications lead
    expect(items[0]?.eventId).toBe(mine[2]?.id);
    expect(items.at(-1)?.eventId).toBe(mine[0]?.id);
    expect(items[0]).toEqual({
      id: expect.any(String),
      eventId: mine[2]?.id,
      orderId: mine[2]?.payload.orderId,
      type: "payment.refunded",
      channel: expect.stringMatching(/^(email|sms)$/),
      status: expect.stringMatching(/^(pending|sent)$/),
      ...(items[0]?.channel === "email" ? { subject: expect.any(String) } : {}),
      body: expect.any(String),
      attempts: expect.any(Number),
      createdAt: expect.any(String),
      ...(items[0]?.status === "sent" ? { sentAt: expect.any(String) } : {}),
    });

    // a customer naming someone else still sees their own
    expect(
      (await list({ customerId: "cus-b" })).items.every((i) => mine.some((e) => e.id === i.eventId)),
    ).toBe(true);
    // an admin may look at anyone's; an internal call must say whose
    const theirsPage = await list({ customerId: "cus-b" }, admin);
    expect(theirsPage.items.map((i) => i.eventId)).toEqual([theirs.id, theirs.id]);
    expect((await list({ customerId: "cus-b" }, {})).items).toHaveLength(2);
    await expect(list({}, {})).rejects.toMatchObject({ code: 400, type: "CUSTOMER_ID_REQUIRED" });
    await expect(list({ cursor: "not-a-cursor" })).rejects.toMatchObject({
      code: 400,
      type: "INVALID_CURSOR",
    });
    await expect(list({ limit: 101 })).rejects.toMatchObject({ type: "VALIDATION_ERROR" });
    await expect(h.broker.call("notifications.stats", {}, customer("cus-a"))).rejects.toMatchObject({
      code: 403,
    });
  });
});

describe("notification senders sharing a store", () => {
  let provider: FakeProvider;
  let h: Harness | undefined;
  const extra: NotificationSender[] = [];

  beforeEach(async () => {
    provider = new FakeProvider();
    await provider.start();
  });

  afterEach(async () => {
    await Promise.all(extra.splice(0).map((sender) => sender.stop()));
    await stopHarness(h);
    h = undefined;
    await provider.stop();
  });

  it("never sends one notification from two senders at once, and sends each once", async () => {
    h = await startHarness({ NOTIFY_URL: provider.url }, { maxInFlight: 4 });
    const harness = h;
    // two more senders on the service's store, with a slow provider that notices overlaps
    const sends = new Map<string, number>();
    const running = new Set<string>();
    const overlaps: string[] = [];
    const slow: NotificationProvider = {
      kind: "http",
      async send(message) {
        if (running.has(message.id)) overlaps.push(message.id);
        running.add(message.id);
        sends.set(message.id, (sends.get(message.id) ?? 0) + 1);
        await new Promise((resolve) => setTimeout(resolve, 5));
        running.delete(message.id);
        return { providerMessageId: `slow-${message.id}` };
      },
      close: () => Promise.resolve(),
    };
    for (const owner of ["extra-1", "extra-2"]) {
      const sender = new NotificationSender({
        repository: new NotificationRepository(harness.store),
        provider: slow,
        breaker: new Breaker({ name: `notify-${owner}`, volumeThreshold: 10_000 }),
        owner,
        clock: systemClock,
        logger: { info: () => undefined, warn: () => undefined, error: () => undefined },
        settings: { ...(NotificationsService.settings as NotificationsSettings), ...FAST, maxInFlight: 4 },
      });
      sender.start();
      extra.push(sender);
    }
    const now = new Date();
    const ids = Array.from({ length: 60 }, (_, i) => `ntf-${String(i).padStart(3, "0")}`);
    await harness.store.collection<NotificationDoc>("notifications").insertMany(
      ids.map((id) => ({
        _id: id,
        eventId: `evt-${id}`,
        type: "order.paid" as const,
        orderId: "order-x",
        customerId: "cus-x",
        channel: "sms" as const,
        to: "customer:cus-x",
        body: "Order order-x paid",
        status: "pending" as const,
        attempts: 0,
        nextAttemptAt: now,
        createdAt: now,
        updatedAt: now,
      })),
    );
    for (const sender of extra) sender.wake();

    await waitFor("60 sent", async () => (await countWhere(harness, { status: "sent" })) === 60, 15_000);
    expect(overlaps).toEqual([]);
    for (const id of ids) expect((sends.get(id) ?? 0) + provider.requestsFor(id)).toBe(1);
    // the work was shared
    expect(sends.size).toBeGreaterThan(0);
    for (const doc of await docs(harness)) {
      expect(doc.providerMessageId).toBe(
        sends.has(doc._id) ? `slow-${doc._id}` : provider.accepted.get(doc._id)?.id,
      );
    }
  });
});

describe("notifications service with the file provider", () => {
  let h: Harness | undefined;

  afterEach(async () => {
    await stopHarness(h);
    h = undefined;
  });

  it("appends one JSON line per message to DATA_DIR/messages.jsonl", async () => {
    h = await startHarness({});
    const harness = h;
    const created = orderCreated("cus-f");
    const refunded = paymentRefunded("cus-f");

    publish(harness, created);
    publish(harness, refunded);
    publish(harness, created, `${created.id}-again`);

    await waitFor("4 sent", async () => (await countWhere(harness, { status: "sent" })) === 4, 10_000);
    const lines = readFileSync(join(harness.dir, MESSAGES_FILE), "utf8").trimEnd().split("\n");
    const written = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    const stored = await docs(harness);
    expect(written).toHaveLength(4);
    expect(written.map((w) => w.id).sort()).toEqual(stored.map((d) => d._id).sort());
    for (const doc of stored) {
      const line = written.find((w) => w.id === doc._id);
      expect(line).toEqual({
        id: doc._id,
        providerMessageId: `file:${doc._id}`,
        channel: doc.channel,
        to: "customer:cus-f",
        ...(doc.channel === "email" ? { subject: doc.subject } : {}),
        body: doc.body,
        at: expect.any(String),
      });
      expect(doc.providerMessageId).toBe(`file:${doc._id}`);
    }
  });
});

describe("notification provider adapters", () => {
  const message: OutboundMessage = {
    id: "ntf-1",
    channel: "email",
    to: "customer:c",
    subject: "Hi",
    body: "Hello",
  };

  describe("http", () => {
    let provider: FakeProvider;

    beforeEach(async () => {
      provider = new FakeProvider();
      await provider.start();
    });

    afterEach(() => provider.stop());

    it("posts the message with its id as Idempotency-Key and returns the provider's id", async () => {
      const client = new HttpNotificationProvider({ url: `${provider.url}/`, timeoutMs: 1000 });

      const first = await client.send(message);
      const again = await client.send(message);

      expect(first).toEqual({ providerMessageId: "msg_1" });
      expect(again).toEqual(first);
      expect(provider.received[0]).toEqual({
        key: "ntf-1",
        body: { channel: "email", to: "customer:c", subject: "Hi", body: "Hello" },
      });
    });

    it.each([
      ["reject" as const, "NOTIFY_REJECTED", false],
      ["fail" as const, "NOTIFY_UNAVAILABLE", true],
      ["rate-limited" as const, "NOTIFY_UNAVAILABLE", true],
      ["no-id" as const, "NOTIFY_UNAVAILABLE", true],
      ["hang" as const, "NOTIFY_UNAVAILABLE", true],
    ])("maps a %s answer to %s (retryable: %s)", async (mode, code, retryable) => {
      provider.mode = mode;
      // a short timeout only where the provider never answers: elsewhere a slow answer is no timeout
      const client = new HttpNotificationProvider({
        url: provider.url,
        timeoutMs: mode === "hang" ? 200 : 5000,
      });

      await expect(client.send(message)).rejects.toMatchObject({ code, retryable });
    });

    it("reports an unreachable provider as unavailable", async () => {
      const client = new HttpNotificationProvider({
        url: `http://127.0.0.1:${await freePort()}`,
        timeoutMs: 1000,
      });

      await expect(client.send(message)).rejects.toMatchObject({
        code: "NOTIFY_UNAVAILABLE",
        message: expect.stringMatching(/unreachable/),
      });
    });
  });

  describe("file", () => {
    let dir: string;

    beforeEach(() => {
      dir = mkdtempSync(join(tmpdir(), "ordermesh-notify-file-"));
    });

    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    it("writes an id once per process, creates the directory, and refuses sends after close", async () => {
      const file = new FileNotificationProvider({ dataDir: join(dir, "nested") });

      const receipts = await Promise.all([
        file.send(message),
        file.send(message),
        file.send({ ...message, id: "ntf-2" }),
      ]);
      await file.close();

      expect(receipts.map((r) => r.providerMessageId)).toEqual(["file:ntf-1", "file:ntf-1", "file:ntf-2"]);
      const lines = readFileSync(join(dir, "nested", MESSAGES_FILE), "utf8")
        .trimEnd()
        .split("\n");
      expect(lines.map((l) => (JSON.parse(l) as { id: string }).id)).toEqual(["ntf-1", "ntf-2"]);
      await expect(file.send({ ...message, id: "ntf-3" })).rejects.toMatchObject({ code: "ADAPTER_CLOSED" });
    });
  });
});
