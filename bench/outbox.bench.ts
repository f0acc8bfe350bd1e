/**
 * Outbox end to end: events produced in 1-row transactions (a state row + its event) on an embedded
 * store, relayed to JetStream by the outbox relay, consumed by the inbox (InboxConsumer: envelope
 * validation, a processed-event claim + the handler's state write in one transaction of a second
 * embedded store, then ack). Measured at full speed and paced at 1,000 events/s: events/s end to end and
 * commit → consumed latency. Two same-run references: the baseline publishes straight to JetStream
 * (no store, no outbox) and consumes with a plain ack, its latency running from the publish call;
 * the dual write does the same state writes as the outbox pipeline but publishes after its commit
 * (not atomic) and consumes without a processed-event claim (no dedupe).
 *
 *   npm run bench -- outbox        (or: node dist/bench/outbox.bench.js)
 *
 * Sizes: BENCH_OUTBOX_EVENTS (full speed, default 20000), BENCH_OUTBOX_PACED_SECONDS (default 10),
 * BENCH_OUTBOX_PRODUCERS (concurrent producing transactions at full speed, default 64),
 * BENCH_OUTBOX_ROUNDS (default 3; the median round is reported).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "nats";
import { subjectOf, type EventEnvelope } from "../models/events";
import type { EventBus, Subscription } from "../lib/bus/bus.port";
import { JetStreamEventBus } from "../lib/bus/jetstream.adapter";
import { startNatsProcess } from "../lib/local-servers/nats-process";
import {
  buildEnvelope,
  decodeEnvelope,
  encodeEnvelope,
  runOutboxTransaction,
  type NewEvent,
} from "../lib/outbox/outbox";
import { InboxConsumer } from "../lib/inbox/inbox.consumer";
import { orderPaidEvent } from "../test/fixtures/events";
import { OutboxRelay } from "../lib/outbox/outbox.relay";
import { EmbeddedDocumentStore } from "../lib/store/embedded/embedded.adapter";
import { nowMs, percentile, printReport, progress, throughput, type Measurement } from "./report";

const EVENTS = intFromEnv("BENCH_OUTBOX_EVENTS", 20_000);
const PACED_SECONDS = intFromEnv("BENCH_OUTBOX_PACED_SECONDS", 10);
const PRODUCERS = intFromEnv("BENCH_OUTBOX_PRODUCERS", 64);
const ROUNDS = intFromEnv("BENCH_OUTBOX_ROUNDS", 3);
const PACED_RATE = 1_000;
const CONSUMER_IN_FLIGHT = 64;

const GOALS = { eventsPerSecond: 3_000, pacedP99Ms: 50, maxCost: 0.35 };

function intFromEnv(name: string, fallback: number): number {
  const value = Number(process.env[name]);
  return Number.isInteger(value) && value > 0 ? value : fallback;
}

const event = (n: string): NewEvent<"order.paid"> => orderPaidEvent(n);

/** How events enter a pipeline: as fast as `PRODUCERS` concurrent producers go, or at a fixed rate. */
type Load = { kind: "full"; count: number } | { kind: "paced"; rate: number; seconds: number };

function loadName(load: Load): string {
  return load.kind === "full" ? `full speed, ${PRODUCERS} producers` : `paced ${load.rate}/s`;
}

/**
 * Runs `produce(i)` for every event of `load` (each resolving with the event id once it counts as
 * produced) and records when each id was produced.
 */
async function drive(
  load: Load,
  produce: (i: number) => Promise<string>,
  producedAt: Map<string, number>,
): Promise<void> {
  const once = async (i: number): Promise<void> => {
    const id = await produce(i);
    producedAt.set(id, nowMs());
  };
  if (load.kind === "full") {
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < load.count) await once(next++);
    };
    await Promise.all(Array.from({ length: PRODUCERS }, lane));
    return;
  }
  const total = load.rate * load.seconds;
  const started = nowMs();
  const running: Promise<void>[] = [];
  let issued = 0;
  while (issued < total) {
    // start every event due by now; the timer's lateness is caught up at once, never skipped
    const due = Math.min(total, Math.floor(((nowMs() - started) * load.rate) / 1000) + 1);
    while (issued < due) running.push(once(issued++));
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  await Promise.all(running);
}

