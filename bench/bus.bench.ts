/**
 * Event-bus benchmark. Starts its own nats-server (free port, temp store) and measures, in the
 * same run, the JetStream adapter against a raw `nats` client loop doing the same work:
 * acknowledged publishes (sequential and pipelined) and consume + ack. Then the in-process bus
 * (publish with a subscriber acking). Each case runs several rounds, alternating adapter and
 * raw client; the median round is reported. Target: the adapter within 80% of the raw loop.
 *
 *   npx tsc -p tsconfig.build.json && npx node dist/bench/bus.bench.js
 *
 * Sizes: BENCH_BUS_SEQUENTIAL (default 2000), BENCH_BUS_PIPELINED (default 20000),
 * BENCH_BUS_WINDOW (publishes in flight when pipelined, default 256), BENCH_BUS_ROUNDS (default 3).
 */
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  RetentionPolicy,
  StorageType,
  connect,
  nanos,
  type JetStreamClient,
  type JetStreamManager,
  type NatsConnection,
} from "nats";
import type { EventBus, OutgoingMessage } from "../lib/bus/bus.port";
import { InProcessEventBus } from "../lib/bus/inprocess.adapter";
import { JetStreamEventBus } from "../lib/bus/jetstream.adapter";
import { startNatsProcess } from "../lib/local-servers/nats-process";
import { nowMs, printReport, progress, throughput, type Measurement } from "./report";

const SEQUENTIAL = intFromEnv("BENCH_BUS_SEQUENTIAL", 2_000);
const PIPELINED = intFromEnv("BENCH_BUS_PIPELINED", 20_000);
const WINDOW = intFromEnv("BENCH_BUS_WINDOW", 256);
const ROUNDS = intFromEnv("BENCH_BUS_ROUNDS", 3);
const TARGET = 0.8;

function intFromEnv(name: string, fallback: number): number {
  const value = Number(process.env[name]);
  return Number.isInteger(value) && value > 0 ? value : fallback;
}

/** A payload the size of a typical event envelope. */
const PAYLOAD = Buffer.from(
  JSON.stringify({
    type: "order.created",
    version: 1,
    occurredAt: new Date(0).toISOString(),
    aggregateType: "order",
    aggregateId: "ord_0000000000000000",
    traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    payload: {
      customerId: "cus_000000",
      items: [{ sku: "SKU-1", quantity: 2 }],
      total: { minor: 1999, currency: "USD" },
    },
  }),
);

/** Run `count` operations with at most `window` in flight; per-operation latencies in ms. */
async function pipelined(
  count: number,
  window: number,
  op: (i: number) => Promise<unknown>,
): Promise<number[]> {
  const latencies = new Array<number>(count);
  let next = 0;
  async function lane(): Promise<void> {
    while (next < count) {
      const i = next++;
      const started = nowMs();
      await op(i);
      latencies[i] = nowMs() - started;
    }
  }
  await Promise.all(Array.from({ length: Math.min(window, count) }, lane));
  return latencies;
}

async function measure(
  name: string,
  count: number,
  window: number,
  op: (i: number) => Promise<unknown>,
): Promise<Measurement> {
  const started = nowMs();
  const latenciesMs = await pipelined(count, window, op);
  const m: Measurement = { name, operations: count, elapsedMs: nowMs() - started, latenciesMs };
  progress(name, count, count);
  return m;
}

/** The median round by throughput. */
function median(rounds: Measurement[]): Measurement {
  const sorted = [...rounds].sort((a, b) => throughput(a) - throughput(b));
  const m = sorted[Math.floor(sorted.length / 2)];
  if (m === undefined) throw new Error("no rounds");
  return {
    ...m,
    note: `median of ${rounds.length}: ${rounds.map((r) => throughput(r).toFixed(0)).join(" / ")}`,
  };
}

/** Same stream settings as the adapter's: file storage, limits retention, 2-minute duplicate window. */
async function createRawStream(jsm: JetStreamManager): Promise<void> {
  await jsm.streams.add({
    name: "RAW",
    subjects: ["raw.>"],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    duplicate_window: nanos(120_000),
    max_age: nanos(7 * 24 * 60 * 60 * 1000),
    num_replicas: 1,
  });
}

/** Raw client: a durable pull consumer read with fetch + ack until `count` messages are acked. */
async function rawConsume(
  nc: NatsConnection,
  jsm: JetStreamManager,
  durable: string,
  filter: string,
  count: number,
): Promise<Measurement> {
  await jsm.consumers.add("RAW", {
    durable_name: durable,
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(30_000),
    max_deliver: 5,
    max_ack_pending: WINDOW,
    filter_subject: filter,
    deliver_policy: DeliverPolicy.All,
  });
  const consumer = await nc.jetstream().consumers.get("RAW", durable);
  const started = nowMs();
  let acked = 0;
  while (acked < count) {
    const batch = await consumer.fetch({ max_messages: Math.min(WINDOW, count - acked), expires: 5_000 });
    for await (const msg of batch) {
      msg.ack();
      acked++;
    }
  }
  // make sure the acks left the client before stopping the clock, as the adapter's consumer does
  await nc.flush();
  return { name: "raw nats: fetch + ack", operations: count, elapsedMs: nowMs() - started };
}

