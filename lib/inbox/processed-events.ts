/**
 * The processed-events collection: one claim per (consumer, event id), written in the same
 * transaction as the handler's effects, so an event that committed once is never applied again.
 * Claims expire through a TTL index after the retention, which must outlast any redelivery.
 */
import type { EventType } from "../../models/events";
import type { Collection, Doc, DocumentStore, Transaction } from "../store/store.port";

/** Collection holding the claims of every inbox consumer of a store. */
export const PROCESSED_COLLECTION = "inbox_processed";

/** Default retention of a claim: two weeks, beyond the stream's 7-day max age. */
export const DEFAULT_PROCESSED_RETENTION_MS = 14 * 24 * 60 * 60 * 1000;

/** A claim: `consumer` has applied event `eventId`. */
export interface ProcessedEvent extends Doc {
  /** `${consumer}:${eventId}` — the unique key that makes a second claim impossible. */
  _id: string;
  consumer: string;
  eventId: string;
  type: EventType;
  processedAt: Date;
  /** Removed by the TTL index after this. */
  expireAt: Date;
  /** Delivery count the handler saw when it committed (a replay: the letter's count + 1). */
  deliveryCount: number;
  /** True when the claim came from replaying a dead letter. */
  replayed: boolean;
}

/** The unique key of a claim. */
export function claimId(consumer: string, eventId: string): string {
  return `${consumer}:${eventId}`;
}

/** Create the TTL index (idempotent). */
export async function ensureProcessedIndexes(store: DocumentStore): Promise<void> {
  await store.createIndex(PROCESSED_COLLECTION, {
    name: "expireAt_ttl",
    keys: { expireAt: 1 },
    expireAfterSeconds: 0,
  });
}

export function processedEvents(tx: Transaction | DocumentStore): Collection<ProcessedEvent> {
  return tx.collection<ProcessedEvent>(PROCESSED_COLLECTION);
}

/**
 * Claim an event inside `tx`: false when a claim exists already (a duplicate). The existence check
 * is a read first, because a failed insert would abort the whole transaction; a claim committed
 * concurrently after that read surfaces as a conflict (re-run) or as `isClaimCollision` at commit.
 */
export async function claimEvent(tx: Transaction, claim: ProcessedEvent): Promise<boolean> {
  const claims = processedEvents(tx);
  if ((await claims.findOne({ _id: claim._id }, { projection: { _id: 1 } })) !== null) return false;
  await claims.insertOne(claim);
  return true;
}

/** True when a transaction failed because another one committed the same claim first. */
export function isClaimCollision(err: unknown): boolean {
  if (typeof err !== "object" || err === null) return false;
  const { code, data } = err as { code?: unknown; data?: { collection?: unknown } };
  return code === "DUPLICATE_KEY" && data?.collection === PROCESSED_COLLECTION;
}
