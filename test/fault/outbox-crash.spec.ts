/**
 * The outbox across `kill -9`, with the in-process bus and with JetStream:
 * - a producer killed mid-stream, with no relay running: a relay started later on the same store
 *   file publishes every event it committed (JetStream: each exactly once in the stream);
 * - a relay killed after the bus acknowledged an event and before it marked the row: the row is
 *   still pending, the next relay publishes it again, and JetStream's duplicate window drops the copy;
 * - both crashes in a row, then a relay and an inbox consumer: every event's side effect happens
 *   exactly once in the consumer's store.
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ManualClock } from "../../lib/clock";
import type { EventBus } from "../../lib/bus/bus.port";
import { InboxConsumer } from "../../lib/inbox/inbox.consumer";
import type { OutboxRow } from "../../lib/outbox/outbox";
import { OUTBOX_RELAY_DEFAULTS, OutboxRelay } from "../../lib/outbox/outbox.relay";
import { EmbeddedDocumentStore } from "../../lib/store/embedded/embedded.adapter";
import {
  ProbeBus,
  commitOne,
  countByStatus,
  inProcessFixture,
  jetStreamFixture,
  outboxRows,
  recordDeliveries,
  streamMessageIds,
} from "../support/outbox";
import { waitFor } from "../support/wait";

const CHILD = join(__dirname, "..", "..", "dist", "test", "children", "outbox-crash.child.js");

interface Child {
  /** Second words of the lines starting with `word`. */
  lines(word: string): string[];
  /** Resolves when `n` lines start with `word` (rejects if the child exits first). */
  printed(word: string, n: number): Promise<void>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(): Promise<void>;
}

function startChild(args: string[]): Child {
  const child: ChildProcessWithoutNullStreams = spawn(process.execPath, [CHILD, ...args]);
  const seen = new Map<string, string[]>();
  let buffered = "";
  let stderr = "";
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("close", (code, signal) => resolve({ code, signal })),
  );
  let gone = false;
  void exited.then(() => (gone = true));
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    buffered += chunk;
    const lines = buffered.split("\n");
    buffered = lines.pop() ?? "";
    for (const line of lines) {
      const [word = "", value = ""] = line.split(" ");
      const list = seen.get(word) ?? [];
      list.push(value);
      seen.set(word, list);
    }
  });
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const lines = (word: string): string[] => seen.get(word) ?? [];
  return {
    lines,
    async printed(word, n) {
      await waitFor(
        `${n} "${word}" lines from the child`,
        () => {
          if (lines(word).length >= n) return true;
          if (gone) throw new Error(`child exited before printing ${n} "${word}" lines; stderr: ${stderr}`);
          return false;
        },
        20_000,
      );
    },
    exited,
    async kill() {
      child.kill("SIGKILL");
      await exited;
    },
  };
}

