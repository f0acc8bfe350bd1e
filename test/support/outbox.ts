/**
 * Helpers for the outbox suites: event builders, a producer of state-row + event transactions, a
 * bus wrapper that can fail and observes what the relay publishes, a recording subscriber, and the
 * bus fixtures every outbox suite loops over (in-process always, JetStream with a nats-server).
 */
import { connect } from "nats";
import type { Delivery, EventBus, OutgoingMessage, PublishAck, Subscription } from "../../lib/bus/bus.port";
import { InProcessEventBus } from "../../lib/bus/inprocess.adapter";
import { JetStreamEventBus } from "../../lib/bus/jetstream.adapter";
import { PublishFailedError } from "../../lib/errors";
import { OUTBOX_COLLECTION, runOutboxTransaction, type OutboxRow } from "../../lib/outbox/outbox";
import type { DocumentStore } from "../../lib/store/store.port";
import { nats, startNatsServer, type NatsServerHandle } from "./nats-server";
import { orderPaidEvent } from "../fixtures/events";

/** An `order.paid` event for order `n`. */
export const orderPaid = orderPaidEvent;

/** One transaction: a state row in `orders` and its event; resolves with the event id. */
export async function commitOne(
  store: DocumentStore,
  n: number | string,
  options: { occurredAt?: Date; traceparent?: string; afterCommit?: () => void } = {},
): Promise<string> {
  return runOutboxTransaction(
    store,
    async (tx) => {
      await tx.collection("orders").insertOne({ _id: `ord-${n}`, status: "PAID" });
      const envelope = await tx.publish(orderPaid(n, options.occurredAt));
      return envelope.id;
    },
    { traceparent: options.traceparent, afterCommit: options.afterCommit },
  );
}

/** Every outbox row, by id. */
export async function outboxRows(store: DocumentStore): Promise<Map<string, OutboxRow>> {
  const rows = await store.collection<OutboxRow>(OUTBOX_COLLECTION).find({});
  return new Map(rows.map((r) => [r._id, r]));
}

export function countByStatus(store: DocumentStore, status: OutboxRow["status"]): Promise<number> {
  return store.collection<OutboxRow>(OUTBOX_COLLECTION).countDocuments({ status });
}

/**
 * A bus in front of a real one that records what is published and can fail on purpose:
 * `down` rejects every publish, `rejectIds` rejects those ids, `gate` holds a publish until it resolves.
 */
export class ProbeBus implements EventBus {
  readonly kind: EventBus["kind"];
  /** Message ids in the order `publish` was called. */
  readonly calls: string[] = [];
  /** Acknowledgements per id, in order. */
  readonly acks = new Map<string, PublishAck[]>();
  /** Rejected publishes per id. */
  readonly failures = new Map<string, number>();
  /** Ids published while a publish of the same id was still in flight. */
  readonly overlaps: string[] = [];
  /** Per id, how many publishes are in flight right now. */
  private readonly inFlight = new Map<string, number>();
  down = false;
  rejectIds = new Set<string>();
  gate: ((message: OutgoingMessage) => Promise<void>) | undefined;

  constructor(readonly inner: EventBus) {
    this.kind = inner.kind;
  }

  async publish(message: OutgoingMessage): Promise<PublishAck> {
    this.calls.push(message.id);
    const running = this.inFlight.get(message.id) ?? 0;
    if (running > 0) this.overlaps.push(message.id);
    this.inFlight.set(message.id, running + 1);
    try {
      if (this.gate !== undefined) await this.gate(message);
      if (this.down) throw new PublishFailedError("bus is down (test)");
      if (this.rejectIds.has(message.id)) throw new PublishFailedError(`rejecting ${message.id} (test)`);
      const ack = await this.inner.publish(message);
      const list = this.acks.get(message.id) ?? [];
      list.push(ack);
      this.acks.set(message.id, list);
      return ack;
    } catch (err) {
      this.failures.set(message.id, (this.failures.get(message.id) ?? 0) + 1);
      throw err;
    } finally {
      this.inFlight.set(message.id, (this.inFlight.get(message.id) ?? 1) - 1);
    }
  }

  /** Ids acknowledged at least once. */
  ackedIds(): Set<string> {
    return new Set(this.acks.keys());
  }

  open(): Promise<void> {
    return this.inner.open();
  }
  subscribe(...args: Parameters<EventBus["subscribe"]>): Promise<Subscription> {
    return this.inner.subscribe(...args);
  }
  ping(): Promise<void> {
    return this.inner.ping();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

export interface Recorded {
  id: string;
  subject: string;
  envelope: unknown;
  headers: Record<string, string>;
}

let durableCounter = 0;

/** A durable subscriber on `events.>` that records and acks every delivery. */
export async function recordDeliveries(
  bus: EventBus,
): Promise<{ seen: Recorded[]; ids(): string[]; subscription: Subscription }> {
  const seen: Recorded[] = [];
  const durable = `outbox_test_${process.pid}_${Date.now().toString(36)}_${durableCounter++}`;
  const subscription = await bus.subscribe(
    { durable, subject: "events.>", maxInFlight: 256 },
    async (d: Delivery) => {
      seen.push({
        id: d.id,
        subject: d.subject,
        envelope: JSON.parse(Buffer.from(d.data).toString("utf8")) as unknown,
        headers: { ...d.headers },
      });
      await d.ack();
    },
  );
  return { seen, ids: () => seen.map((s) => s.id), subscription };
}

/** The bus side of a suite: in-process (always) or JetStream (when nats-server is installed). */
export interface BusFixture {
  name: string;
  describe: jest.Describe;
  /** Before the suite. */
  start(): Promise<void>;
  /** After the suite. */
  stop(): Promise<void>;
  /** A new, unopened bus (JetStream: a new connection to the suite's server). */
  create(options?: { publishRetryForMs?: number; publishTimeoutMs?: number }): EventBus;
  /** The suite's nats-server (JetStream only). */
  server(): NatsServerHandle | undefined;
}

export function inProcessFixture(): BusFixture {
  return {
    name: "in-process bus",
    describe,
    start: async () => undefined,
    stop: async () => undefined,
    create: () => new InProcessEventBus(),
    server: () => undefined,
  };
}

export function jetStreamFixture(): BusFixture {
  let server: NatsServerHandle | undefined;
  return {
    name: "JetStream",
    describe: nats.describe,
    start: async () => {
      server = await startNatsServer();
    },
    stop: async () => {
      await server?.stop();
      server = undefined;
    },
    create: (options = {}) => {
      if (server === undefined) throw new Error("nats-server not started");
      return new JetStreamEventBus({ servers: server.url, name: "outbox-test", ...options });
    },
    server: () => server,
  };
}

/** Every message the EVENTS stream holds: its `Nats-Msg-Id` per stream sequence. */
export async function streamMessageIds(url: string, stream = "EVENTS"): Promise<string[]> {
  const nc = await connect({ servers: url });
  try {
    const jsm = await nc.jetstreamManager();
    const info = await jsm.streams.info(stream);
    const ids: string[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
      try {
        const msg = await jsm.streams.getMessage(stream, { seq });
        ids.push(msg.header.get("Nats-Msg-Id"));
      } catch {
        // a deleted sequence
      }
    }
    return ids;
  } finally {
    await nc.close();
  }
}