/** Adapter: a subscription acking every delivery; the clock stops at the last ack. */
async function adapterConsume(
  bus: EventBus,
  durable: string,
  filter: string,
  count: number,
): Promise<Measurement> {
  // the clock includes subscribe(): creating the consumer costs two round trips, noise next to the run
  const started = nowMs();
  let acked = 0;
  let done: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => {
    done = resolve;
  });
  const subscription = await bus.subscribe({ durable, subject: filter, maxInFlight: WINDOW }, async (d) => {
    await d.ack();
    if (++acked === count) done();
  });
  await finished;
  const elapsedMs = nowMs() - started;
  await subscription.stop();
  return { name: "adapter: subscribe + ack", operations: count, elapsedMs };
}

function message(prefix: string, round: number, i: number): OutgoingMessage {
  return { id: `${prefix}-${round}-${i}`, subject: `events.bench.r${round}.order.created`, data: PAYLOAD };
}

async function benchJetStream(url: string): Promise<void> {
  const nc = await connect({ servers: url });
  const jsm = await nc.jetstreamManager();
  const js: JetStreamClient = nc.jetstream();
  await createRawStream(jsm);
  const bus = new JetStreamEventBus({ servers: url, name: "bus-bench" });
  await bus.open();

  const rounds: Record<string, Measurement[]> = {};
  const push = (key: string, m: Measurement): void => {
    (rounds[key] ??= []).push(m);
  };

  // warm-up: connections, stream files, JIT
  await pipelined(500, 32, (i) => js.publish(`raw.warm.${i}`, PAYLOAD, { msgID: `warm-${i}` }));
  await pipelined(500, 32, (i) =>
    bus.publish({ id: `warm-${i}`, subject: `events.warm.${i}`, data: PAYLOAD }),
  );

  for (let round = 0; round < ROUNDS; round++) {
    const subject = `raw.bench.r${round}.order.created`;
    push(
      "rawSeq",
      await measure("raw nats: js.publish sequential", SEQUENTIAL, 1, (i) =>
        js.publish(subject, PAYLOAD, { msgID: `seq-${round}-${i}` }),
      ),
    );
    push(
      "busSeq",
      await measure("adapter: publish sequential", SEQUENTIAL, 1, (i) =>
        bus.publish(message("seq", round, i)),
      ),
    );
    push(
      "rawPipe",
      await measure(`raw nats: js.publish ${WINDOW} in flight`, PIPELINED, WINDOW, (i) =>
        js.publish(subject, PAYLOAD, { msgID: `pipe-${round}-${i}` }),
      ),
    );
    push(
      "busPipe",
      await measure(`adapter: publish ${WINDOW} in flight`, PIPELINED, WINDOW, (i) =>
        bus.publish(message("pipe", round, i)),
      ),
    );
    // each side consumes what it published this round (sequential + pipelined)
    const total = SEQUENTIAL + PIPELINED;
    push("rawConsume", await rawConsume(nc, jsm, `raw_r${round}`, `raw.bench.r${round}.>`, total));
    push("busConsume", await adapterConsume(bus, `bus_r${round}`, `events.bench.r${round}.>`, total));
  }

  const pairs: [string, string, string][] = [
    ["JetStream: acked publish, sequential", "rawSeq", "busSeq"],
    [`JetStream: acked publish, ${WINDOW} in flight`, "rawPipe", "busPipe"],
    ["JetStream: consume + ack", "rawConsume", "busConsume"],
  ];
  const verdicts: string[] = [];
  for (const [title, rawKey, busKey] of pairs) {
    const raw = median(rounds[rawKey] ?? []);
    const ours = median(rounds[busKey] ?? []);
    printReport(title, [raw, ours], raw.name);
    const ratio = throughput(ours) / throughput(raw);
    verdicts.push(
      `${title}: ${(ratio * 100).toFixed(0)}% of raw ${ratio >= TARGET ? "(meets" : "(MISSES"} the ${TARGET * 100}% target)`,
    );
  }
  console.log(`\n${verdicts.join("\n")}`);

  await bus.close();
  await nc.close();
}

async function benchInProcess(): Promise<void> {
  const rows: Measurement[] = [];
  for (const [label, count, window] of [
    ["in-process: publish sequential", SEQUENTIAL * 5, 1],
    [`in-process: publish ${WINDOW} in flight`, PIPELINED * 5, WINDOW],
  ] as const) {
    const results: Measurement[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const bus = new InProcessEventBus();
      await bus.open();
      await bus.subscribe({ durable: "bench", subject: "events.>", maxInFlight: WINDOW }, (d) => d.ack());
      results.push(await measure(label, count, window, (i) => bus.publish(message("ip", round, i))));
      await bus.close();
    }
    rows.push(median(results));
  }
  printReport("in-process bus, one subscriber acking (publish resolves after its ack)", rows);
}

export async function run(): Promise<void> {
  const server = await startNatsProcess();
  try {
    console.log(
      `bus benchmark: nats-server ${server.url}, ${SEQUENTIAL} sequential / ${PIPELINED} pipelined messages of ${PAYLOAD.length} B, ${ROUNDS} rounds`,
    );
    await benchJetStream(server.url);
    await benchInProcess();
  } finally {
    await server.stop();
  }
}

if (require.main === module) {
  void run().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
