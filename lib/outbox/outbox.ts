/**
 * The outbox table and the writer behind `tx.publish`: an event becomes a row in the service's own
 * store, inside the caller's transaction, so the state change and its event commit or roll back
 * together. The relay (outbox.relay.ts) publishes pending rows to the bus afterwards.
 */
import { formatIssues } from "../../models/schema";
import { envelopeIssues, type EventEnvelope, type EventType, type PayloadOf } from "../../models/events";
import { uuidv7 } from "../../models/ids";
import { systemClock, type Clock } from "../clock";
import { InvalidEventError } from "../errors";
import type { Doc, DocumentStore, Transaction } from "../store/store.port";

/** Collection holding a service's outbox rows. */
export const OUTBOX_COLLECTION = "outbox";

export type OutboxStatus = "pending" | "published" | "dead";

/** One event waiting for (or done with) the relay. `_id` is the event id. */
export interface OutboxRow extends Doc {
  type: EventType;
  version: number;
  occurredAt: Date;
  aggregateType: string;
  aggregateId: string;
  traceparent?: string;
  payload: Record<string, unknown>;
  status: OutboxStatus;
  attempts: number;
  /** When the relay may (re)try; pending rows only. */
  nextAttemptAt: Date;
  lastError?: string;
  /** Relay instance holding the row, and until when. */
  leaseOwner?: string;
  leaseUntil?: Date;
  publishedAt?: Date;
  /** Published rows are deleted after this (TTL index); dead rows never get one. */
  purgeAt?: Date;
  deadAt?: Date;
}

/** What a service hands to `tx.publish`. */
export interface NewEvent<T extends EventType = EventType> {
  type: T;
  payload: PayloadOf<T>;
  aggregateType: string;
  aggregateId: string;
  /** Defaults to 1. */
  version?: number;
  /** Defaults to a time-ordered UUID. */
  id?: string;
  /** Defaults to now, on the transaction's clock. */
  occurredAt?: Date;
}

/** A store transaction that can also publish events through the outbox. */
export interface OutboxTransaction extends Transaction {
  /** Validate the event against the catalog and add it to the outbox in this transaction. */
  publish<T extends EventType>(event: NewEvent<T>): Promise<EventEnvelope<T>>;
}

/** An event as an aggregate raises it: a catalog type and its payload. */
export interface RaisedEvent {
  readonly type: EventType;
  readonly payload: unknown;
}

/**
 * Publish, in order and in `tx`, the events an aggregate raised (the repositories' one way to
 * save an aggregate's events with its state). `occurredAt` defaults to the transaction's clock.
 */
export async function publishRaised(
  tx: OutboxTransaction,
  aggregate: { type: string; id: string },
  events: readonly RaisedEvent[],
  occurredAt?: Date,
): Promise<void> {
  for (const event of events) {
    // the payload is checked against the catalog by tx.publish; TypeScript cannot pair a type with
    // its payload through a union of events
    const newEvent = {
      type: event.type,
      payload: event.payload,
      aggregateType: aggregate.type,
      aggregateId: aggregate.id,
      ...(occurredAt === undefined ? {} : { occurredAt }),
    } as NewEvent;
    await tx.publish(newEvent);
  }
}

/** Wrap a store transaction so that `publish` writes outbox rows in it. */
export function withOutbox(
  tx: Transaction,
  context: { traceparent?: string | undefined; clock?: Clock | undefined } = {},
): OutboxTransaction {
  return {
    collection: (name) => tx.collection(name),
    async publish<T extends EventType>(event: NewEvent<T>): Promise<EventEnvelope<T>> {
      const envelope = buildEnvelope(event, context.traceparent, context.clock);
      const occurredAt = new Date(envelope.occurredAt);
      const row: OutboxRow = {
        _id: envelope.id,
        type: envelope.type,
        version: envelope.version,
        occurredAt,
        aggregateType: envelope.aggregateType,
        aggregateId: envelope.aggregateId,
        ...(envelope.traceparent === undefined ? {} : { traceparent: envelope.traceparent }),
        payload: envelope.payload as Record<string, unknown>,
        status: "pending",
        attempts: 0,
        nextAttemptAt: occurredAt,
      };
      await tx.collection<OutboxRow>(OUTBOX_COLLECTION).insertOne(row);
      return envelope;
    },
  };
}

/** The envelope of `event`, validated against the catalog; throws `InvalidEventError`. */
export function buildEnvelope<T extends EventType>(
  event: NewEvent<T>,
  traceparent?: string,
  clock: Clock = systemClock,
): EventEnvelope<T> {
  const envelope: EventEnvelope<T> = {
    id: event.id ?? uuidv7(),
    type: event.type,
    version: event.version ?? 1,
    occurredAt: (event.occurredAt ?? new Date(clock.now())).toISOString(),
    aggregateType: event.aggregateType,
    aggregateId: event.aggregateId,
    ...(traceparent === undefined ? {} : { traceparent }),
    payload: event.payload,
  };
  const issues = envelopeIssues(envelope);
  if (issues.length > 0) {
    throw new InvalidEventError(
      `${String(event.type)} does not fit the event catalog: ${formatIssues(issues)}`,
      {
        type: event.type,
        issues,
      },
    );
  }
  return envelope;
}

/** The envelope a row is published as. */
export function envelopeOf(row: OutboxRow): EventEnvelope {
  return {
    id: row._id,
    type: row.type,
    version: row.version,
    occurredAt: row.occurredAt.toISOString(),
    aggregateType: row.aggregateType,
    aggregateId: row.aggregateId,
    ...(row.traceparent === undefined ? {} : { traceparent: row.traceparent }),
    payload: row.payload,
  } as EventEnvelope;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

export function encodeEnvelope(envelope: EventEnvelope): Uint8Array {
  return encoder.encode(JSON.stringify(envelope));
}

/** Parse bytes from the bus; throws on bytes that are not UTF-8 JSON (validation is separate). */
export function decodeEnvelope(data: Uint8Array): unknown {
  return JSON.parse(decoder.decode(data));
}

export interface OutboxTransactionOptions {
  /** W3C traceparent of the producing span, stored with every event published in the transaction. */
  traceparent?: string | undefined;
  /** Called after a commit that published at least one event (wakes the relay). */
  afterCommit?: (published: number) => void;
  /** The time of events without an `occurredAt`, which is also when their rows fall due (default: the real time). */
  clock?: Clock;
}

/**
 * Run `fn` in a store transaction whose `tx.publish` writes outbox rows. The body may run more than
 * once (conflicts are retried), so it must have no side effects outside `tx`.
 */
export async function runOutboxTransaction<R>(
  store: DocumentStore,
  fn: (tx: OutboxTransaction) => Promise<R>,
  options: OutboxTransactionOptions = {},
): Promise<R> {
  let published = 0;
  const result = await store.transaction(async (tx) => {
    published = 0;
    const outboxTx = withOutbox(tx, { traceparent: options.traceparent, clock: options.clock });
    const counting: OutboxTransaction = {
      collection: outboxTx.collection,
      async publish(event) {
        const envelope = await outboxTx.publish(event);
        published += 1;
        return envelope;
      },
    };
    return fn(counting);
  });
  if (published > 0) options.afterCommit?.(published);
  return result;
}
