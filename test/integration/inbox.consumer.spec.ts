/**
 * The idempotent inbox against the embedded store, with the in-process bus and with JetStream (a
 * nats-server this suite starts). Events are published straight onto the bus; the bus is wrapped
 * only to record (and, for the lost-ack case, drop) settlements — deliveries stay the adapter's own.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { connect, type NatsConnection } from "nats";
import type {
  Delivery,
  DeliveryHandler,
  EventBus,
  OutgoingMessage,
  PublishAck,
  Subscription,
  SubscriptionOptions,
} from "../../lib/bus/bus.port";
import { InProcessEventBus } from "../../lib/bus/inprocess.adapter";
import { JetStreamEventBus } from "../../lib/bus/jetstream.adapter";
import { PermanentError, UnavailableError } from "../../lib/errors";
import { DEAD_LETTER_COLLECTION, type DeadLetter } from "../../lib/inbox/dead-letters";
import {
  InboxConsumer,
  durableName,
  type DeliveryInfo,
  type InboxConsumerOptions,
  type InboxHandler,
  type InboxSubscriptions,
} from "../../lib/inbox/inbox.consumer";
import { PROCESSED_COLLECTION, type ProcessedEvent } from "../../lib/inbox/processed-events";
import { OUTBOX_COLLECTION, buildEnvelope, encodeEnvelope, type OutboxRow } from "../../lib/outbox/outbox";
import { EmbeddedDocumentStore } from "../../lib/store/embedded/embedded.adapter";
import type { DocumentStore } from "../../lib/store/store.port";
import { subjectOf, type EventEnvelope, type EventType } from "../../models/events";
import { nats, startNatsServer, type NatsServerHandle } from "../support/nats-server";
import { waitFor } from "../support/wait";
import { paymentFailedEvent } from "../fixtures/events";

// ---------------------------------------------------------------- helpers

const WAIT_MS = 10_000;

/** Node timers start from the loop's cached time, so one may fire up to a few ms "early" by a fresh clock. */
const TIMER_GRANULARITY_MS = 5;

