/**
 * Event-bus conformance: the contract of lib/bus/bus.port.ts, run against every adapter
 * (in-process always; JetStream against a nats-server this suite starts on a free port).
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type {
  Delivery,
  EventBus,
  OutgoingMessage,
  PublishAck,
  Subscription,
  SubscriptionOptions,
} from "../../lib/bus/bus.port";
import { InProcessEventBus } from "../../lib/bus/inprocess.adapter";
import { JetStreamEventBus } from "../../lib/bus/jetstream.adapter";
import { createEventBus } from "../../lib/bus";
import { nats, startNatsServer, type NatsServerHandle } from "../support/nats-server";
import { waitFor as waitUntil } from "../support/wait";

// ---------------------------------------------------------------- helpers

/** Poll `condition` every 10 ms until it holds; fail with `what` after `timeoutMs`. */
/** The shared poller, with this suite's argument order and its longer default. */
function waitFor(condition: () => boolean, timeoutMs = 10_000, what = "condition"): Promise<void> {
  return waitUntil(what, condition, timeoutMs);
}

/** A quiet period for negative checks ("nothing more arrives"), never used to synchronise. */
function quietPeriod(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Let queued callbacks and microtasks run. */
async function ticks(n = 20): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve: () => void = () => undefined;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

interface Seen {
  id: string;
  subject: string;
  text: string;
  headers: Record<string, string>;
  deliveryCount: number;
  isLastDelivery: boolean;
  /** performance.now() at arrival. */
  at: number;
  by: string;
}

/** Records every delivery, then lets `settle` decide what to do with it. */
function recorder(by = "sub", settle: (d: Delivery, seen: Seen) => Promise<void> = (d) => d.ack()) {
  const seen: Seen[] = [];
  const handler = async (d: Delivery): Promise<void> => {
    const entry: Seen = {
      id: d.id,
      subject: d.subject,
      text: Buffer.from(d.data).toString("utf8"),
      headers: { ...d.headers },
      deliveryCount: d.deliveryCount,
      isLastDelivery: d.isLastDelivery,
      at: performance.now(),
      by,
    };
    seen.push(entry);
    await settle(d, entry);
  };
  return {
    seen,
    handler,
    ids: (): string[] => seen.map((s) => s.id),
    count: (id: string): number => seen.filter((s) => s.id === id).length,
  };
}

let namespaceCounter = 0;

/** A test's own subjects (`events.<ns>.…`), durable names and message ids, so tests never see each other's messages. */
function scope() {
  const ns = `t${process.pid.toString(36)}${Date.now().toString(36)}${(namespaceCounter++).toString(36)}`;
  return {
    subject: (suffix: string): string => `events.${ns}.${suffix}`,
    all: `events.${ns}.>`,
    durable: (name: string): string => `${ns}_${name}`,
    id: (n: string | number): string => `${ns}-${n}`,
    message: (
      n: string | number,
      suffix = "thing.happened",
      text = `payload ${n}`,
      headers?: Record<string, string>,
    ) =>
      ({
        id: `${ns}-${n}`,
        subject: `events.${ns}.${suffix}`,
        data: Buffer.from(text, "utf8"),
        ...(headers === undefined ? {} : { headers }),
      }) satisfies OutgoingMessage,
  };
}

// ---------------------------------------------------------------- adapters

interface BusFixture {
  name: string;
  kind: EventBus["kind"];
  describe: jest.Describe;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** A new, unopened bus. */
  create(): EventBus;
}

const inProcess: BusFixture = {
  name: "in-process",
  kind: "inprocess",
  describe,
  start: async () => undefined,
  stop: async () => undefined,
  create: () => new InProcessEventBus(),
};

let sharedServer: NatsServerHandle | undefined;
const jetStream: BusFixture = {
  name: "JetStream",
  kind: "jetstream",
  describe: nats.describe,
  start: async () => {
    sharedServer = await startNatsServer();
  },
  stop: async () => {
    await sharedServer?.stop();
    sharedServer = undefined;
  },
  create: () => {
    if (sharedServer === undefined) throw new Error("nats-server not started");
    return new JetStreamEventBus({ servers: sharedServer.url, name: "bus-conformance" });
  },
};

// ---------------------------------------------------------------- the contract

describe.each([inProcess, jetStream])("event bus conformance: $name", (fixture) => {
  fixture.describe("contract", () => {
    const buses: EventBus[] = [];
    let bus: EventBus;

    async function openBus(): Promise<EventBus> {
      const b = fixture.create();
      buses.push(b);
      await b.open();
      return b;
    }

    function subscribe(
      options: SubscriptionOptions,
      handler: (d: Delivery) => Promise<void>,
    ): Promise<Subscription> {
      return bus.subscribe(options, handler);
    }

    beforeAll(() => fixture.start());
    afterAll(() => fixture.stop());
    beforeEach(async () => {
      bus = await openBus();
    });
    afterEach(async () => {
      await Promise.all(buses.splice(0).map((b) => b.close()));
    });

    it("reports its kind and answers ping once open", async () => {
      expect(bus.kind).toBe(fixture.kind);
      await expect(bus.ping()).resolves.toBeUndefined();
    });

    it("delivers a published message to a subscriber that acks it", async () => {
      const s = scope();
      const rec = recorder();
      let settledAfterAck: boolean | undefined;
      await subscribe({ durable: s.durable("a"), subject: s.all }, async (d) => {
        await rec.handler(d);
        settledAfterAck = d.settled;
      });

      const ack = await bus.publish(s.message(1, "order.created", "hello"));

      expect(ack.duplicate).toBe(false);
      expect(typeof ack.seq).toBe("number");
      await waitFor(() => rec.seen.length === 1, 10_000, "the delivery");
      expect(rec.seen[0]).toMatchObject({
        id: s.id(1),
        subject: s.subject("order.created"),
        text: "hello",
        deliveryCount: 1,
        isLastDelivery: false,
      });
      await waitFor(() => settledAfterAck !== undefined, 5_000, "the handler to finish");
      expect(settledAfterAck).toBe(true);
    });

    it("delivers every message to each durable", async () => {
      const s = scope();
      const first = recorder("first");
      const second = recorder("second");
      await subscribe({ durable: s.durable("first"), subject: s.all }, first.handler);
      await subscribe({ durable: s.durable("second"), subject: s.all }, second.handler);
      const ids = Array.from({ length: 12 }, (_, i) => s.id(i));

      await Promise.all(ids.map((_, i) => bus.publish(s.message(i))));

      await waitFor(() => first.seen.length >= 12 && second.seen.length >= 12, 10_000, "both durables");
      expect([...first.ids()].sort()).toEqual([...ids].sort());
      expect([...second.ids()].sort()).toEqual([...ids].sort());
    });

    it("shares one durable's messages between its subscribers", async () => {
      const s = scope();
      const seen: Seen[] = [];
      const one = recorder("one", async (d, e) => {
        seen.push(e);
        await new Promise((resolve) => setTimeout(resolve, 5));
        await d.ack();
      });
      const two = recorder("two", async (d, e) => {
        seen.push(e);
        await new Promise((resolve) => setTimeout(resolve, 5));
        await d.ack();
      });
      await subscribe({ durable: s.durable("shared"), subject: s.all, maxInFlight: 4 }, one.handler);
      await subscribe({ durable: s.durable("shared"), subject: s.all, maxInFlight: 4 }, two.handler);
      const ids = Array.from({ length: 30 }, (_, i) => s.id(i));

      await Promise.all(ids.map((_, i) => bus.publish(s.message(i))));

      await waitFor(() => seen.length >= 30, 10_000, "30 deliveries");
      await quietPeriod(200);
      // no message went to both (nothing was redelivered: every delivery is a first one)
      expect(seen.every((e) => e.deliveryCount === 1)).toBe(true);
      expect(seen.map((e) => e.id).sort()).toEqual([...ids].sort());
    });

    it("filters by subject, with * and > wildcards", async () => {
      const s = scope();
      const exact = recorder();
      const tail = recorder();
      const star = recorder();
      await subscribe({ durable: s.durable("exact"), subject: s.subject("order.created") }, exact.handler);
      await subscribe({ durable: s.durable("tail"), subject: s.subject("order.>") }, tail.handler);
      await subscribe({ durable: s.durable("star"), subject: s.subject("*.created") }, star.handler);

      await bus.publish(s.message("oc", "order.created"));
      await bus.publish(s.message("op", "order.paid"));
      await bus.publish(s.message("pc", "payment.created"));
      await bus.publish(s.message("ocv", "order.created.v2"));
      await bus.publish(s.message("other", "payment.refunded"));
      // matched by all three filters and published last: once each has it, each has the rest
      await bus.publish(s.message("end", "order.created"));

      const ended = (r: ReturnType<typeof recorder>) => () => r.ids().includes(s.id("end"));
      await waitFor(() => ended(exact)() && ended(tail)() && ended(star)(), 10_000, "the last message");
      expect(exact.ids().sort()).toEqual([s.id("end"), s.id("oc")].sort());
      expect(tail.ids().sort()).toEqual([s.id("end"), s.id("oc"), s.id("ocv"), s.id("op")].sort());
      expect(star.ids().sort()).toEqual([s.id("end"), s.id("oc"), s.id("pc")].sort());
    });

    it("round-trips headers", async () => {
      const s = scope();
      const rec = recorder();
      await subscribe({ durable: s.durable("h"), subject: s.all }, rec.handler);
      const headers = {
        traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "x-event-type": "order.created",
      };

      await bus.publish(s.message("with", "order.created", "x", headers));
      await bus.publish(s.message("without", "order.created", "y"));

      await waitFor(() => rec.seen.length === 2, 10_000, "two deliveries");
      expect(rec.seen.find((e) => e.id === s.id("with"))?.headers).toEqual(headers);
      expect(rec.seen.find((e) => e.id === s.id("without"))?.headers).toEqual({});
    });

    it("drops a second publish with the same id as a duplicate", async () => {
      const s = scope();
      const rec = recorder();
      await subscribe({ durable: s.durable("dedupe"), subject: s.all }, rec.handler);

      const first = await bus.publish(s.message(1, "order.created", "original"));
      const again = await bus.publish(s.message(1, "order.created", "changed"));
      await bus.publish(s.message("after"));

      expect(first.duplicate).toBe(false);
      expect(again.duplicate).toBe(true);
      await waitFor(() => rec.ids().includes(s.id("after")), 10_000, "the message published after");
      expect(rec.count(s.id(1))).toBe(1);
      expect(rec.seen.find((e) => e.id === s.id(1))?.text).toBe("original");
    });

    it("redelivers a nak'ed message no earlier than the nak delay", async () => {
      const s = scope();
      const delayMs = 600;
      let nakAt = 0;
      const rec = recorder("sub", async (d) => {
        if (d.deliveryCount === 1) {
          nakAt = performance.now();
          await d.nak(delayMs);
        } else {
          await d.ack();
        }
      });
      await subscribe({ durable: s.durable("nak"), subject: s.all }, rec.handler);

      await bus.publish(s.message(1));

      await waitFor(() => rec.seen.length === 2, 10_000, "the redelivery");
      const redelivery = rec.seen[1];
      expect(redelivery?.deliveryCount).toBe(2);
      // lower bound only (10 ms for clock granularity); late is fine
      expect((redelivery?.at ?? 0) - nakAt).toBeGreaterThanOrEqual(delayMs - 10);
    });

    it("redelivers a message left unsettled after the ack wait", async () => {
      const s = scope();
      const ackWaitMs = 1000;
      const rec = recorder("sub", async (d) => {
        if (d.deliveryCount > 1) await d.ack();
        // first delivery: neither acked nor nak'ed
      });
      await subscribe({ durable: s.durable("ackwait"), subject: s.all, ackWaitMs }, rec.handler);

      const published = bus.publish(s.message(1));

      await waitFor(() => rec.seen.length === 2, 10_000, "the redelivery");
      await published;
      const [first, second] = rec.seen;
      expect(second?.deliveryCount).toBe(2);
      expect((second?.at ?? 0) - (first?.at ?? 0)).toBeGreaterThanOrEqual(ackWaitMs * 0.9);
    });

    it("does not redeliver while a long handler reports working()", async () => {
      const s = scope();
      const ackWaitMs = 1000;
      let deliveriesWhenDone = -1;
      const rec = recorder("sub", async (d) => {
        if (d.deliveryCount > 1) return d.ack();
        // 2 s of work, reporting progress every 250 ms: twice the ack wait
        for (let i = 0; i < 8; i++) {
          await new Promise((resolve) => setTimeout(resolve, 250));
          await d.working();
        }
        deliveriesWhenDone = rec.seen.length;
        await d.ack();
      });
      await subscribe({ durable: s.durable("working"), subject: s.all, ackWaitMs }, rec.handler);

      const published = bus.publish(s.message(1));

      await waitFor(() => deliveriesWhenDone >= 0, 10_000, "the long handler");
      await published;
      // without working() it would have been redelivered at 1 s, while the handler still ran
      expect(deliveriesWhenDone).toBe(1);
      expect(rec.seen).toHaveLength(1);
    });

    it("never redelivers a terminated message", async () => {
      const s = scope();
      const ackWaitMs = 1000;
      const rec = recorder("sub", (d) => d.term("malformed"));
      await subscribe({ durable: s.durable("term"), subject: s.all, ackWaitMs }, rec.handler);

      await bus.publish(s.message(1));

      await waitFor(() => rec.seen.length === 1, 10_000, "the delivery");
      // an unsettled message would come back after the ack wait
      await quietPeriod(ackWaitMs + 500);
      expect(rec.seen).toHaveLength(1);
    });

    it("stops after maxDeliver deliveries and flags the last one", async () => {
      const s = scope();
      const rec = recorder("sub", (d) => d.nak(0));
      await subscribe({ durable: s.durable("maxdeliver"), subject: s.all, maxDeliver: 3 }, rec.handler);

      const published = bus.publish(s.message(1));

      await waitFor(() => rec.seen.length >= 3, 10_000, "three deliveries");
      await published;
      // an immediate nak would bring a fourth delivery at once
      await quietPeriod(500);
      expect(rec.seen.map((e) => e.deliveryCount)).toEqual([1, 2, 3]);
      expect(rec.seen.map((e) => e.isLastDelivery)).toEqual([false, false, true]);
    });

    it("naks a message whose handler throws, with the subscription's delay", async () => {
      const s = scope();
      const nakDelayMs = 300;
      let thrownAt = 0;
      const rec = recorder("sub", async (d) => {
        if (d.deliveryCount === 1) {
          thrownAt = performance.now();
          throw new Error("handler failure");
        }
        await d.ack();
      });
      await subscribe({ durable: s.durable("throws"), subject: s.all, nakDelayMs }, rec.handler);

      const published = bus.publish(s.message(1));

      await waitFor(() => rec.seen.length === 2, 10_000, "the redelivery");
      await published;
      expect(rec.seen[1]?.deliveryCount).toBe(2);
      expect((rec.seen[1]?.at ?? 0) - thrownAt).toBeGreaterThanOrEqual(nakDelayMs - 10);
    });

    it("never runs more than maxInFlight handlers at once", async () => {
      const s = scope();
      let running = 0;
      let highest = 0;
      const rec = recorder("sub", async (d) => {
        running++;
        highest = Math.max(highest, running);
        await new Promise((resolve) => setTimeout(resolve, 20));
        running--;
        await d.ack();
      });
      const ids = Array.from({ length: 24 }, (_, i) => s.id(i));
      // stored before anyone subscribes, so the subscriber finds a backlog
      await Promise.all(ids.map((_, i) => bus.publish(s.message(i))));

      await subscribe({ durable: s.durable("bounded"), subject: s.all, maxInFlight: 3 }, rec.handler);

      await waitFor(() => rec.seen.length >= 24, 10_000, "the backlog");
      expect(highest).toBeLessThanOrEqual(3);
      // and the bound is used, not serialised
      expect(highest).toBeGreaterThan(1);
      expect(rec.ids().sort()).toEqual([...ids].sort());
    });

    it("holds further deliveries back while maxInFlight deliveries are unsettled", async () => {
      const s = scope();
      const held: Delivery[] = [];
      const rec = recorder("sub", async (d) => {
        held.push(d); // returns without settling: the delivery stays pending until the ack wait
      });
      await Promise.all(Array.from({ length: 8 }, (_, i) => bus.publish(s.message(i))));

      await subscribe({ durable: s.durable("pending"), subject: s.all, maxInFlight: 3 }, rec.handler);

      await waitFor(() => held.length >= 3, 10_000, "the first three");
      await quietPeriod(300);
      expect(rec.seen).toHaveLength(3);
      await Promise.all(held.splice(0).map((d) => d.ack()));
      await waitFor(() => rec.seen.length >= 6, 10_000, "the next three");
      await quietPeriod(300);
      expect(rec.seen).toHaveLength(6);
      await Promise.all(held.splice(0).map((d) => d.ack()));
      await waitFor(() => rec.seen.length >= 8, 10_000, "the last two");
      expect(new Set(rec.ids()).size).toBe(8);
    });

    it("delivers to a durable created after the publish", async () => {
      const s = scope();
      await bus.publish(s.message("early"));
      const rec = recorder();

      await subscribe({ durable: s.durable("late"), subject: s.all }, rec.handler);

      await waitFor(() => rec.seen.length === 1, 10_000, "the earlier message");
      expect(rec.seen[0]?.id).toBe(s.id("early"));
    });

    it("keeps a stopped durable's place: messages published meanwhile arrive after it subscribes again", async () => {
      const s = scope();
      const before = recorder("before");
      const sub = await subscribe({ durable: s.durable("resume"), subject: s.all }, before.handler);
      await bus.publish(s.message(1));
      await waitFor(() => before.seen.length === 1, 10_000, "the first message");

      await sub.stop();
      // in-process: these resolve only once the durable settles them, so they are not awaited yet
      const pending = [bus.publish(s.message(2)), bus.publish(s.message(3))];
      await quietPeriod(300);
      expect(before.ids()).toEqual([s.id(1)]);

      const after = recorder("after");
      await subscribe({ durable: s.durable("resume"), subject: s.all }, after.handler);
      await Promise.all(pending);

      await waitFor(() => after.seen.length >= 2, 10_000, "the messages published while stopped");
      expect(after.ids().sort()).toEqual([s.id(2), s.id(3)].sort());
      expect(after.seen.every((e) => e.deliveryCount === 1)).toBe(true);
    });

    it("refuses publishes and subscriptions once closed", async () => {
      const s = scope();
      await bus.close();
      await bus.close(); // idempotent

      await expect(bus.publish(s.message(1))).rejects.toMatchObject({ code: "ADAPTER_CLOSED" });
      await expect(
        bus.subscribe({ durable: s.durable("x"), subject: s.all }, async () => undefined),
      ).rejects.toMatchObject({
        code: "ADAPTER_CLOSED",
      });
      await expect(bus.ping()).rejects.toMatchObject({ code: "UNAVAILABLE" });
    });

    it("rejects a message without an id or with a wildcard subject", async () => {
      const s = scope();

      await expect(bus.publish({ ...s.message(1), id: "" })).rejects.toMatchObject({
        code: "PUBLISH_FAILED",
      });
      await expect(bus.publish({ ...s.message(2), subject: s.all })).rejects.toMatchObject({
        code: "PUBLISH_FAILED",
      });
      await expect(
        bus.subscribe({ durable: "has.dots", subject: s.all }, async (d) => d.ack()),
      ).rejects.toMatchObject({ code: "INVALID_SUBSCRIPTION" });
    });

    it("rejects a second subscriber asking the same durable for another subject", async () => {
      const s = scope();
      await subscribe({ durable: s.durable("one"), subject: s.subject("a.>") }, async (d) => d.ack());

      await expect(
        bus.subscribe({ durable: s.durable("one"), subject: s.subject("b.>") }, async (d) => d.ack()),
      ).rejects.toMatchObject({ code: "INVALID_SUBSCRIPTION" });
    });

    it("never reports success for a publish it could not confirm when closed mid-flight", async () => {
      const s = scope();
      const acked = new Set<string>();
      await subscribe({ durable: s.durable("close"), subject: s.all }, async (d) => {
        // in-process: settle some, leave the rest to the close
        if (Number(d.id.split("-").pop()) % 2 === 0) {
          acked.add(d.id);
          await d.ack();
        }
      });
      const outcomes = Array.from({ length: 40 }, (_, i) =>
        bus.publish(s.message(i)).then(
          (ack): { id: string; ok: true; ack: PublishAck } => ({ id: s.id(i), ok: true, ack }),
          (err: { code?: string }) => ({ id: s.id(i), ok: false as const, code: err.code }),
        ),
      );

      await bus.close();
      const settled = await Promise.all(outcomes);

      for (const outcome of settled) {
        if (!outcome.ok) expect(["PUBLISH_FAILED", "ADAPTER_CLOSED"]).toContain(outcome.code);
      }
      const confirmed = settled.filter((o) => o.ok).map((o) => o.id);
      if (fixture.kind === "inprocess") {
        // a confirmed publish is one every subscription settled
        expect(confirmed.every((id) => acked.has(id))).toBe(true);
        expect(settled.some((o) => !o.ok)).toBe(true);
      } else {
        // a confirmed publish is in the stream: a new durable reads it back
        const reader = await openBus();
        const rec = recorder();
        await reader.subscribe({ durable: s.durable("reader"), subject: s.all }, rec.handler);
        await waitFor(
          () => confirmed.every((id) => rec.ids().includes(id)),
          10_000,
          "every confirmed message",
        );
      }
    });
  });
});

// ---------------------------------------------------------------- in-process only

describe("in-process event bus", () => {
  const buses: InProcessEventBus[] = [];
  async function openBus(
    options?: ConstructorParameters<typeof InProcessEventBus>[0],
  ): Promise<InProcessEventBus> {
    const b = new InProcessEventBus(options);
    buses.push(b);
    await b.open();
    return b;
  }
  afterEach(async () => {
    await Promise.all(buses.splice(0).map((b) => b.close()));
  });

  it("resolves a publish only after the subscriber acked the message", async () => {
    const bus = await openBus();
    const s = scope();
    const events: string[] = [];
    const release = deferred();
    await bus.subscribe({ durable: s.durable("a"), subject: s.all }, async (d) => {
      events.push("delivered");
      await release.promise;
      events.push("acking");
      await d.ack();
    });

    const published = bus.publish(s.message(1)).then(() => events.push("publish resolved"));
    await waitFor(() => events.includes("delivered"), 5_000, "the delivery");
    await ticks();
    expect(events).toEqual(["delivered"]);
    release.resolve();
    await published;

    expect(events).toEqual(["delivered", "acking", "publish resolved"]);
  });

  it("waits for every durable that existed at publish time, including a stopped one", async () => {
    const bus = await openBus();
    const s = scope();
    const fast = recorder("fast");
    await bus.subscribe({ durable: s.durable("fast"), subject: s.all }, fast.handler);
    const stopped = await bus.subscribe({ durable: s.durable("slow"), subject: s.all }, async (d) => d.ack());
    await stopped.stop();
    let resolved = false;

    const published = bus.publish(s.message(1)).then(() => {
      resolved = true;
    });
    await waitFor(() => fast.seen.length === 1, 5_000, "the running durable");
    await ticks();
    expect(resolved).toBe(false);
    const resumed = recorder("slow");
    await bus.subscribe({ durable: s.durable("slow"), subject: s.all }, resumed.handler);
    await published;

    expect(resumed.ids()).toEqual([s.id(1)]);
  });

  it("resolves a duplicate publish with duplicate: true once the original settles", async () => {
    const bus = await openBus();
    const s = scope();
    const release = deferred();
    const rec = recorder("sub", async (d) => {
      await release.promise;
      await d.ack();
    });
    await bus.subscribe({ durable: s.durable("a"), subject: s.all }, rec.handler);
    const order: string[] = [];

    const original = bus.publish(s.message(1)).then((ack) => {
      order.push("original");
      return ack;
    });
    const duplicate = bus.publish(s.message(1)).then((ack) => {
      order.push("duplicate");
      return ack;
    });
    await waitFor(() => rec.seen.length === 1, 5_000, "the delivery");
    await ticks();
    expect(order).toEqual([]);
    release.resolve();

    await expect(original).resolves.toMatchObject({ duplicate: false });
    await expect(duplicate).resolves.toMatchObject({ duplicate: true });
    expect(rec.seen).toHaveLength(1);
  });

  it("treats the same id as new once the duplicate window has passed", async () => {
    const bus = await openBus({ duplicateWindowMs: 50 });
    const s = scope();
    const rec = recorder();
    await bus.subscribe({ durable: s.durable("a"), subject: s.all }, rec.handler);

    await bus.publish(s.message(1));
    await quietPeriod(80);
    const again = await bus.publish(s.message(1));

    expect(again.duplicate).toBe(false);
    expect(rec.count(s.id(1))).toBe(2);
  });

  it("retains at most retainMax messages for durables created later", async () => {
    const bus = await openBus({ retainMax: 2 });
    const s = scope();
    for (let i = 1; i <= 3; i++) await bus.publish(s.message(i));
    const rec = recorder();

    await bus.subscribe({ durable: s.durable("late"), subject: s.all }, rec.handler);
    await waitFor(() => rec.seen.length >= 2, 5_000, "the retained messages");
    await ticks();

    expect(rec.ids()).toEqual([s.id(2), s.id(3)]);
  });

  it("drops retained messages older than retainMs", async () => {
    const bus = await openBus({ retainMs: 50 });
    const s = scope();
    await bus.publish(s.message("old"));
    await quietPeriod(80);
    await bus.publish(s.message("new"));
    const rec = recorder();

    await bus.subscribe({ durable: s.durable("late"), subject: s.all }, rec.handler);
    await waitFor(() => rec.seen.length >= 1, 5_000, "the retained message");
    await ticks();

    expect(rec.ids()).toEqual([s.id("new")]);
  });

  it("rejects, when closed, the publishes no subscription settled", async () => {
    const bus = await openBus();
    const s = scope();
    const rec = recorder("sub", async () => undefined);
    await bus.subscribe({ durable: s.durable("a"), subject: s.all }, rec.handler);
    const published = bus.publish(s.message(1));
    await waitFor(() => rec.seen.length === 1, 5_000, "the delivery");

    await bus.close();

    await expect(published).rejects.toMatchObject({ code: "PUBLISH_FAILED" });
  });
});

// ---------------------------------------------------------------- createEventBus

describe("createEventBus", () => {
  it("gives every caller in the process the same in-process bus until the last one closes it", async () => {
    const s = scope();
    const orders = createEventBus({});
    const payments = createEventBus({});
    await orders.open();
    await payments.open();
    expect(orders.kind).toBe("inprocess");
    const rec = recorder();
    await payments.subscribe({ durable: s.durable("payments"), subject: s.all }, rec.handler);

    await orders.publish(s.message(1));
    expect(rec.ids()).toEqual([s.id(1)]);

    await orders.close();
    await expect(orders.publish(s.message(2))).rejects.toMatchObject({ code: "ADAPTER_CLOSED" });
    await payments.ping();
    await payments.close();

    // the last handle closed the shared bus: a new caller gets a fresh one
    const next = createEventBus({});
    await next.open();
    const fresh = recorder();
    await next.subscribe({ durable: s.durable("payments"), subject: s.all }, fresh.handler);
    await next.publish(s.message(3));
    expect(fresh.ids()).toEqual([s.id(3)]);
    await next.close();
  });

  it("stops a closing handle's own subscriptions and rejects its unsettled publishes", async () => {
    const s = scope();
    const consumer = createEventBus({});
    const producer = createEventBus({});
    await consumer.open();
    await producer.open();
    const rec = recorder("sub", async () => undefined);
    await consumer.subscribe({ durable: s.durable("c"), subject: s.all }, rec.handler);
    const published = producer.publish(s.message(1));
    await waitFor(() => rec.seen.length === 1, 5_000, "the delivery");

    await producer.close();

    await expect(published).rejects.toMatchObject({ code: "PUBLISH_FAILED" });
    await consumer.close();
  });

  it("chooses JetStream when a NATS URL is given", () => {
    const bus = createEventBus({ natsUrl: "nats://127.0.0.1:1" });
    expect(bus.kind).toBe("jetstream");
  });
});

// ---------------------------------------------------------------- JetStream only

nats.describe("JetStream event bus under server failure", () => {
  let server: NatsServerHandle;
  const buses: EventBus[] = [];
  async function openBus(
    options: Partial<ConstructorParameters<typeof JetStreamEventBus>[0]> = {},
  ): Promise<EventBus> {
    const b = new JetStreamEventBus({ servers: server.url, ...options });
    buses.push(b);
    await b.open();
    return b;
  }

  beforeAll(async () => {
    server = await startNatsServer();
  });
  afterAll(async () => {
    await server.stop();
  });
  afterEach(async () => {
    await Promise.all(buses.splice(0).map((b) => b.close()));
    // a test may leave the server down
    if (!server.running) await server.restart();
  });

  it("loses no confirmed publish across a kill -9 and restart, and the consumer resumes by itself", async () => {
    const s = scope();
    const publisher = await openBus({ publishTimeoutMs: 1_000, publishRetryForMs: 20_000 });
    const consumer = await openBus();
    const delivered = new Set<string>();
    await consumer.subscribe(
      { durable: s.durable("survivor"), subject: s.all, maxInFlight: 16 },
      async (d) => {
        delivered.add(d.id);
        await d.ack();
      },
    );

    const outcomes: { id: string; startedAt: number; settledAt: number; ok: boolean; code?: string }[] = [];
    let stop = false;
    let next = 0;
    const publishers = Array.from({ length: 4 }, async () => {
      while (!stop) {
        const id = next++;
        const startedAt = Date.now();
        try {
          await publisher.publish(s.message(id));
          outcomes.push({ id: s.id(id), startedAt, settledAt: Date.now(), ok: true });
        } catch (err) {
          const code = (err as { code?: string }).code;
          outcomes.push({ id: s.id(id), startedAt, settledAt: Date.now(), ok: false, code });
        }
      }
    });
    const confirmed = (): number => outcomes.filter((o) => o.ok).length;

    await waitFor(() => confirmed() >= 100 && delivered.size >= 50, 20_000, "traffic before the kill");
    await server.kill();
    await quietPeriod(1_000); // the outage itself
    const restartingAt = Date.now();
    await server.restart();
    const confirmedAtRestart = confirmed();
    await waitFor(() => confirmed() >= confirmedAtRestart + 100, 30_000, "traffic after the restart");
    stop = true;
    await Promise.all(publishers);

    const ok = outcomes.filter((o) => o.ok).map((o) => o.id);
    // every publish that resolved is delivered: none lost, none falsely confirmed
    await waitFor(() => ok.every((id) => delivered.has(id)), 30_000, "every confirmed message to arrive");
    // the outage was really crossed: publishes pending while the server was down were confirmed
    // only after it came back (started before the restart began, settled after it)
    const acrossOutage = outcomes.filter(
      (o) => o.ok && o.startedAt < restartingAt && o.settledAt > restartingAt,
    );
    expect(acrossOutage.length).toBeGreaterThan(0);
    for (const failed of outcomes.filter((o) => !o.ok)) expect(failed.code).toBe("PUBLISH_FAILED");
  }, 90_000);

  async function restartEmpty(): Promise<void> {
    await server.kill();
    rmSync(join(server.storeDir, "jetstream"), { recursive: true, force: true });
    await server.restart();
  }

  it("recreates its stream for a publish when the server comes back with an empty store", async () => {
    const s = scope();
    const publisher = await openBus({ publishTimeoutMs: 500, publishRetryForMs: 20_000 });
    await publisher.publish(s.message(1));

    await restartEmpty();
    const ack = await publisher.publish(s.message(2));

    expect(ack).toEqual({ duplicate: false, seq: 1 }); // the first message of a new stream
  }, 40_000);

  it("recreates its consumer when the server comes back with an empty store", async () => {
    const s = scope();
    const publisher = await openBus({ publishTimeoutMs: 500, publishRetryForMs: 20_000 });
    const consumer = await openBus();
    const rec = recorder();
    await consumer.subscribe({ durable: s.durable("phoenix"), subject: s.all }, rec.handler);
    await publisher.publish(s.message(1));
    await waitFor(() => rec.seen.length === 1, 10_000, "the first message");

    await restartEmpty();
    await publisher.publish(s.message(2));

    // only the consumer's own pull loop can bring its durable back
    await waitFor(() => rec.ids().includes(s.id(2)), 20_000, "the message published after the restart");
  }, 40_000);

  it("rejects a publish with PUBLISH_FAILED when no PubAck comes within publishRetryForMs", async () => {
    const s = scope();
    const bus = await openBus({ publishTimeoutMs: 300, publishRetryForMs: 1_500 });
    await server.kill();
    const started = Date.now();

    await expect(bus.publish(s.message(1))).rejects.toMatchObject({ code: "PUBLISH_FAILED" });

    expect(Date.now() - started).toBeGreaterThanOrEqual(1_400);
    await expect(bus.ping()).rejects.toMatchObject({ code: "UNAVAILABLE" });
  }, 30_000);

  it("refuses at once a publish to a subject no stream captures", async () => {
    const bus = await openBus({ publishRetryForMs: 20_000 });

    await expect(
      bus.publish({ id: "outside-1", subject: "audit.order.created", data: Buffer.from("x") }),
    ).rejects.toMatchObject({ code: "PUBLISH_FAILED" });
  }, 5_000);

  it("fails to open with UNAVAILABLE when no server answers", async () => {
    await server.kill();
    const bus = new JetStreamEventBus({ servers: server.url, publishTimeoutMs: 500 });
    buses.push(bus);

    await expect(bus.open()).rejects.toMatchObject({ code: "UNAVAILABLE" });
  });
});