function eventsOf(load: Load): number {
  return load.kind === "full" ? load.count : load.rate * load.seconds;
}

/** A consumer that records when each event was consumed; `done` resolves at `expected` distinct events. */
function consumption(expected: number): {
  consumedAt: Map<string, number>;
  record(id: string): void;
  done: Promise<void>;
} {
  const consumedAt = new Map<string, number>();
  let finish: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (finish = resolve));
  return {
    consumedAt,
    record(id) {
      if (consumedAt.has(id)) return;
      consumedAt.set(id, nowMs());
      if (consumedAt.size === expected) finish();
    },
    done,
  };
}

function measurement(
  name: string,
  started: number,
  producedAt: Map<string, number>,
  consumedAt: Map<string, number>,
): Measurement {
  const latenciesMs: number[] = [];
  let last = started;
  for (const [id, at] of consumedAt) {
    const produced = producedAt.get(id);
    // consumed before its producer heard of the commit: count 0, never negative
    latenciesMs.push(produced === undefined ? 0 : Math.max(0, at - produced));
    last = Math.max(last, at);
  }
  return { name, operations: consumedAt.size, elapsedMs: last - started, latenciesMs };
}

async function purgeStream(url: string): Promise<void> {
  const nc = await connect({ servers: url });
  try {
    const jsm = await nc.jetstreamManager();
    // the first bus to open creates the stream
    if ((await jsm.streams.names().next()).includes("EVENTS")) await jsm.streams.purge("EVENTS");
  } finally {
    await nc.close();
  }
}

let durables = 0;

/** Outbox → JetStream → a consumer committing a claim and a state write, then acking. */
async function outboxPipeline(url: string, dir: string, load: Load): Promise<Measurement> {
  await purgeStream(url);
  const round = durables++;
  const producer = new EmbeddedDocumentStore({ file: join(dir, `producer-${round}.db`) });
  const consumer = new EmbeddedDocumentStore({ file: join(dir, `consumer-${round}.db`) });
  const relayBus = new JetStreamEventBus({ servers: url, name: "bench-relay" });
  const consumerBus = new JetStreamEventBus({ servers: url, name: "bench-consumer" });
  await Promise.all([producer.open(), consumer.open(), relayBus.open(), consumerBus.open()]);
  const relay = new OutboxRelay({ store: producer, bus: relayBus, owner: "bench" });
  await relay.start();
  const expected = eventsOf(load);
  const consumed = consumption(expected);
  // the service's inbox: claim + handler write in one transaction, then ack; consumed = acked
  const inbox = new InboxConsumer({
    store: consumer,
    bus: observeAcks(consumerBus, (id) => consumed.record(id)),
    consumer: `bench${round}`,
    subscriptions: {
      "order.paid": {
        maxInFlight: CONSUMER_IN_FLIGHT,
        async handler(event, tx) {
          await tx
            .collection("orders_view")
            .updateOne(
              { _id: event.aggregateId },
              { $set: { status: "PAID", lastEventId: event.id } },
              { upsert: true },
            );
        },
      },
    },
  });
  await inbox.start();

  const producedAt = new Map<string, number>();
  const started = nowMs();
  await drive(
    load,
    (i) =>
      runOutboxTransaction(
        producer,
        async (tx) => {
          await tx.collection("orders").insertOne({ _id: `ord-${round}-${i}`, status: "PAID" });
          return (await tx.publish(event(`${round}-${i}`))).id;
        },
        { afterCommit: () => relay.wake() },
      ),
    producedAt,
  );
  await consumed.done;
  const m = measurement(`outbox + inbox, ${loadName(load)}`, started, producedAt, consumed.consumedAt);
  progress(m.name, m.operations, expected);

  await inbox.stop();
  await relay.stop();
  await Promise.all([relayBus.close(), consumerBus.close()]);
  await Promise.all([producer.close(), consumer.close()]);
  return m;
}

