/**
 * The outbox writer and relay against the embedded store, with the in-process bus and with JetStream
 * (a nats-server this suite starts). A recording subscriber on the bus sees what consumers would see;
 * a probe in front of the bus sees what the relay sends and can make publishes fail.
 * Crashes and a bus outage: test/fault/outbox-*.spec.ts.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { EventBus } from "../../lib/bus/bus.port";
import { ManualClock } from "../../lib/clock";
import {
  OUTBOX_COLLECTION,
  envelopeOf,
  runOutboxTransaction,
  type NewEvent,
  type OutboxRow,
} from "../../lib/outbox/outbox";
import { OutboxRelay, type OutboxRelayOptions } from "../../lib/outbox/outbox.relay";
import { EmbeddedDocumentStore, type EmbeddedStoreOptions } from "../../lib/store/embedded/embedded.adapter";
import type { Doc, DocumentStore } from "../../lib/store/store.port";
import { InProcessEventBus } from "../../lib/bus/inprocess.adapter";
import {
  ProbeBus,
  commitOne,
  countByStatus,
  inProcessFixture,
  jetStreamFixture,
  orderPaid,
  outboxRows,
  recordDeliveries,
} from "../support/outbox";
import { waitFor } from "../support/wait";

const TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

describe.each([inProcessFixture(), jetStreamFixture()])("outbox relay with the $name", (fixture) => {
  fixture.describe("writer and relay", () => {
    let dir: string;
    let counter = 0;
    const relays: OutboxRelay[] = [];
    const buses: EventBus[] = [];
    const stores: DocumentStore[] = [];

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), "ordermesh-outbox-"));
      await fixture.start();
    });
    afterAll(async () => {
      await fixture.stop();
      rmSync(dir, { recursive: true, force: true });
    });
    afterEach(async () => {
      await Promise.all(relays.splice(0).map((r) => r.stop()));
      await Promise.all(buses.splice(0).map((b) => b.close()));
      await Promise.all(stores.splice(0).map((s) => s.close()));
    });

    async function openStore(options: Partial<EmbeddedStoreOptions> = {}): Promise<DocumentStore> {
      const store = new EmbeddedDocumentStore({ file: join(dir, `store-${counter++}.db`), ...options });
      await store.open();
      stores.push(store);
      return store;
    }

    /** A probe over a fresh bus, plus a recording subscriber on that bus. */
    async function openBus(): Promise<{
      probe: ProbeBus;
      recorder: Awaited<ReturnType<typeof recordDeliveries>>;
    }> {
      const bus = fixture.create();
      await bus.open();
      buses.push(bus);
      return { probe: new ProbeBus(bus), recorder: await recordDeliveries(bus) };
    }

    function relay(
      options: Pick<OutboxRelayOptions, "store" | "bus"> & Partial<OutboxRelayOptions>,
    ): OutboxRelay {
      const r = new OutboxRelay({ owner: `relay-${counter++}`, pollIntervalMs: 50, ...options });
      relays.push(r);
      return r;
    }

    /** Deliveries of `ids` only (JetStream replays earlier tests' messages to a new durable). */
    function deliveredOf(recorder: { ids(): string[] }, ids: Iterable<string>): string[] {
      const wanted = new Set(ids);
      return recorder.ids().filter((id) => wanted.has(id));
    }

    async function allPublished(store: DocumentStore, n: number, timeoutMs = 10_000): Promise<void> {
      await waitFor(
        `${n} rows published`,
        async () => (await countByStatus(store, "published")) === n,
        timeoutMs,
      );
    }

    it("rolls back the state change and the outbox row together when the body throws after tx.publish", async () => {
      const store = await openStore();
      const { probe, recorder } = await openBus();
      await relay({ store, bus: probe }).start();

      await expect(
        runOutboxTransaction(store, async (tx) => {
          await tx.collection("orders").insertOne({ _id: "ord-rolled-back", status: "PAID" });
          await tx.publish(orderPaid("rolled-back"));
          throw new Error("handler failed after publishing");
        }),
      ).rejects.toThrow("handler failed after publishing");
      const kept = await commitOne(store, "kept");

      expect(await store.collection("orders").countDocuments({ _id: "ord-rolled-back" })).toBe(0);
      const rows = await outboxRows(store);
      expect([...rows.keys()]).toEqual([kept]);
      await waitFor("the kept event", () => recorder.ids().includes(kept));
      // the rolled-back event never reached the bus, before or after the one that committed
      expect(probe.calls).toEqual([kept]);
    });

    it("refuses an event that does not fit the catalog with INVALID_EVENT and writes nothing", async () => {
      const store = await openStore();
      const badPayload = {
        ...orderPaid(1),
        payload: { orderId: "", customerId: "cus-1" },
      } as unknown as NewEvent;
      const badType = { ...orderPaid(2), type: "order.shipped" } as unknown as NewEvent;
      const badVersion = { ...orderPaid(3), version: 7 };

      for (const event of [badPayload, badType, badVersion]) {
        await expect(
          runOutboxTransaction(store, async (tx) => {
            await tx.collection("orders").insertOne({ _id: `ord-${event.aggregateId}`, status: "PAID" });
            await tx.publish(event);
          }),
        ).rejects.toMatchObject({ code: "INVALID_EVENT", name: "InvalidEventError" });
      }

      expect(await store.collection("orders").countDocuments({})).toBe(0);
      expect(await store.collection(OUTBOX_COLLECTION).countDocuments({})).toBe(0);
    });

    it("publishes rows in occurredAt order and marks them published", async () => {
      const store = await openStore();
      const { probe, recorder } = await openBus();
      // committed in a shuffled order, each with its own occurredAt: the relay must sort, not follow commits
      const base = Date.now() - 60_000;
      const offsets = Array.from({ length: 40 }, (_, i) => i).sort(() => Math.random() - 0.5);
      for (const offset of offsets) {
        await commitOne(store, `o${offset}`, {
          occurredAt: new Date(base + offset * 10),
          ...(offset % 3 === 0 ? { traceparent: TRACEPARENT } : {}),
        });
      }
      const expected = [...(await outboxRows(store)).values()]
        .sort((a, b) => a.occurredAt.getTime() - b.occurredAt.getTime())
        .map((r) => r._id);
      const retentionMs = 3_600_000;

      await relay({ store, bus: probe, batchSize: 7, publishConcurrency: 4, retentionMs }).start();

      await allPublished(store, 40);
      expect(probe.calls).toEqual(expected);
      await waitFor("40 deliveries", () => deliveredOf(recorder, expected).length >= 40);
      expect(deliveredOf(recorder, expected)).toEqual(expected);

      const rows = await outboxRows(store);
      for (const id of expected) {
        const row = rows.get(id) as OutboxRow;
        expect(row.status).toBe("published");
        expect(row.publishedAt).toBeInstanceOf(Date);
        expect(row.purgeAt?.getTime()).toBe((row.publishedAt?.getTime() ?? NaN) + retentionMs);
        expect(row).not.toHaveProperty("leaseOwner");
        expect(row).not.toHaveProperty("leaseUntil");
        expect(row.attempts).toBe(0);
        // what consumers get is the row's envelope, with its traceparent as a header too
        const delivered = recorder.seen.find((s) => s.id === id);
        expect(delivered?.subject).toBe("events.order.paid");
        expect(delivered?.envelope).toEqual(JSON.parse(JSON.stringify(envelopeOf(row))));
        if (row.traceparent === undefined) expect(delivered?.headers).not.toHaveProperty("traceparent");
        else expect(delivered?.headers.traceparent).toBe(TRACEPARENT);
      }
    });

    it("publishes right after a commit that woke it, long before the next poll", async () => {
      const store = await openStore();
      const { probe, recorder } = await openBus();
      const first = await commitOne(store, "first");
      const r = relay({ store, bus: probe, pollIntervalMs: 600_000 });
      await r.start();
      // its first claim took the one row; it now sleeps until woken or for 10 minutes
      await allPublished(store, 1);

      const ids: string[] = [];
      for (let i = 0; i < 5; i++) ids.push(await commitOne(store, `w${i}`, { afterCommit: () => r.wake() }));

      await waitFor("5 deliveries", () => deliveredOf(recorder, ids).length === 5, 5_000);
      await allPublished(store, 6);
      expect(probe.calls).toEqual([first, ...ids]);
    });

    it("parks a poison row as dead at maxAttempts while the rows behind it are published; replay publishes it", async () => {
      const store = await openStore();
      const { probe, recorder } = await openBus();
      const poison = await commitOne(store, "poison");
      const behind: string[] = [];
      for (let i = 0; i < 20; i++) behind.push(await commitOne(store, `behind${i}`));
      probe.rejectIds.add(poison);
      const r = relay({
        store,
        bus: probe,
        maxAttempts: 4,
        backoffBaseMs: 5,
        backoffMaxMs: 20,
        batchSize: 5,
      });
      await r.start();

      await waitFor("the rows behind it", () => deliveredOf(recorder, behind).length === 20);
      await waitFor("the poison row to die", async () => (await countByStatus(store, "dead")) === 1);
      const dead = (await outboxRows(store)).get(poison) as OutboxRow;
      expect(dead).toMatchObject({ status: "dead", attempts: 4 });
      expect(dead.lastError).toContain(`rejecting ${poison}`);
      expect(dead.deadAt).toBeInstanceOf(Date);
      expect(dead).not.toHaveProperty("purgeAt");
      expect(dead).not.toHaveProperty("leaseOwner");
      expect(probe.failures.get(poison)).toBe(4);
      const stats = await r.stats();
      expect(stats).toMatchObject({ pending: 0, dead: 1, oldestPendingAgeMs: null });
      expect(stats.counters).toEqual({ published: 20, publishFailures: 4, dead: 1 });
      expect((await r.listDead(10)).map((row) => row._id)).toEqual([poison]);
      expect(recorder.ids()).not.toContain(poison);

      probe.rejectIds.clear();
      expect(await r.replayDead(poison)).toBe(true);
      await waitFor("the replayed row", () => recorder.ids().includes(poison));
      await allPublished(store, 21);
      expect(await r.replayDead(poison)).toBe(false);
      expect(await r.replayDead("no-such-row")).toBe(false);
      expect((await outboxRows(store)).get(poison)).toMatchObject({ status: "published", attempts: 0 });
    });

    it("records attempts, lastError and a backoff delay on a failed publish, then retries", async () => {
      const store = await openStore();
      const { probe, recorder } = await openBus();
      const id = await commitOne(store, "flaky");
      probe.rejectIds.add(id);
      // the jitter draws the middle of its range: a delay of exactly half the ceiling
      const random = jest.spyOn(Math, "random").mockReturnValue(0.5);
      const r = relay({ store, bus: probe, backoffBaseMs: 60_000, backoffMaxMs: 60_000 });
      const before = Date.now();
      await r.start();

      await waitFor(
        "the first failure",
        async () => ((await outboxRows(store)).get(id)?.attempts ?? 0) === 1,
      );
      random.mockRestore();
      const row = (await outboxRows(store)).get(id) as OutboxRow;
      expect(row.status).toBe("pending");
      expect(row.lastError).toContain("rejecting");
      expect(row).not.toHaveProperty("leaseOwner");
      expect(row.nextAttemptAt.getTime()).toBeGreaterThanOrEqual(before + 30_000);
      expect(row.nextAttemptAt.getTime()).toBeLessThanOrEqual(Date.now() + 30_000);
      expect(probe.failures.get(id)).toBe(1);

      // not due yet: a later relay with a clock past nextAttemptAt publishes it
      await r.stop();
      probe.rejectIds.clear();
      await relay({ store, bus: probe, clock: new ManualClock(Date.now() + 61_000) }).start();
      await waitFor("the retry", () => recorder.ids().includes(id));
    });

    it("two relays on one store publish a fast stream, never the same row at once", async () => {
      const store = await openStore();
      const { probe, recorder } = await openBus();
      // The first publishes are held until five are in flight at once. One relay runs at most four,
      // so the fifth proves the other relay claimed rows of its own while the first was full.
      // After that, publishes take a moment, so a relay fills up and leaves rows to the other.
      let waiting = 0;
      let openGate: () => void = () => undefined;
      const bothBusy = new Promise<void>((resolve) => (openGate = resolve));
      probe.gate = async () => {
        if (++waiting >= 5) openGate();
        await bothBusy;
        await new Promise((resolve) => setTimeout(resolve, 1));
      };
      const options = { store, bus: probe, batchSize: 10, publishConcurrency: 4 };
      const first = relay(options);
      const second = relay(options);
      await Promise.all([first.start(), second.start()]);

      const ids: string[] = [];
      await Promise.all(
        Array.from({ length: 4 }, async (_, producer) => {
          for (let i = 0; i < 150; i++) {
            ids.push(
              await commitOne(store, `p${producer}-${i}`, {
                // both race for every commit, each going first half of the time
                afterCommit: () => {
                  for (const r of i % 2 === 0 ? [first, second] : [second, first]) r.wake();
                },
              }),
            );
          }
        }),
      );

      await allPublished(store, 600, 20_000);
      expect(probe.overlaps).toEqual([]);
      // no lease expired and nothing failed: each row went out exactly once
      expect(probe.calls).toHaveLength(600);
      expect(new Set(probe.calls).size).toBe(600);
      await waitFor("600 deliveries", () => deliveredOf(recorder, ids).length >= 600, 10_000);
      expect(new Set(deliveredOf(recorder, ids)).size).toBe(600);
      const [a, b] = [(await first.stats()).counters.published, (await second.stats()).counters.published];
      expect(a + b).toBe(600);
      expect(a).toBeGreaterThan(0);
      expect(b).toBeGreaterThan(0);
    });

    it("keeps a slow publish's row leased past leaseMs while the rows behind it flow", async () => {
      const store = await openStore();
      const { probe, recorder } = await openBus();
      const slow = await commitOne(store, "slow");
      const behind: string[] = [];
      for (let i = 0; i < 30; i++) behind.push(await commitOne(store, `fast${i}`));
      // one consumer takes its time with one event (the in-process bus holds the publish until it settles)
      let release: () => void = () => undefined;
      const released = new Promise<void>((resolve) => (release = resolve));
      probe.gate = (message) => (message.id === slow ? released : Promise.resolve());
      const leaseMs = 300;
      // both relays read one clock, moved by the test (committed rows are due at its start)
      const clock = new ManualClock();
      const first = relay({ store, bus: probe, leaseMs, batchSize: 5, clock });
      await first.start();
      await waitFor("the rows behind the slow one", () => deliveredOf(recorder, behind).length === 30);

      // the slow publish outlives four lease periods, in half-lease steps; after each step the lease
      // is renewed, and a second relay that looks for due rows finds nothing to take
      const second = relay({ store, bus: probe, leaseMs, clock, pollIntervalMs: 600_000 });
      await second.start();
      const slowRow = async (): Promise<OutboxRow> => (await outboxRows(store)).get(slow) as OutboxRow;
      for (let step = 0; step < 8; step++) {
        clock.advance(leaseMs / 2);
        await waitFor(
          "the slow row's lease renewed on the moved clock",
          async () => (await slowRow()).leaseUntil?.getTime() === clock.now() + leaseMs,
        );
        second.wake();
        await second.idle();
      }
      expect(probe.calls.filter((id) => id === slow)).toHaveLength(1);
      const row = await slowRow();
      expect(row).toMatchObject({ status: "pending", leaseOwner: first.owner });
      expect(row.leaseUntil?.getTime()).toBeGreaterThan(clock.now());

      release();
      await allPublished(store, 31);
      expect(probe.calls.filter((id) => id === slow)).toHaveLength(1);
      expect(probe.overlaps).toEqual([]);
    });

    it("takes over a row whose lease expired, and leaves one under a live lease alone", async () => {
      const store = await openStore();
      const { probe, recorder } = await openBus();
      const leased = await commitOne(store, "leased");
      const free = await commitOne(store, "free");
      // another relay crashed holding `leased` for 30 s from now
      await store
        .collection(OUTBOX_COLLECTION)
        .updateOne(
          { _id: leased },
          { $set: { leaseOwner: "crashed-relay", leaseUntil: new Date(Date.now() + 30_000) } },
        );

      const clock = new ManualClock();
      const r = relay({ store, bus: probe, clock });
      await r.start();
      await waitFor("the free row", () => recorder.ids().includes(free));
      // settled: the relay's latest claim found nothing more it may take
      await r.idle();
      expect(probe.calls).not.toContain(leased);
      expect((await outboxRows(store)).get(leased)?.status).toBe("pending");

      clock.advance(31_000); // the lease has run out
      r.wake();
      await waitFor("the taken-over row", () => recorder.ids().includes(leased));
      await allPublished(store, 2);
      expect((await outboxRows(store)).get(leased)).not.toHaveProperty("leaseOwner");
    });

    it("stop() hands back unsent rows at once, records what was acknowledged, and never marks an unacknowledged row", async () => {
      const store = await openStore();
      const { probe, recorder } = await openBus();
      const ids: string[] = [];
      for (let i = 0; i < 60; i++) ids.push(await commitOne(store, `s${i}`));
      // every publish waits for the gate; the first one waits for ever
      let open: () => void = () => undefined;
      const gate = new Promise<void>((resolve) => (open = resolve));
      const stuck = ids[0] as string;
      probe.gate = (message) => (message.id === stuck ? new Promise<void>(() => undefined) : gate);
      const first = relay({ store, bus: probe, batchSize: 20, publishConcurrency: 4, stopTimeoutMs: 300 });
      await first.start();
      await waitFor("4 publishes in flight", () => probe.calls.length === 4);

      const stopped = first.stop();
      open(); // the three others are acknowledged while stop() waits
      await stopped;

      const rows = await outboxRows(store);
      const published = ids.filter((id) => rows.get(id)?.status === "published");
      expect(published).toEqual(ids.slice(1, 4));
      // the stuck publish may still land: its lease stays until it expires; everything else is free
      expect(rows.get(stuck)).toMatchObject({ status: "pending", leaseOwner: first.owner });
      const leasedByFirst = [...rows.values()].filter((r) => r.leaseOwner === first.owner).map((r) => r._id);
      expect(leasedByFirst).toEqual([stuck]);
      expect([...rows.values()].every((r) => r.attempts === 0)).toBe(true);

      probe.gate = undefined;
      const second = relay({ store, bus: probe, batchSize: 20 });
      await second.start();
      // without the hand-back these would wait 30 s for the leases to expire
      await allPublished(store, 59, 5_000);
      expect((await outboxRows(store)).get(stuck)?.status).toBe("pending");
      const delivered = deliveredOf(recorder, ids);
      expect(new Set(delivered).size).toBe(59);
      expect(delivered).not.toContain(stuck);
    });

    it("gives published rows a purgeAt and purges them after the retention; dead rows stay", async () => {
      const store = await openStore({ ttlSweepIntervalMs: 50 });
      const { probe } = await openBus();
      const dead = await commitOne(store, "dead");
      const published: string[] = [];
      for (let i = 0; i < 5; i++) published.push(await commitOne(store, `r${i}`));
      probe.rejectIds.add(dead);
      const r = relay({
        store,
        bus: probe,
        retentionMs: 300,
        maxAttempts: 2,
        backoffBaseMs: 1,
        backoffMaxMs: 2,
      });
      await r.start();

      await waitFor("the dead row", async () => (await countByStatus(store, "dead")) === 1);
      await waitFor("the published rows to be purged", async () => {
        const rows = await outboxRows(store);
        return published.every((id) => !rows.has(id));
      });
      const rows = await outboxRows(store);
      expect([...rows.keys()]).toEqual([dead]);
      expect(rows.get(dead)).not.toHaveProperty("purgeAt");
      expect((await r.stats()).counters.published).toBe(5);
    });

    it("reports pending rows, the age of the oldest and what it published in the last minute", async () => {
      const store = await openStore();
      const { probe } = await openBus();
      const at = Date.now();
      await commitOne(store, "old", { occurredAt: new Date(at - 5_000) });
      await commitOne(store, "new", { occurredAt: new Date(at - 1_000) });
      const clock = new ManualClock(at);
      const r = relay({ store, bus: probe, clock });

      expect(await r.stats()).toEqual({
        pending: 2,
        oldestPendingAgeMs: 5_000,
        dead: 0,
        publishedLastMinute: 0,
        counters: { published: 0, publishFailures: 0, dead: 0 },
      });
      await r.start();
      await allPublished(store, 2);
      expect(await r.stats()).toMatchObject({ pending: 0, oldestPendingAgeMs: null, publishedLastMinute: 2 });
      clock.set(at + 61_000);
      expect(await r.stats()).toMatchObject({ publishedLastMinute: 0, counters: { published: 2 } });
    });
  });
});

