/**
 * The inbox mixin on a real broker built from moleculer.config (embedded store, in-process bus):
 * a small service declares `subscriptions`; events are published on the broker's own bus.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ServiceBroker, type ServiceSchema } from "moleculer";
import { createBrokerOptions } from "../../moleculer.config";
import { PermanentError } from "../../lib/errors";
import type { EventBus } from "../../lib/bus/bus.port";
import type { DeadLetter } from "../../lib/inbox/dead-letters";
import type { InboxStats, ReplayResult } from "../../lib/inbox/inbox.consumer";
import { loadConfig } from "../../lib/config";
import { infrastructureOf } from "../../lib/infrastructure";
import { OUTBOX_COLLECTION, buildEnvelope, encodeEnvelope } from "../../lib/outbox/outbox";
import type { Doc, DocumentStore } from "../../lib/store/store.port";
import { InboxMixin, type WithSubscriptions } from "../../mixins/inbox.mixin";
import { InfrastructureMixin } from "../../mixins/infrastructure.mixin";
import { subjectOf, type EventEnvelope } from "../../models/events";
import { waitFor } from "../support/wait";
import { paymentFailedEvent } from "../fixtures/events";

let eventCounter = 0;

function anOrderCreated(customerId = "customer-1"): EventEnvelope<"order.created"> {
  const n = ++eventCounter;
  return buildEnvelope({
    type: "order.created",
    aggregateType: "order",
    aggregateId: `order-${n}`,
    payload: {
      orderId: `order-${n}`,
      customerId,
      items: [{ sku: "SKU-1", quantity: 1, unitPrice: { minor: 700, currency: "EUR" } }],
      total: { minor: 700, currency: "EUR" },
      paymentMethod: "pm_card_visa",
      paymentDueAt: "2030-01-01T00:15:00.000Z",
    },
  });
}

describe("inbox mixin", () => {
  let dir: string;
  let broker: ServiceBroker;
  let bus: EventBus;
  let store: DocumentStore;
  let refusing: boolean;
  let wakes: number;

  /** A service with one subscription; refuses events for good while `refusing`. */
  const probe: ServiceSchema & WithSubscriptions = {
    name: "inbox-probe",
    mixins: [InfrastructureMixin({ store: true, bus: true }), InboxMixin()],
    subscriptions: {
      "order.created": {
        maxDeliver: 2,
        backoffMs: [20],
        async handler(event, tx) {
          if (refusing) throw new PermanentError(`${this.name} refuses ${event.payload.orderId}`);
          await tx.collection("seen").insertOne({ eventId: event.id, by: this.name });
          await tx.publish(paymentFailedEvent(event.payload.orderId, event.payload.customerId));
        },
      },
    },
    created() {
      // stands in for the outbox mixin's relay handle
      (this as unknown as { outbox: { wake(): void } }).outbox = { wake: () => (wakes += 1) };
    },
  };

  beforeEach(async () => {
    refusing = false;
    wakes = 0;
    dir = mkdtempSync(join(tmpdir(), "ordermesh-inbox-mixin-"));
    const config = loadConfig({ DATA_DIR: dir, LOG_LEVEL: "fatal", SERVICES: "orders" });
    broker = new ServiceBroker({ ...createBrokerOptions(config), logger: false });
    broker.createService(probe);
    await broker.start();
    bus = await infrastructureOf(broker).bus();
    store = await infrastructureOf(broker).store("inbox-probe");
  });

  afterEach(async () => {
    await broker.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Publish without waiting: the in-process bus resolves a publish only once it is handled. */
  function send(event: EventEnvelope): void {
    bus
      .publish({ id: event.id, subject: subjectOf(event.type), data: encodeEnvelope(event) })
      .catch(() => undefined);
  }

  async function seen(eventId: string): Promise<Doc[]> {
    return store.collection("seen").find({ eventId });
  }

  it("runs declared handlers with the service as `this` and wakes the outbox relay after a commit", async () => {
    const event = anOrderCreated();

    send(event);

    await waitFor("the handler's effect", async () => (await seen(event.id)).length === 1);
    expect((await seen(event.id))[0]?.by).toBe("inbox-probe");
    expect(await store.collection(OUTBOX_COLLECTION).countDocuments({ type: "payment.failed" })).toBe(1);
    expect(wakes).toBe(1);
    const stats = await broker.call<InboxStats, Record<string, never>>("inbox-probe.inboxStats", {});
    expect(stats).toMatchObject({
      consumer: "inbox-probe",
      subscriptions: { "order.created": { durable: "inbox-probe_order_created", processed: 1 } },
      deadLetters: 0,
    });
  });

  it("lists, replays and discards dead letters through its actions", async () => {
    refusing = true;
    const first = anOrderCreated();
    const second = anOrderCreated();
    send(first);
    send(second);
    const list = (params: Record<string, unknown> = {}): Promise<DeadLetter[]> =>
      broker.call("inbox-probe.deadLetters", params);
    await waitFor("two dead letters", async () => (await list()).length === 2);
    refusing = false;

    const replayed = await broker.call<ReplayResult, { id: string }>("inbox-probe.replayDeadLetter", {
      id: `inbox-probe:${first.id}`,
    });
    const discarded = await broker.call<DeadLetter, { id: string }>("inbox-probe.discardDeadLetter", {
      id: `inbox-probe:${second.id}`,
    });

    expect(replayed).toEqual({ id: `inbox-probe:${first.id}`, outcome: "processed" });
    expect(discarded).toMatchObject({ status: "discarded", eventId: second.id });
    expect(await seen(first.id)).toHaveLength(1);
    expect(await seen(second.id)).toHaveLength(0);
    expect(wakes).toBe(1);
    expect(await list()).toEqual([]);
    expect((await list({ status: "any", limit: "10" })).map((l) => l.status).sort()).toEqual([
      "discarded",
      "replayed",
    ]);
    await expect(
      broker.call("inbox-probe.replayDeadLetter", { id: "inbox-probe:nothing" }),
    ).rejects.toMatchObject({ code: 404, type: "DEAD_LETTER_NOT_FOUND" });
    await expect(
      broker.call("inbox-probe.discardDeadLetter", { id: `inbox-probe:${first.id}` }),
    ).rejects.toMatchObject({ code: 409, type: "INVALID_DEAD_LETTER_STATE" });
    await expect(broker.call("inbox-probe.deadLetters", { type: "order.shipped" })).rejects.toMatchObject({
      type: "VALIDATION_ERROR",
    });
  });

  it("stops consuming with the service and resumes from its durable when it starts again", async () => {
    const service = broker.getLocalService("inbox-probe");
    if (service === undefined) throw new Error("inbox-probe missing");
    await broker.destroyService(service);
    const event = anOrderCreated();
    // a witness on a durable of its own: once it has the event, only the probe's durable holds it
    const witnessed: string[] = [];
    await bus.subscribe({ durable: "witness", subject: subjectOf(event.type) }, async (delivery) => {
      witnessed.push(delivery.id);
      await delivery.ack();
    });

    let settled = false;
    const publishing = bus
      .publish({ id: event.id, subject: subjectOf(event.type), data: encodeEnvelope(event) })
      .then(() => (settled = true));
    await waitFor("the witness's delivery", () => witnessed.includes(event.id));
    // the in-process bus resolves a publish once every durable settled it: the probe's has not
    expect(settled).toBe(false);
    expect(await seen(event.id)).toHaveLength(0);
    broker.createService(probe);

    await waitFor("the event, after the restart", async () => (await seen(event.id)).length === 1);
    await publishing;
  });

  it("refuses a subscription to a type outside the event catalog", () => {
    const schema = {
      name: "inbox-typo",
      mixins: [InboxMixin()],
      subscriptions: { "order.shipped": { handler: async () => undefined } },
    } as unknown as ServiceSchema;

    expect(() => broker.createService(schema)).toThrow(/cannot subscribe to "order.shipped"/);
  });
});