/** The same bus, reporting each delivery id once its handler acked it. */
function observeAcks(bus: EventBus, onAck: (id: string) => void): EventBus {
  return {
    kind: bus.kind,
    open: () => bus.open(),
    publish: (message) => bus.publish(message),
    ping: () => bus.ping(),
    close: () => bus.close(),
    subscribe: (options, handler) =>
      bus.subscribe(options, (delivery) =>
        handler(
          new Proxy(delivery, {
            get(target, property) {
              if (property === "ack") {
                return async (): Promise<void> => {
                  await target.ack();
                  onAck(target.id);
                };
              }
              const value: unknown = Reflect.get(target, property, target);
              return typeof value === "function"
                ? (value as (...a: unknown[]) => unknown).bind(target)
                : value;
            },
          }),
        ),
      ),
  };
}

/**
 * Without outbox or inbox: publish straight to JetStream (awaited, with the same concurrency) and
 * consume with a plain ack. `withStores`: the producer first commits its state row (then publishes:
 * a dual write, not atomic) and the consumer commits its state write (no processed-event claim)
 * before acking; this separates the cost of durable state from the cost of the outbox and inbox.
 */
async function direct(url: string, dir: string, load: Load, withStores: boolean): Promise<Measurement> {
  await purgeStream(url);
  const round = durables++;
  const producerBus: EventBus = new JetStreamEventBus({ servers: url, name: "bench-producer" });
  const consumerBus: EventBus = new JetStreamEventBus({ servers: url, name: "bench-consumer" });
  const producer = withStores
    ? new EmbeddedDocumentStore({ file: join(dir, `direct-p-${round}.db`) })
    : undefined;
  const consumer = withStores
    ? new EmbeddedDocumentStore({ file: join(dir, `direct-c-${round}.db`) })
    : undefined;
  await Promise.all([producerBus.open(), consumerBus.open(), producer?.open(), consumer?.open()]);
  const expected = eventsOf(load);
  const consumed = consumption(expected);
  const subscription: Subscription = await consumerBus.subscribe(
    { durable: `bench_direct_${round}`, subject: subjectOf("order.paid"), maxInFlight: CONSUMER_IN_FLIGHT },
    async (delivery) => {
      if (consumer !== undefined) {
        const envelope = decodeEnvelope(delivery.data) as EventEnvelope;
        await consumer
          .collection("orders_view")
          .updateOne(
            { _id: envelope.aggregateId },
            { $set: { status: "PAID", lastEventId: envelope.id } },
            { upsert: true },
          );
      }
      await delivery.ack();
      consumed.record(delivery.id);
    },
  );
  const producedAt = new Map<string, number>();
  const started = nowMs();
  await drive(
    load,
    async (i) => {
      const envelope: EventEnvelope = buildEnvelope(event(`direct-${round}-${i}`));
      await producer?.collection("orders").insertOne({ _id: envelope.aggregateId, status: "PAID" });
      // the clock starts at the commit (or the publish call): before the ack, not after
      producedAt.set(envelope.id, nowMs());
      await producerBus.publish({
        id: envelope.id,
        subject: subjectOf(envelope.type),
        data: encodeEnvelope(envelope),
      });
      return envelope.id;
    },
    new Map(), // drive's own "after the ack" timestamps are not this pipeline's start
  );
  await consumed.done;
  const name = withStores
    ? "dual write: state tx + publish, state tx + ack"
    : "baseline: JetStream publish + ack";
  const m = measurement(`${name}, ${loadName(load)}`, started, producedAt, consumed.consumedAt);
  progress(m.name, m.operations, expected);
  await subscription.stop();
  await Promise.all([producerBus.close(), consumerBus.close(), producer?.close(), consumer?.close()]);
  return m;
}