describe("outbox relay with a store that reports inserts (MongoDB change streams)", () => {
  it("wakes on inserts made elsewhere, long before its next poll, and stops watching when it stops", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ordermesh-outbox-watch-"));
    const embedded = new EmbeddedDocumentStore({ file: join(dir, "s.db") });
    await embedded.open();
    let onInsert: (() => void) | undefined;
    let watched: string | undefined;
    let unwatched = 0;
    // the embedded engine with the optional watch of the port, driven by the test
    const store: DocumentStore = {
      kind: embedded.kind,
      open: () => embedded.open(),
      collection: <T extends Doc = Doc>(name: string) => embedded.collection<T>(name),
      createIndex: (collection, spec) => embedded.createIndex(collection, spec),
      transaction: (fn, options) => embedded.transaction(fn, options),
      ping: () => embedded.ping(),
      close: () => embedded.close(),
      async watchInserts(collection: string, callback: () => void) {
        watched = collection;
        onInsert = callback;
        return async () => {
          unwatched += 1;
        };
      },
    };
    const bus = new InProcessEventBus();
    await bus.open();
    const recorder = await recordDeliveries(bus);
    const seeded = await commitOne(embedded, "seeded");
    const relay = new OutboxRelay({ store, bus, owner: "watcher", pollIntervalMs: 600_000 });
    await relay.start();
    try {
      expect(watched).toBe(OUTBOX_COLLECTION);
      await waitFor(
        "the seeded row published by the start-up pass",
        () => recorder.ids().includes(seeded),
        5000,
      );
      await relay.idle();
      // a commit by "another instance": nothing wakes this relay but the store's notice
      const id = await commitOne(embedded, "elsewhere");
      // settled, not woken: had anything woken it, its claim would have found the row
      await relay.idle();
      expect(recorder.ids()).not.toContain(id);
      onInsert?.();
      await waitFor("the row published after the insert notice", () => recorder.ids().includes(id), 5000);
    } finally {
      await relay.stop();
      await bus.close();
      await embedded.close();
      rmSync(dir, { recursive: true, force: true });
    }
    expect(unwatched).toBe(1);
  });
});