/** Slow work inside a handler (never used to wait for an outcome). */
function work(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Gates still closed; a failed test's afterEach opens them so no handler keeps the store busy. */
const closedGates: (() => void)[] = [];

function gate(): { promise: Promise<void>; open: () => void } {
  let open: () => void = () => undefined;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  closedGates.push(open);
  return { promise, open };
}

type SettleAction = "ack" | "nak" | "term" | "working" | "ack-dropped";

interface Settlement {
  id: string;
  deliveryCount: number;
  action: SettleAction;
  delayMs?: number;
}

/**
 * The real bus with every settlement recorded. `beforeSettle` runs before a settlement reaches the
 * bus (to look at the store at that moment); `dropAck` swallows an ack, as a lost one would be.
 */
class RecordingBus implements EventBus {
  readonly settlements: Settlement[] = [];
  readonly subscribed: SubscriptionOptions[] = [];
  /** Durables whose subscription was asked to stop. */
  readonly stopRequested: string[] = [];
  beforeSettle: ((settlement: Settlement) => Promise<void>) | undefined;
  dropAck: ((delivery: Delivery) => boolean) | undefined;

  constructor(readonly inner: EventBus) {}

  get kind(): EventBus["kind"] {
    return this.inner.kind;
  }
  open(): Promise<void> {
    return this.inner.open();
  }
  publish(message: OutgoingMessage): Promise<PublishAck> {
    return this.inner.publish(message);
  }
  ping(): Promise<void> {
    return this.inner.ping();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
  async subscribe(options: SubscriptionOptions, handler: DeliveryHandler): Promise<Subscription> {
    this.subscribed.push(options);
    const subscription = await this.inner.subscribe(options, (delivery) => handler(this.wrap(delivery)));
    return {
      durable: subscription.durable,
      stop: (timeoutMs?: number) => {
        this.stopRequested.push(subscription.durable);
        return subscription.stop(timeoutMs);
      },
    };
  }

  of(action: SettleAction): Settlement[] {
    return this.settlements.filter((s) => s.action === action);
  }

  private wrap(d: Delivery): Delivery {
    const record = async (action: SettleAction, delayMs?: number): Promise<void> => {
      const settlement: Settlement = {
        id: d.id,
        deliveryCount: d.deliveryCount,
        action,
        ...(delayMs === undefined ? {} : { delayMs }),
      };
      if (action !== "working") await this.beforeSettle?.(settlement);
      this.settlements.push(settlement);
    };
    const dropAck = (): boolean => this.dropAck?.(d) ?? false;
    return {
      get id() {
        return d.id;
      },
      get subject() {
        return d.subject;
      },
      get data() {
        return d.data;
      },
      get headers() {
        return d.headers;
      },
      get deliveryCount() {
        return d.deliveryCount;
      },
      get isLastDelivery() {
        return d.isLastDelivery;
      },
      get settled() {
        return d.settled;
      },
      async ack() {
        if (dropAck()) return record("ack-dropped");
        await record("ack");
        await d.ack();
      },
      async nak(delayMs?: number) {
        await record("nak", delayMs);
        await d.nak(delayMs);
      },
      async term(reason?: string) {
        await record("term");
        await d.term(reason);
      },
      async working() {
        await record("working");
        await d.working();
      },
    };
  }
}

let eventCounter = 0;

/** A valid `order.created` envelope with its own ids. */
function anOrderCreated(traceparent?: string): EventEnvelope<"order.created"> {
  const n = ++eventCounter;
  return buildEnvelope(
    {
      type: "order.created",
      aggregateType: "order",
      aggregateId: `order-${n}`,
      payload: {
        orderId: `order-${n}`,
        customerId: "customer-1",
        items: [{ sku: "SKU-1", quantity: 2, unitPrice: { minor: 500, currency: "USD" } }],
        total: { minor: 1000, currency: "USD" },
        paymentMethod: "pm_card_visa",
        paymentDueAt: "2030-01-01T00:15:00.000Z",
      },
    },
    traceparent,
  );
}

function anOrderPaid(): EventEnvelope<"order.paid"> {
  const n = ++eventCounter;
  return buildEnvelope({
    type: "order.paid",
    aggregateType: "order",
    aggregateId: `order-${n}`,
    payload: {
      orderId: `order-${n}`,
      customerId: "customer-1",
      paymentId: `payment-${n}`,
      total: { minor: 1000, currency: "USD" },
    },
  });
}

const TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

// ---------------------------------------------------------------- adapters

interface BusFixture {
  name: string;
  describe: jest.Describe;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** A new, opened bus on an empty stream. */
  create(): Promise<EventBus>;
}

const inProcess: BusFixture = {
  name: "in-process bus",
  describe,
  start: async () => undefined,
  stop: async () => undefined,
  create: async () => {
    const bus = new InProcessEventBus();
    await bus.open();
    return bus;
  },
};

let server: NatsServerHandle | undefined;
let admin: NatsConnection | undefined;
const jetStream: BusFixture = {
  name: "JetStream",
  describe: nats.describe,
  start: async () => {
    server = await startNatsServer();
    admin = await connect({ servers: server.url });
  },
  stop: async () => {
    await admin?.close();
    await server?.stop();
  },
  create: async () => {
    if (server === undefined || admin === undefined) throw new Error("nats-server not started");
    // every test starts from an empty stream: a new durable replays whatever the stream holds
    const jsm = await admin.jetstreamManager();
    await jsm.streams.delete("EVENTS").catch(() => undefined);
    const bus = new JetStreamEventBus({ servers: server.url, name: "inbox-spec" });
    await bus.open();
    return bus;
  },
};

// ---------------------------------------------------------------- the suite

describe.each([inProcess, jetStream])("inbox consumer on the $name", (fixture) => {
  fixture.describe("with the embedded store", () => {
    let dir: string;
    let store: DocumentStore;
    let bus: RecordingBus;
    let consumerCounter = 0;
    const consumers: InboxConsumer[] = [];
    const publishes: Promise<unknown>[] = [];

    beforeAll(() => fixture.start());
    afterAll(() => fixture.stop());

    beforeEach(async () => {
      dir = mkdtempSync(join(tmpdir(), "ordermesh-inbox-"));
      store = new EmbeddedDocumentStore({ file: join(dir, "consumer.db"), ttlSweepIntervalMs: 25 });
      await store.open();
      bus = new RecordingBus(await fixture.create());
    });

    afterEach(async () => {
      for (const open of closedGates.splice(0)) open();
      await Promise.all(consumers.splice(0).map((c) => c.stop(2_000)));
      await bus.close();
      await Promise.allSettled(publishes.splice(0));
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    });

    /** A started inbox named for this test. */
    async function startInbox(
      subscriptions: InboxSubscriptions,
      options: Partial<InboxConsumerOptions> = {},
    ): Promise<InboxConsumer> {
      const inbox = new InboxConsumer({
        store,
        bus,
        consumer: `inbox${++consumerCounter}`,
        subscriptions,
        ...options,
      });
      consumers.push(inbox);
      await inbox.start();
      return inbox;
    }

    /** Publish bytes on a subject; waits for the stream's ack on JetStream, not for handling. */
    async function sendRaw(subject: string, id: string, data: Uint8Array): Promise<void> {
      const ack = bus.publish({ id, subject, data });
      publishes.push(ack);
      // the in-process bus resolves a publish only once it is handled; it is queued already
      if (bus.kind === "jetstream") await ack;
    }

    function send(envelope: EventEnvelope, messageId: string = envelope.id): Promise<void> {
      return sendRaw(subjectOf(envelope.type), messageId, encodeEnvelope(envelope));
    }

    /** A handler that records its calls and writes one effect per run into the transaction. */
    function recorder<T extends EventType>(
      behaviour: (event: EventEnvelope<T>, info: DeliveryInfo, call: number) => Promise<void> = async () =>
        undefined,
    ) {
      const calls: { eventId: string; info: DeliveryInfo; at: number }[] = [];
      const handler: InboxHandler<T> = async (event, tx, info) => {
        const call = calls.push({ eventId: event.id, info, at: performance.now() });
        await tx.collection("effects").insertOne({ eventId: event.id, deliveryCount: info.deliveryCount });
        await behaviour(event, info, call);
      };
      return { calls, handler };
    }

    function effects(eventId?: string): Promise<number> {
      return store.collection("effects").countDocuments(eventId === undefined ? {} : { eventId });
    }

    function letter(id: string): Promise<DeadLetter | null> {
      return store.collection<DeadLetter>(DEAD_LETTER_COLLECTION).findOne({ _id: id });
    }

    async function letterFor(inbox: InboxConsumer, key: string): Promise<DeadLetter> {
      const id = `${inbox.consumer}:${key}`;
      await waitFor(`dead letter ${id}`, async () => (await letter(id)) !== null, WAIT_MS);
      const found = await letter(id);
      if (found === null) throw new Error(`dead letter ${id} vanished`);
      return found;
    }

    /**
     * Resolves once the bus holds nothing more for `inbox`: every message published so far delivered
     * and settled for good, none waiting for a redelivery, and no handler running. Only a new
     * publish can make the inbox run a handler after this.
     */
    async function busSettled(inbox: InboxConsumer): Promise<void> {
      // the in-process bus resolves a publish once every durable settled it for good
      if (bus.kind === "inprocess") await Promise.all(publishes);
      else {
        if (admin === undefined) throw new Error("nats-server not started");
        const jsm = await admin.jetstreamManager();
        const durables = Object.values((await inbox.stats()).subscriptions).map((s) => s.durable);
        await waitFor(
          "the stream settled for every durable",
          async () => {
            for (const durable of durables) {
              const info = await jsm.consumers.info("EVENTS", durable);
              if (info.num_pending > 0 || info.num_ack_pending > 0) return false;
            }
            return true;
          },
          WAIT_MS,
        );
      }
      await waitFor(
        "no handler running",
        async () => Object.values((await inbox.stats()).subscriptions).every((s) => s.inFlight === 0),
        WAIT_MS,
      );
    }

    function claim(inbox: InboxConsumer, eventId: string): Promise<ProcessedEvent | null> {
      return store
        .collection<ProcessedEvent>(PROCESSED_COLLECTION)
        .findOne({ _id: `${inbox.consumer}:${eventId}` });
    }

    // ------------------------------------------------------------ happy path and duplicates

    it("handles an event once in a transaction with its claim, then acks it", async () => {
      const clock = new Date("2030-01-01T00:00:00.000Z");
      const { calls, handler } = recorder<"order.created">();
      const inbox = await startInbox(
        { "order.created": { handler, maxDeliver: 4, maxInFlight: 2, ackWaitMs: 20_000 } },
        { now: () => clock, processedRetentionMs: 60 * 60 * 1000 },
      );
      const event = anOrderCreated();

      await send(event);

      await waitFor("the ack", () => bus.of("ack").length === 1, WAIT_MS);
      expect(calls).toHaveLength(1);
      expect(calls[0]?.info).toEqual({ deliveryCount: 1, isLastDelivery: false, replay: false });
      expect(await effects(event.id)).toBe(1);
      expect(await claim(inbox, event.id)).toEqual({
        _id: `${inbox.consumer}:${event.id}`,
        consumer: inbox.consumer,
        eventId: event.id,
        type: "order.created",
        processedAt: clock,
        expireAt: new Date("2030-01-01T01:00:00.000Z"),
        deliveryCount: 1,
        replayed: false,
      });
      // one durable per (consumer, type), safe for JetStream, with the subscription's limits
      expect(bus.subscribed).toEqual([
        {
          durable: `${inbox.consumer}_order_created`,
          subject: "events.order.created",
          maxDeliver: 4,
          ackWaitMs: 20_000,
          maxInFlight: 2,
          nakDelayMs: 1_000,
        },
      ]);
      expect(durableName("v2.orders", "payment.captured")).toBe("v2_orders_payment_captured");
      const stats = await inbox.stats();
      expect(stats.subscriptions["order.created"]).toMatchObject({
        processed: 1,
        duplicates: 0,
        retried: 0,
        deadLettered: 0,
      });
      expect(stats.deadLetters).toBe(0);
    });

    it("claims processed events for 14 days by default", async () => {
      const clock = new Date("2030-01-01T00:00:00.000Z");
      const { handler } = recorder<"order.created">();
      const inbox = await startInbox({ "order.created": { handler } }, { now: () => clock });
      const event = anOrderCreated();

      await send(event);

      await waitFor("the claim", async () => (await claim(inbox, event.id)) !== null, WAIT_MS);
      expect((await claim(inbox, event.id))?.expireAt).toEqual(new Date("2030-01-15T00:00:00.000Z"));
    });

    it("forgets claims after the retention, through the TTL index", async () => {
      const { calls, handler } = recorder<"order.created">();
      const inbox = await startInbox({ "order.created": { handler } }, { processedRetentionMs: 50 });
      const event = anOrderCreated();

      await send(event);
      await waitFor("the claim", async () => (await claim(inbox, event.id)) !== null, WAIT_MS);
      await waitFor("the claim to expire", async () => (await claim(inbox, event.id)) === null, WAIT_MS);
      // a copy arriving after the retention is applied again: retention must outlast redelivery
      await send(event, `${event.id}-late-copy`);

      await waitFor("the second run", () => calls.length === 2, WAIT_MS);
      await waitFor("both effects", async () => (await effects(event.id)) === 2, WAIT_MS);
    });

    it("acks a copy of an event processed before without running the handler again", async () => {
      const { calls, handler } = recorder<"order.created">();
      const inbox = await startInbox({ "order.created": { handler } });
      const event = anOrderCreated();

      await send(event);
      await waitFor("the first ack", () => bus.of("ack").length === 1, WAIT_MS);
      // the same event under another message id: past the bus's duplicate window, or re-published
      await send(event, `${event.id}-copy`);

      await waitFor("the second ack", () => bus.of("ack").length === 2, WAIT_MS);
      expect(calls).toHaveLength(1);
      expect(await effects(event.id)).toBe(1);
      expect((await inbox.stats()).subscriptions["order.created"]).toMatchObject({
        processed: 1,
        duplicates: 1,
      });
    });

    it("treats a redelivery after a lost ack as a duplicate", async () => {
      const { calls, handler } = recorder<"order.created">();
      const inbox = await startInbox({ "order.created": { handler, ackWaitMs: 500 } });
      bus.dropAck = (d) => d.deliveryCount === 1;
      const event = anOrderCreated();

      await send(event);

      await waitFor("the redelivery's ack", () => bus.of("ack").length === 1, WAIT_MS);
      expect(bus.of("ack-dropped")).toHaveLength(1);
      expect(bus.of("ack")[0]?.deliveryCount).toBe(2);
      expect(calls).toHaveLength(1);
      expect(await effects(event.id)).toBe(1);
      expect((await inbox.stats()).subscriptions["order.created"]).toMatchObject({
        processed: 1,
        duplicates: 1,
      });
    });

    it("commits one effect when two copies are handled at the same time", async () => {
      const bothIn = gate();
      const entered = new Set<number>();
      const { calls, handler } = recorder<"order.created">(async (_event, _info, call) => {
        entered.add(call);
        if (entered.size >= 2) bothIn.open();
        await bothIn.promise;
      });
      const inbox = await startInbox({ "order.created": { handler, maxInFlight: 4 } });
      const event = anOrderCreated();

      await Promise.all([send(event, `${event.id}-a`), send(event, `${event.id}-b`)]);

      await waitFor("both acks", () => bus.of("ack").length === 2, WAIT_MS);
      // both handlers ran concurrently; only one transaction committed its claim and effect
      expect(calls.length).toBeGreaterThanOrEqual(2);
      expect(await effects(event.id)).toBe(1);
      expect((await inbox.stats()).subscriptions["order.created"]).toMatchObject({
        processed: 1,
        duplicates: 1,
      });
    });

    // ------------------------------------------------------------ failures

    it("dead-letters a permanent failure at once and terminates it, by code, not by class", async () => {
      const fromAnotherNode = Object.assign(new Error("payment already refunded"), {
        code: "PERMANENT_FAILURE",
      });
      const permanent = anOrderCreated();
      const remote = anOrderCreated();
      const { calls, handler } = recorder<"order.created">(async (event) => {
        if (event.id === permanent.id) throw new PermanentError("order is already cancelled");
        throw fromAnotherNode;
      });
      const inbox = await startInbox({ "order.created": { handler, backoffMs: [50] } });

      await send(permanent);
      await send(remote);

      const first = await letterFor(inbox, permanent.id);
      const second = await letterFor(inbox, remote.id);
      expect(first).toMatchObject({
        consumer: inbox.consumer,
        subscription: "order.created",
        messageId: permanent.id,
        subject: "events.order.created",
        eventId: permanent.id,
        envelope: permanent,
        reason: "permanent",
        error: { code: "PERMANENT_FAILURE", message: "order is already cancelled" },
        deliveryCount: 1,
        status: "dead",
        occurrences: 1,
      });
      expect(first.deadAt).toBeInstanceOf(Date);
      expect(second).toMatchObject({ reason: "permanent", error: { code: "PERMANENT_FAILURE" } });
      await waitFor("both terms", () => bus.of("term").length === 2, WAIT_MS);
      await busSettled(inbox);
      expect(calls).toHaveLength(2);
      expect(bus.of("nak")).toHaveLength(0);
      expect(await effects()).toBe(0);
      const stats = await inbox.stats();
      expect(stats.subscriptions["order.created"]).toMatchObject({ deadLettered: 2, retried: 0 });
      expect(stats.deadLetters).toBe(2);
    });

    it("naks a transient failure with the backoff of its attempt, then handles the redelivery once", async () => {
      const { calls, handler } = recorder<"order.created">(async (_event, info) => {
        if (info.deliveryCount < 3) throw new UnavailableError("payment provider unreachable");
      });
      const inbox = await startInbox({ "order.created": { handler, backoffMs: [150, 300] } });
      const event = anOrderCreated();

      await send(event);

      await waitFor("the ack", () => bus.of("ack").length === 1, WAIT_MS);
      expect(bus.of("nak").map((s) => [s.deliveryCount, s.delayMs])).toEqual([
        [1, 150],
        [2, 300],
      ]);
      expect(calls.map((c) => c.info.deliveryCount)).toEqual([1, 2, 3]);
      const [first, second, third] = calls.map((c) => c.at);
      // redelivered no earlier than the delay (a lower bound only: schedulers may be late, and
      // timers count from the event loop's cached millisecond, so allow that much earlier)
      expect((second ?? 0) - (first ?? 0)).toBeGreaterThanOrEqual(150 - TIMER_GRANULARITY_MS);
      expect((third ?? 0) - (second ?? 0)).toBeGreaterThanOrEqual(300 - TIMER_GRANULARITY_MS);
      expect(await effects(event.id)).toBe(1);
      expect((await inbox.stats()).subscriptions["order.created"]).toMatchObject({
        processed: 1,
        retried: 2,
        deadLettered: 0,
      });
    });

    it("dead-letters a failure on the last delivery, committing the letter before the ack", async () => {
      const { calls, handler } = recorder<"order.created">(async () => {
        throw new UnavailableError("payment provider unreachable");
      });
      const inbox = await startInbox({ "order.created": { handler, maxDeliver: 3, backoffMs: [20] } });
      const event = anOrderCreated();
      const letterAtAck: (DeadLetter | null)[] = [];
      bus.beforeSettle = async (s) => {
        if (s.action === "ack") letterAtAck.push(await letter(`${inbox.consumer}:${event.id}`));
      };

      await send(event);

      await waitFor("the final ack", () => bus.of("ack").length === 1, WAIT_MS);
      expect(letterAtAck).toHaveLength(1);
      expect(letterAtAck[0]).toMatchObject({
        reason: "exhausted",
        deliveryCount: 3,
        envelope: event,
        error: { code: "UNAVAILABLE", message: "payment provider unreachable" },
        status: "dead",
      });
      expect(bus.settlements.filter((s) => s.action !== "working").map((s) => s.action)).toEqual([
        "nak",
        "nak",
        "ack",
      ]);
      await busSettled(inbox);
      expect(calls).toHaveLength(3);
      expect(await effects()).toBe(0);
      const stats = await inbox.stats();
      expect(stats.subscriptions["order.created"]).toMatchObject({ retried: 2, deadLettered: 1 });
      expect(stats.deadLetters).toBe(1);
    });

    it("dead-letters a message that is not JSON and terminates it without calling the handler", async () => {
      const { calls, handler } = recorder<"order.created">();
      const inbox = await startInbox({ "order.created": { handler } });

      await sendRaw("events.order.created", "garbled-1", Buffer.from("{not json", "utf8"));

      const parked = await letterFor(inbox, "garbled-1");
      expect(parked).toMatchObject({
        subscription: "order.created",
        messageId: "garbled-1",
        eventId: null,
        raw: "{not json",
        rawEncoding: "utf8",
        reason: "malformed",
        error: { code: "MALFORMED_MESSAGE" },
        deliveryCount: 1,
        status: "dead",
      });
      expect(parked.envelope).toBeUndefined();
      await waitFor("the term", () => bus.of("term").length === 1, WAIT_MS);
      await busSettled(inbox);
      expect(bus.of("nak")).toHaveLength(0);
      expect(calls).toHaveLength(0);
      await expect(inbox.replayDeadLetter(parked._id)).rejects.toMatchObject({
        code: "DEAD_LETTER_NOT_REPLAYABLE",
      });
    });

    it("dead-letters envelopes off the catalog or of another type, without retrying", async () => {
      const { calls, handler } = recorder<"order.created">();
      const inbox = await startInbox({ "order.created": { handler } });
      const incomplete = anOrderCreated();
      const { customerId: _dropped, ...payload } = incomplete.payload;
      const wrongType = anOrderPaid();

      await sendRaw(
        "events.order.created",
        incomplete.id,
        Buffer.from(JSON.stringify({ ...incomplete, payload })),
      );
      await sendRaw("events.order.created", wrongType.id, encodeEnvelope(wrongType));

      const offCatalog = await letterFor(inbox, incomplete.id);
      expect(offCatalog).toMatchObject({
        reason: "invalid",
        error: { code: "INVALID_EVENT" },
        eventId: null,
      });
      expect(offCatalog.error.message).toContain("payload.customerId is required");
      expect(JSON.parse(offCatalog.raw ?? "")).toEqual({ ...incomplete, payload });
      const misrouted = await letterFor(inbox, wrongType.id);
      expect(misrouted).toMatchObject({
        reason: "invalid",
        error: {
          code: "INVALID_EVENT",
          message: "order.paid event delivered to the order.created subscription",
        },
      });
      await waitFor("both terms", () => bus.of("term").length === 2, WAIT_MS);
      await busSettled(inbox);
      expect(bus.of("nak")).toHaveLength(0);
      expect(calls).toHaveLength(0);
      expect((await inbox.stats()).deadLetters).toBe(2);
    });

    // ------------------------------------------------------------ follow-up events

    it("commits follow-up events with the claim, and none from a failed attempt", async () => {
      const committed: number[] = [];
      const outboxAtNak: number[] = [];
      const { handler } = recorder<"order.created">(async () => undefined);
      const inbox = await startInbox(
        {
          "order.created": {
            backoffMs: [50],
            async handler(event, tx, info) {
              await handler(event, tx, info);
              await tx.publish(paymentFailedEvent(event.payload.orderId, event.payload.customerId));
              if (info.deliveryCount === 1) throw new Error("crashed after publishing");
            },
          },
        },
        { onCommitted: (published) => committed.push(published) },
      );
      bus.beforeSettle = async (s) => {
        if (s.action === "nak") outboxAtNak.push(await store.collection(OUTBOX_COLLECTION).countDocuments());
      };
      const event = anOrderCreated(TRACEPARENT);

      await send(event);

      await waitFor("the ack", () => bus.of("ack").length === 1, WAIT_MS);
      expect(outboxAtNak).toEqual([0]);
      const rows = await store.collection<OutboxRow>(OUTBOX_COLLECTION).find({});
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ type: "payment.failed", status: "pending", traceparent: TRACEPARENT });
      expect(committed).toEqual([1]);
      expect(await effects(event.id)).toBe(1);
      expect(await claim(inbox, event.id)).toMatchObject({ deliveryCount: 2 });
    });

    // ------------------------------------------------------------ flow control

    it("runs at most maxInFlight handlers of a subscription at once", async () => {
      const release = gate();
      let running = 0;
      let most = 0;
      const { handler } = recorder<"order.created">(async () => {
        running++;
        most = Math.max(most, running);
        await release.promise;
        running--;
      });
      const inbox = await startInbox({ "order.created": { handler, maxInFlight: 3 } });
      const events = Array.from({ length: 8 }, () => anOrderCreated());

      await Promise.all(events.map((e) => send(e)));

      await waitFor("three handlers running", () => running === 3, WAIT_MS);
      expect((await inbox.stats()).subscriptions["order.created"]?.inFlight).toBe(3);
      release.open();
      await waitFor("every event handled", async () => (await effects()) === 8, WAIT_MS);
      // the bound held over the whole run, including the time the three were blocked
      expect(most).toBe(3);
    });

    it("keeps a handler that outlives the ack wait alive with working(), so it is not redelivered", async () => {
      const { calls, handler } = recorder<"order.created">(async () => {
        // slow work, three times the ack wait
        await work(1_350);
      });
      const inbox = await startInbox({ "order.created": { handler, ackWaitMs: 450 } });
      const event = anOrderCreated();

      await send(event);

      await waitFor("the ack", () => bus.of("ack").length === 1, WAIT_MS);
      expect(bus.of("working").length).toBeGreaterThanOrEqual(3);
      expect(calls).toHaveLength(1);
      // settled for good: acknowledged, and the bus has nothing left to redeliver
      await busSettled(inbox);
      expect(calls).toHaveLength(1);
      expect(bus.settlements.every((s) => s.deliveryCount === 1)).toBe(true);
      expect((await inbox.stats()).subscriptions["order.created"]).toMatchObject({
        processed: 1,
        duplicates: 0,
      });
    });

    it("stops fetching on stop() and lets the handler in flight settle first", async () => {
      const release = gate();
      const { calls, handler } = recorder<"order.created">(async (_event, _info, call) => {
        if (call === 1) await release.promise;
      });
      const inbox = await startInbox({ "order.created": { handler } });
      await send(anOrderCreated());
      await waitFor("the handler", () => calls.length === 1, WAIT_MS);

      let stopped = false;
      let acksWhenStopped = -1;
      const stopping = inbox.stop().then(() => {
        stopped = true;
        acksWhenStopped = bus.of("ack").length;
      });
      // the subscription was asked to stop, and the stop still waits for the handler at the gate
      await waitFor("the subscription asked to stop", () => bus.stopRequested.length === 1, WAIT_MS);
      expect(stopped).toBe(false);
      release.open();
      await stopping;
      expect(acksWhenStopped).toBe(1);

      // a witness consumer on its own durable sees the next event: the stopped one does not
      const witness = recorder<"order.created">();
      await startInbox({ "order.created": { handler: witness.handler } });
      const next = anOrderCreated();
      await send(next);
      await waitFor("the witness handled the next event", () => witness.calls.length >= 1, WAIT_MS);
      expect(witness.calls.map((c) => c.eventId)).toContain(next.id);
      expect(calls).toHaveLength(1);
    });

    // ------------------------------------------------------------ dead-letter handling

    it("replays a dead letter once, under the event's claim, and marks it replayed", async () => {
      let broken = true;
      const { calls, handler } = recorder<"order.created">(async () => {
        if (broken) throw new PermanentError("inventory has no such SKU");
      });
      const inbox = await startInbox({ "order.created": { handler } });
      const event = anOrderCreated();
      await send(event);
      const parked = await letterFor(inbox, event.id);
      broken = false;

      await expect(inbox.replayDeadLetter(parked._id)).resolves.toEqual({
        id: parked._id,
        outcome: "processed",
      });
      await expect(inbox.replayDeadLetter(parked._id)).resolves.toEqual({
        id: parked._id,
        outcome: "already-replayed",
      });

      expect(calls.map((c) => c.info)).toEqual([
        { deliveryCount: 1, isLastDelivery: false, replay: false },
        { deliveryCount: 2, isLastDelivery: true, replay: true },
      ]);
      expect(await effects(event.id)).toBe(1);
      expect(await letter(parked._id)).toMatchObject({ status: "replayed", replayOutcome: "processed" });
      expect((await letter(parked._id))?.replayedAt).toBeInstanceOf(Date);
      expect(await claim(inbox, event.id)).toMatchObject({ replayed: true });
      expect(await inbox.listDeadLetters()).toEqual([]);
      const stats = await inbox.stats();
      expect(stats.deadLetters).toBe(0);
      expect(stats.subscriptions["order.created"]).toMatchObject({ processed: 1, replayed: 1 });
      // a copy arriving after the replay is a duplicate
      await send(event, `${event.id}-after-replay`);
      await waitFor("the copy's ack", () => bus.of("ack").length === 1, WAIT_MS);
      expect(await effects(event.id)).toBe(1);
    });

    it("marks a letter replayed without running the handler when its event was processed meanwhile", async () => {
      let broken = true;
      const { calls, handler } = recorder<"order.created">(async () => {
        if (broken) throw new PermanentError("not yet");
      });
      const inbox = await startInbox({ "order.created": { handler } });
      const event = anOrderCreated();
      await send(event);
      const parked = await letterFor(inbox, event.id);
      broken = false;
      await send(event, `${event.id}-republished`);
      await waitFor("the copy's ack", () => bus.of("ack").length === 1, WAIT_MS);

      await expect(inbox.replayDeadLetter(parked._id)).resolves.toEqual({
        id: parked._id,
        outcome: "already-processed",
      });

      expect(calls).toHaveLength(2);
      expect(await effects(event.id)).toBe(1);
      expect(await letter(parked._id)).toMatchObject({
        status: "replayed",
        replayOutcome: "already-processed",
      });
    });

    it("keeps a letter dead, with the error noted, when its replay fails", async () => {
      const { calls, handler } = recorder<"order.created">(async () => {
        throw new PermanentError("still inconsistent");
      });
      const inbox = await startInbox({ "order.created": { handler } });
      const event = anOrderCreated();
      await send(event);
      const parked = await letterFor(inbox, event.id);

      await expect(inbox.replayDeadLetter(parked._id)).rejects.toMatchObject({ code: "PERMANENT_FAILURE" });

      expect(calls).toHaveLength(2);
      expect(await effects()).toBe(0);
      expect(await claim(inbox, event.id)).toBeNull();
      const after = await letter(parked._id);
      expect(after).toMatchObject({
        status: "dead",
        lastReplayError: { code: "PERMANENT_FAILURE", message: "still inconsistent" },
      });
      expect(after?.lastReplayError?.at).toBeInstanceOf(Date);
    });

    it("lists dead letters by type and status, and discards them", async () => {
      const created = recorder<"order.created">(async () => {
        throw new PermanentError("bad order");
      });
      const paid = recorder<"order.paid">(async () => {
        throw new PermanentError("bad payment");
      });
      const inbox = await startInbox({
        "order.created": { handler: created.handler },
        "order.paid": { handler: paid.handler },
      });
      const orderCreated = anOrderCreated();
      const orderPaid = anOrderPaid();
      await send(orderCreated);
      await send(orderPaid);
      const createdLetter = await letterFor(inbox, orderCreated.id);
      const paidLetter = await letterFor(inbox, orderPaid.id);

      expect((await inbox.listDeadLetters()).map((l) => l._id).sort()).toEqual(
        [createdLetter._id, paidLetter._id].sort(),
      );
      expect((await inbox.listDeadLetters({ type: "order.paid" })).map((l) => l._id)).toEqual([
        paidLetter._id,
      ]);
      expect(await inbox.listDeadLetters({ limit: 1 })).toHaveLength(1);

      await expect(inbox.discardDeadLetter(paidLetter._id)).resolves.toMatchObject({ status: "discarded" });
      await expect(inbox.discardDeadLetter(paidLetter._id)).resolves.toMatchObject({ status: "discarded" });

      expect((await inbox.listDeadLetters()).map((l) => l._id)).toEqual([createdLetter._id]);
      expect((await inbox.listDeadLetters({ status: "discarded" })).map((l) => l._id)).toEqual([
        paidLetter._id,
      ]);
      expect(await inbox.listDeadLetters({ status: "any" })).toHaveLength(2);
      expect((await inbox.stats()).deadLetters).toBe(1);
      expect((await letter(paidLetter._id))?.discardedAt).toBeInstanceOf(Date);
      await expect(inbox.discardDeadLetter(`${inbox.consumer}:nothing`)).rejects.toMatchObject({
        code: "DEAD_LETTER_NOT_FOUND",
      });
      await expect(inbox.replayDeadLetter(`${inbox.consumer}:nothing`)).rejects.toMatchObject({
        code: "DEAD_LETTER_NOT_FOUND",
      });
      expect(created.calls).toHaveLength(1);
      expect(paid.calls).toHaveLength(1);
    });
  });
});