/** The median round by throughput (full speed) or by p99 (paced). */
function median(rounds: Measurement[], by: "throughput" | "p99"): Measurement {
  const key = (m: Measurement): number =>
    by === "throughput" ? throughput(m) : percentile(m.latenciesMs ?? [], 99);
  const sorted = [...rounds].sort((a, b) => key(a) - key(b));
  const m = sorted[Math.floor(sorted.length / 2)];
  if (m === undefined) throw new Error("no rounds");
  const describe = (r: Measurement): string =>
    by === "throughput" ? throughput(r).toFixed(0) : `${percentile(r.latenciesMs ?? [], 99).toFixed(1)} ms`;
  return { ...m, note: `median of ${rounds.length}: ${rounds.map(describe).join(" / ")}` };
}

export async function run(): Promise<void> {
  const server = await startNatsProcess();
  const dir = mkdtempSync(join(tmpdir(), "ordermesh-outbox-bench-"));
  try {
    console.log(
      `outbox benchmark: nats-server ${server.url}, ${EVENTS} events at full speed, ${PACED_SECONDS} s at ${PACED_RATE}/s, ${ROUNDS} rounds`,
    );
    const full: Load = { kind: "full", count: EVENTS };
    const paced: Load = { kind: "paced", rate: PACED_RATE, seconds: PACED_SECONDS };
    // warm-up: JIT, connections, stream files
    await direct(server.url, dir, { kind: "full", count: 2_000 }, false);
    await direct(server.url, dir, { kind: "full", count: 2_000 }, true);
    await outboxPipeline(server.url, dir, { kind: "full", count: 2_000 });

    const cases = {
      baseline: (load: Load) => direct(server.url, dir, load, false),
      dualWrite: (load: Load) => direct(server.url, dir, load, true),
      outbox: (load: Load) => outboxPipeline(server.url, dir, load),
    };
    const rounds = { full: new Map<string, Measurement[]>(), paced: new Map<string, Measurement[]>() };
    for (const [phase, load] of [
      ["full", full],
      ["paced", paced],
    ] as const) {
      for (let round = 0; round < ROUNDS; round++) {
        // alternate the cases within a round, so drift on the machine touches all of them
        for (const [name, runCase] of Object.entries(cases)) {
          const list = rounds[phase].get(name) ?? [];
          list.push(await runCase(load));
          rounds[phase].set(name, list);
        }
      }
    }
    const pick = (phase: "full" | "paced", name: string): Measurement =>
      median(rounds[phase].get(name) ?? [], phase === "full" ? "throughput" : "p99");
    const baseFull = pick("full", "baseline");
    const outboxFull = pick("full", "outbox");
    const outboxPaced = pick("paced", "outbox");
    printReport(
      "outbox end to end, full speed (latency: commit → consumed; baseline: publish call → consumed)",
      [baseFull, pick("full", "dualWrite"), outboxFull],
      baseFull.name,
    );
    printReport(
      `outbox end to end, paced at ${PACED_RATE}/s`,
      [pick("paced", "baseline"), pick("paced", "dualWrite"), outboxPaced],
      pick("paced", "baseline").name,
    );

    const rate = throughput(outboxFull);
    const cost = 1 - rate / throughput(baseFull);
    const dualWrite = pick("full", "dualWrite");
    const p99 = percentile(outboxPaced.latenciesMs ?? [], 99);
    const verdict = (ok: boolean): string => (ok ? "meets" : "MISSES");
    console.log(
      [
        "",
        `end to end at full speed: ${rate.toFixed(0)} events/s (${verdict(rate >= GOALS.eventsPerSecond)} the ≥ ${GOALS.eventsPerSecond}/s goal)`,
        `p99 commit → consumed at ${PACED_RATE}/s: ${p99.toFixed(1)} ms (${verdict(p99 <= GOALS.pacedP99Ms)} the ≤ ${GOALS.pacedP99Ms} ms goal)`,
        `cost vs the JetStream-only baseline: ${(cost * 100).toFixed(0)}% lower throughput (${verdict(cost <= GOALS.maxCost)} the ≤ ${GOALS.maxCost * 100}% goal); ` +
          `baseline/outbox = ${(throughput(baseFull) / rate).toFixed(2)}×`,
        `outbox + inbox vs the dual write (same state writes, no atomicity, no dedupe): ${((1 - rate / throughput(dualWrite)) * 100).toFixed(0)}% lower throughput`,
      ].join("\n"),
    );
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  void run().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
