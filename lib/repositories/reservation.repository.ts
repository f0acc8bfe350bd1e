/**
 * The reservations store: the only code that reads or writes the inventory's `reservations`
 * collection. It loads a document as a `Reservation` aggregate (models/reservation.ts) and saves it
 * after a decision, in the caller's transaction, all together:
 *
 * - the decision's stock moves, through the product repository (each guarded by its source counter);
 * - the reservation, guarded by the version it was loaded at: 0 documents modified means someone
 *   else changed it meanwhile, a `ReservationConflictError` (retryable: load again, decide again);
 *   a new one is inserted, guarded by its unique `_id`;
 * - the events the decision raised, through the outbox (`tx.publish`).
 *
 * A decision that changed nothing writes nothing. Documents stored before versions were kept have
 * none and read as version 0.
 */
import { OrdermeshError } from "../errors";
import { publishRaised, type OutboxTransaction, type RaisedEvent } from "../outbox/outbox";
import type { Collection, Doc, DocumentStore, Filter, Transaction } from "../store/store.port";
import { RESERVATION_STATUSES, type ReservationStatus } from "../../models/inventory";
import { Reservation, type ReservationDecision, type ReservationState } from "../../models/reservation";
import type { ProductRepository } from "./product.repository";

/** Reservations, one per order, `_id` = order id. */
export const RESERVATIONS_COLLECTION = "reservations";

interface ReservationDoc extends Doc, Omit<ReservationState, "version"> {
  /** Absent on reservations stored before versions were kept: read as 0. */
  version?: number;
}

/** Fields of the state that may be absent; a save removes those the aggregate no longer has. */
const OPTIONAL_FIELDS = [
  "customerId",
  "releaseReason",
  "orderCancelledAt",
  "unfulfilled",
  "boundAt",
  "committedAt",
  "releasedAt",
] as const satisfies readonly (keyof ReservationState)[];

/** Where a read runs: inside a transaction, or directly on the store. */
type Scope = Transaction | DocumentStore;

/** The reservation changed since it was loaded: load it again and decide again. */
export class ReservationConflictError extends OrdermeshError {
  constructor(orderId: string) {
    super("RESERVATION_CHANGED", `reservation ${orderId} changed meanwhile`, {
      retryable: true,
      data: { orderId },
    });
  }
}

/** How many reservations are in each status, and how many orders found no stock (the stock report). */
export interface ReservationCensus {
  byStatus: Record<ReservationStatus, number>;
  unfulfilled: number;
}

export class ReservationRepository {
  /** The version each aggregate handed out was loaded at. */
  private readonly loaded = new WeakMap<Reservation, number>();

  constructor(private readonly products: ProductRepository) {}

  /** Create the indexes (idempotent). */
  async prepare(store: DocumentStore): Promise<void> {
    // the sweeper's query: held reservations by hold deadline
    await store.createIndex(RESERVATIONS_COLLECTION, {
      name: "status_hold_until",
      keys: { status: 1, holdUntil: 1 },
    });
  }

  async load(scope: Scope, orderId: string): Promise<Reservation | null> {
    const doc = await reservations(scope).findOne({ _id: orderId });
    if (doc === null) return null;
    const { _id, version, ...state } = doc;
    const reservation = Reservation.fromState({ ...state, version: version ?? 0 });
    this.loaded.set(reservation, version ?? 0);
    return reservation;
  }

  /**
   * Save `reservation` after `decision`, with its stock moves and events. One this repository
   * loaded is updated, guarded by the version it was loaded at; a new one (`Reservation.hold`,
   * `Reservation.nothingHeld`) is inserted, guarded by its unique `_id` (`DUPLICATE_KEY` when
   * another transaction inserted it first). A decision that changed nothing writes nothing.
   */
  async save(
    tx: OutboxTransaction,
    reservation: Reservation,
    decision: ReservationDecision,
    now: Date,
  ): Promise<void> {
    if (!decision.changed) return;
    await this.products.applyMoves(tx, decision.moves, now);
    const { version: _unsaved, ...state } = reservation.toState();
    const version = this.loaded.get(reservation);
    if (version === undefined) {
      await reservations(tx).insertOne({
        ...(definedOnly(state) as typeof state),
        _id: state.orderId,
        version: 1,
      });
    } else {
      const absent = OPTIONAL_FIELDS.filter((field) => state[field] === undefined);
      const result = await reservations(tx).updateOne(
        { _id: state.orderId, ...versionIs(version) },
        {
          $set: { ...definedOnly(state), version: version + 1 },
          ...(absent.length === 0 ? {} : { $unset: Object.fromEntries(absent.map((field) => [field, ""])) }),
        },
      );
      if (result.modifiedCount !== 1) throw new ReservationConflictError(state.orderId);
    }
    this.loaded.set(reservation, (version ?? 0) + 1);
    // read as catalog events: the union of reservation events is empty in v1 (models/reservation.ts)
    await publishRaised(
      tx,
      { type: "reservation", id: reservation.orderId },
      decision.events as readonly RaisedEvent[],
      now,
    );
  }

  /** Order ids of held reservations whose hold ended before `cutoff`, earliest first. */
  async dueHolds(scope: Scope, cutoff: Date, limit: number): Promise<string[]> {
    const due = await reservations(scope).find(
      { status: "held", holdUntil: { $lt: cutoff } },
      { sort: { holdUntil: 1 }, limit, projection: { _id: 1 } },
    );
    return due.map((doc) => doc._id);
  }

  async census(scope: Scope): Promise<ReservationCensus> {
    const docs = await reservations(scope).find({}, { projection: { status: 1, unfulfilled: 1 } });
    const byStatus = Object.fromEntries(RESERVATION_STATUSES.map((status) => [status, 0])) as Record<
      ReservationStatus,
      number
    >;
    for (const doc of docs) byStatus[doc.status] += 1;
    return { byStatus, unfulfilled: docs.filter((doc) => doc.unfulfilled !== undefined).length };
  }
}

function reservations(scope: Scope): Collection<ReservationDoc> {
  return scope.collection<ReservationDoc>(RESERVATIONS_COLLECTION);
}

/** The guard of a save: the version it was loaded at (absent on documents stored before versions). */
function versionIs(version: number): Filter {
  return version === 0 ? { version: { $exists: false } } : { version };
}

function definedOnly(state: object): Record<string, unknown> {
  return Object.fromEntries(Object.entries(state).filter(([, value]) => value !== undefined));
}
