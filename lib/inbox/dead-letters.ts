/**
 * Dead letters of the inbox: messages a consumer gave up on (malformed, off the catalog, failed
 * for good, or out of deliveries), kept in the service's own store until an operator replays or
 * discards them. One letter per (consumer, event id): a second failure of the same event updates
 * it and counts an occurrence instead of adding a row.
 */
import type { EventEnvelope, EventType } from "../../models/events";
import { OrdermeshError } from "../errors";
import type { Collection, DocumentStore, Doc, Filter, Transaction } from "../store/store.port";

/** Collection holding the dead letters of every inbox consumer of a store. */
export const DEAD_LETTER_COLLECTION = "inbox_dead_letters";

export type DeadLetterStatus = "dead" | "replayed" | "discarded";

/**
 * Why a message was parked: `malformed` (not JSON), `invalid` (off the catalog or delivered to
 * another type's subscription), `permanent` (the handler threw `PERMANENT_FAILURE`), `exhausted`
 * (it failed on its last allowed delivery).
 */
export type DeadLetterReason = "malformed" | "invalid" | "permanent" | "exhausted";

/** How a replay ended: the handler ran, or the event had been processed already (its claim exists). */
export type ReplayOutcome = "processed" | "already-processed";

export interface DeadLetterError {
  code: string;
  message: string;
}

export interface DeadLetter extends Doc {
  /** `${consumer}:${event id}` (or the bus message id when there is no valid envelope). */
  _id: string;
  consumer: string;
  /** Event type of the subscription that received it. */
  subscription: EventType;
  /** Bus message id (`Nats-Msg-Id`); the event id for messages the relay published. */
  messageId: string;
  subject: string;
  /** The event id when the envelope was valid, else null. */
  eventId: string | null;
  /** The envelope, when it was valid (only those can be replayed). */
  envelope?: EventEnvelope;
  /** The message as received, when it was not a valid envelope. */
  raw?: string;
  rawEncoding?: "utf8" | "base64";
  reason: DeadLetterReason;
  error: DeadLetterError;
  /** Delivery on which it was parked. */
  deliveryCount: number;
  status: DeadLetterStatus;
  firstDeadAt: Date;
  /** Latest time it was parked. */
  deadAt: Date;
  /** How many times it was parked (copies of one event share the letter). */
  occurrences: number;
  replayedAt?: Date;
  replayOutcome?: ReplayOutcome;
  discardedAt?: Date;
  /** The latest replay that failed (the letter stays `dead`). */
  lastReplayError?: DeadLetterError & { at: Date };
}

/** What the inbox knows when it parks a message. */
export interface NewDeadLetter {
  subscription: EventType;
  messageId: string;
  subject: string;
  /** A valid envelope, or the raw bytes of anything else. */
  content: { envelope: EventEnvelope } | { data: Uint8Array };
  reason: DeadLetterReason;
  error: DeadLetterError;
  deliveryCount: number;
}

export interface ListDeadLettersOptions {
  /** At most this many, newest first (default 50, at most 1000). */
  limit?: number;
  /** Only letters of this subscription. */
  type?: EventType;
  /** Only letters in this status (default `dead`); `any` lists every status. */
  status?: DeadLetterStatus | "any";
}

/** No dead letter with this id (for this consumer). */
export class DeadLetterNotFoundError extends OrdermeshError {
  constructor(id: string) {
    super("DEAD_LETTER_NOT_FOUND", `no dead letter ${id}`, { data: { id } });
  }
}

/** The letter holds no valid envelope, or no subscription of this consumer takes its type. */
export class DeadLetterNotReplayableError extends OrdermeshError {
  constructor(id: string, why: string) {
    super("DEAD_LETTER_NOT_REPLAYABLE", `dead letter ${id} cannot be replayed: ${why}`, { data: { id } });
  }
}

/** The letter is in a status that does not allow the operation (e.g. discarding a replayed one). */
export class DeadLetterStateError extends OrdermeshError {
  constructor(id: string, status: DeadLetterStatus, operation: string) {
    super("INVALID_DEAD_LETTER_STATE", `dead letter ${id} is ${status}; cannot ${operation} it`, {
      data: { id, status },
    });
  }
}