describe.each([inProcessFixture(), jetStreamFixture()])("outbox under kill -9 with the $name", (fixture) => {
  fixture.describe("crash", () => {
    let dir: string;
    let counter = 0;
    const cleanup: (() => Promise<void>)[] = [];

    beforeAll(async () => {
      if (!existsSync(CHILD)) throw new Error(`${CHILD} is missing: run \`npm run build\` first`);
      dir = mkdtempSync(join(tmpdir(), "ordermesh-outbox-crash-"));
      await fixture.start();
    });
    afterAll(async () => {
      await fixture.stop();
      rmSync(dir, { recursive: true, force: true });
    });
    afterEach(async () => {
      for (const step of cleanup.splice(0).reverse()) await step();
    });

    async function openStore(file: string): Promise<EmbeddedDocumentStore> {
      const store = new EmbeddedDocumentStore({ file });
      await store.open();
      cleanup.push(() => store.close());
      return store;
    }

    async function openBus(): Promise<EventBus> {
      const bus = fixture.create();
      await bus.open();
      cleanup.push(() => bus.close());
      return bus;
    }

    async function startRelay(relay: OutboxRelay): Promise<OutboxRelay> {
      await relay.start();
      cleanup.push(() => relay.stop());
      return relay;
    }

    it("publishes every event a producer committed before it was killed", async () => {
      const file = join(dir, `produce-${counter++}.db`);
      const producer = startChild(["produce", file]);
      await producer.printed("ready", 1);
      await producer.printed("committed", 200 + Math.floor(Math.random() * 200));
      await producer.kill();
      const reported = producer.lines("committed");

      const store = await openStore(file);
      const rows = await outboxRows(store);
      // every reported commit is there, and each event came with its state change (and vice versa)
      expect(reported.filter((id) => !rows.has(id))).toEqual([]);
      const orders = await store.collection("orders").find({});
      expect(orders.map((o) => o._id).sort()).toEqual([...rows.values()].map((r) => r.aggregateId).sort());
      expect([...rows.values()].every((r) => r.status === "pending")).toBe(true);

      const bus = await openBus();
      const recorder = await recordDeliveries(bus);
      await startRelay(new OutboxRelay({ store, bus, owner: "after-crash", pollIntervalMs: 50 }));

      await waitFor(
        `${rows.size} rows published`,
        async () => (await countByStatus(store, "published")) === rows.size,
        20_000,
      );
      await waitFor(
        `${rows.size} deliveries`,
        () => recorder.ids().filter((id) => rows.has(id)).length >= rows.size,
      );
      expect(new Set(recorder.ids().filter((id) => rows.has(id)))).toEqual(new Set(rows.keys()));
      const server = fixture.server();
      if (server !== undefined) {
        const inStream = (await streamMessageIds(server.url)).filter((id) => rows.has(id));
        expect(inStream).toHaveLength(rows.size);
        expect(new Set(inStream)).toEqual(new Set(rows.keys()));
      }
    });

    it("publishes again a row whose relay died between the bus's ack and the mark", async () => {
      const file = join(dir, `relay-${counter++}.db`);
      const seeding = await openStore(file);
      const ids: string[] = [];
      for (let i = 0; i < 30; i++) ids.push(await commitOne(seeding, `k${counter}-${i}`));
      await seeding.close();

      const server = fixture.server();
      const relayChild = startChild(["relay", file, server?.url ?? "-", "5"]);
      const { signal } = await relayChild.exited;
      expect(signal).toBe("SIGKILL");
      const [acked] = relayChild.lines("acked");
      if (acked === undefined) throw new Error("the child died without reporting the acknowledged event");
      expect(ids).toContain(acked);

      const store = await openStore(file);
      const before = await outboxRows(store);
      // the bus had it, the store did not hear of it: pending, still leased by the dead relay
      expect(before.get(acked)).toMatchObject({ status: "pending", attempts: 0 });
      expect(before.get(acked)?.leaseOwner).toMatch(/^crash-child-/);

      const bus = await openBus();
      const recorder = await recordDeliveries(bus);
      const probe = new ProbeBus(bus);
      // a clock past the dead relay's leases, instead of waiting for them to run out
      const later = new ManualClock(Date.now() + OUTBOX_RELAY_DEFAULTS.leaseMs + 1_000);
      await startRelay(
        new OutboxRelay({ store, bus: probe, owner: "restarted", pollIntervalMs: 50, clock: later }),
      );

      await waitFor(
        "30 rows published",
        async () => (await countByStatus(store, "published")) === 30,
        20_000,
      );
      expect(probe.calls).toContain(acked);
      const rows = await outboxRows(store);
      expect(rows.get(acked)).toMatchObject({ status: "published" } satisfies Partial<OutboxRow>);
      await waitFor(
        "30 deliveries",
        () => new Set(recorder.ids().filter((id) => ids.includes(id))).size === 30,
      );
      if (server !== undefined) {
        // the stream already had it: the re-publish was dropped by the duplicate window
        expect(probe.acks.get(acked)?.map((a) => a.duplicate)).toEqual([true]);
        const inStream = (await streamMessageIds(server.url)).filter((id) => ids.includes(id));
        expect(inStream.filter((id) => id === acked)).toHaveLength(1);
        expect(inStream).toHaveLength(30);
        expect(new Set(inStream)).toEqual(new Set(ids));
      } else {
        // the in-process bus died with the child: the consumers here get it from the second publish
        expect(probe.acks.get(acked)?.map((a) => a.duplicate)).toEqual([false]);
        expect(recorder.ids()).toContain(acked);
      }
    });

    it("after a producer crash and a relay crash, each event's side effect happens exactly once in the consumer", async () => {
      const file = join(dir, `once-${counter++}.db`);
      const producer = startChild(["produce", file]);
      await producer.printed("ready", 1);
      await producer.printed("committed", 100 + Math.floor(Math.random() * 100));
      await producer.kill();

      const server = fixture.server();
      const relayChild = startChild(["relay", file, server?.url ?? "-", "7"]);
      expect((await relayChild.exited).signal).toBe("SIGKILL");
      const [acked] = relayChild.lines("acked");
      if (acked === undefined)
        throw new Error("the relay child died without reporting the acknowledged event");

      const store = await openStore(file);
      const rows = await outboxRows(store);
      expect(rows.get(acked)?.status).toBe("pending");
      const consumerStore = await openStore(join(dir, `once-consumer-${counter++}.db`));
      const bus = await openBus();
      const consumer = new InboxConsumer({
        store: consumerStore,
        bus,
        consumer: "effects",
        subscriptions: {
          "order.paid": {
            async handler(event, tx) {
              const { orderId } = event.payload as { orderId: string };
              await tx
                .collection("effects")
                .updateOne({ _id: orderId }, { $inc: { count: 1 } }, { upsert: true });
            },
          },
        },
      });
      await consumer.start();
      cleanup.push(() => consumer.stop());
      // a clock past the dead relay's leases, instead of waiting for them to run out
      const later = new ManualClock(Date.now() + OUTBOX_RELAY_DEFAULTS.leaseMs + 1_000);
      await startRelay(new OutboxRelay({ store, bus, owner: "restarted", pollIntervalMs: 50, clock: later }));

      // the stream may also hold earlier tests' events, which this new durable receives too: look at ours
      const ours = new Set([...rows.values()].map((r) => r.aggregateId));
      const effectsOfOurs = async (): Promise<{ _id: string; count: number }[]> =>
        (await consumerStore.collection<{ _id: string; count: number }>("effects").find({})).filter((e) =>
          ours.has(e._id),
        );
      await waitFor(
        `${ours.size} side effects`,
        async () => (await effectsOfOurs()).length === ours.size,
        30_000,
      );
      await waitFor(
        "every row published",
        async () => (await countByStatus(store, "published")) === rows.size,
        20_000,
      );
      const effects = await effectsOfOurs();
      expect(effects.filter((e) => e.count !== 1)).toEqual([]);
      expect(new Set(effects.map((e) => e._id))).toEqual(ours);
      const stats = (await consumer.stats()).subscriptions["order.paid"];
      expect(stats?.processed).toBeGreaterThanOrEqual(rows.size);
      expect(stats?.deadLettered).toBe(0);
    });
  });
});