/** `{ code, message }` of anything thrown: its string `code`, else its string `type`, else UNEXPECTED_ERROR. */
export function describeError(err: unknown): DeadLetterError {
  if (typeof err === "object" && err !== null) {
    const { code, type, message } = err as { code?: unknown; type?: unknown; message?: unknown };
    return {
      code: typeof code === "string" ? code : typeof type === "string" ? type : "UNEXPECTED_ERROR",
      message: typeof message === "string" ? message : String(err),
    };
  }
  return { code: "UNEXPECTED_ERROR", message: String(err) };
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** Text of a message body: UTF-8 when it is, base64 otherwise. */
function rawText(data: Uint8Array): { raw: string; rawEncoding: "utf8" | "base64" } {
  try {
    return { raw: strictUtf8.decode(data), rawEncoding: "utf8" };
  } catch {
    return { raw: Buffer.from(data).toString("base64"), rawEncoding: "base64" };
  }
}

/** The dead letters of one consumer in its store. */
export class DeadLetters {
  constructor(
    private readonly store: DocumentStore,
    readonly consumer: string,
  ) {}

  /** Id of the letter for an event (or a message without a valid envelope). */
  idOf(key: string): string {
    return `${this.consumer}:${key}`;
  }

  collection(tx: Transaction | DocumentStore = this.store): Collection<DeadLetter> {
    return tx.collection<DeadLetter>(DEAD_LETTER_COLLECTION);
  }

  async ensureIndexes(): Promise<void> {
    await this.store.createIndex(DEAD_LETTER_COLLECTION, {
      name: "consumer_status_deadAt",
      keys: { consumer: 1, status: 1, deadAt: -1 },
    });
  }

  /**
   * Park a message: create its letter, or revive and update the existing one (status `dead`,
   * one more occurrence). Returns the letter's id. Resolves only once the letter is committed.
   */
  async park(letter: NewDeadLetter, at: Date): Promise<string> {
    const content =
      "envelope" in letter.content
        ? {
            key: letter.content.envelope.id,
            $set: { envelope: letter.content.envelope, eventId: letter.content.envelope.id },
            $unset: { raw: "", rawEncoding: "" },
          }
        : {
            key: letter.messageId,
            $set: { ...rawText(letter.content.data), eventId: null },
            $unset: { envelope: "" },
          };
    const id = this.idOf(content.key);
    await this.collection().updateOne(
      { _id: id },
      {
        $set: {
          ...content.$set,
          consumer: this.consumer,
          subscription: letter.subscription,
          messageId: letter.messageId,
          subject: letter.subject,
          reason: letter.reason,
          error: letter.error,
          deliveryCount: letter.deliveryCount,
          status: "dead",
          deadAt: at,
        },
        $unset: { ...content.$unset, replayedAt: "", replayOutcome: "", discardedAt: "" },
        $setOnInsert: { firstDeadAt: at },
        $inc: { occurrences: 1 },
      },
      { upsert: true },
    );
    return id;
  }

  async get(id: string, tx?: Transaction): Promise<DeadLetter | null> {
    return this.collection(tx).findOne({ _id: id, consumer: this.consumer });
  }

  async list(options: ListDeadLettersOptions = {}): Promise<DeadLetter[]> {
    const limit = Math.min(Math.max(Math.trunc(options.limit ?? 50), 1), 1000);
    const filter: Filter = { consumer: this.consumer };
    const status = options.status ?? "dead";
    if (status !== "any") filter.status = status;
    if (options.type !== undefined) filter.subscription = options.type;
    return this.collection().find(filter, { sort: { deadAt: -1, _id: 1 }, limit });
  }

  /** Letters waiting for an operator. */
  countDead(): Promise<number> {
    return this.collection().countDocuments({ consumer: this.consumer, status: "dead" });
  }

  /** Inside the replay's transaction: the letter is done. */
  async markReplayed(tx: Transaction, id: string, outcome: ReplayOutcome, at: Date): Promise<void> {
    await this.collection(tx).updateOne(
      { _id: id, consumer: this.consumer },
      {
        $set: { status: "replayed", replayedAt: at, replayOutcome: outcome },
        $unset: { lastReplayError: "" },
      },
    );
  }

  /** A replay failed: the letter stays as it was, with the failure noted. */
  async noteReplayFailure(id: string, error: DeadLetterError, at: Date): Promise<void> {
    await this.collection().updateOne(
      { _id: id, consumer: this.consumer, status: { $ne: "replayed" } },
      { $set: { lastReplayError: { ...error, at } } },
    );
  }

  /** Mark a `dead` letter `discarded`; discarding it again is a no-op; a replayed one cannot be. */
  async discard(id: string, at: Date): Promise<DeadLetter> {
    const updated = await this.collection().findOneAndUpdate(
      { _id: id, consumer: this.consumer, status: "dead" },
      { $set: { status: "discarded", discardedAt: at } },
      { returnDocument: "after" },
    );
    if (updated !== null) return updated;
    const letter = await this.get(id);
    if (letter === null) throw new DeadLetterNotFoundError(id);
    if (letter.status === "replayed") throw new DeadLetterStateError(id, letter.status, "discard");
    return letter;
  }
}
