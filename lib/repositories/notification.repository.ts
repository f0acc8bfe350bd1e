/**
 * The notifications collection, and the only code that touches it: notifications are created once
 * per (event, channel), loaded as `Notification` aggregates (models/notification.ts), and saved
 * guarded by what was loaded, so that a change made meanwhile by another sender or an operator is a
 * typed conflict and never overwritten. Senders claim due notifications with a lease here.
 *
 * Notifications raise no event of the bus catalog, so a save writes the notification alone (no
 * outbox row). Stored shape and indexes: docs/notifications.md.
 */
import { OrdermeshError } from "../errors";
import { NEWEST_FIRST, afterCursor, pageOf, type CursorPage } from "../newest-first";
import type { Collection, Doc, DocumentStore, Filter, Transaction } from "../store/store.port";
import { claimWithLease, type LeaseClaim } from "../work/lease-claim";
import {
  NOTIFICATION_STATUSES,
  Notification,
  SENDABLE_STATUSES,
  type NotificationState,
  type NotificationStatus,
} from "../../models/notification";

/** The collection, in the notifications service's own store. */
export const NOTIFICATIONS = "notifications";

/** A stored notification: the aggregate's snapshot, its id as `_id`. */
export type NotificationDoc = Omit<NotificationState, "id"> & Doc;

/** Notifications by status. */
export type NotificationCounts = Record<NotificationStatus, number>;

/** The notification changed since it was loaded (another sender's outcome, a replay): load it again. */
export class NotificationConflictError extends OrdermeshError {
  constructor(id: string, expected: Pick<NotificationState, "status" | "attempts" | "leaseOwner">) {
    super("NOTIFICATION_CONFLICT", `notification ${id} changed since it was loaded`, {
      retryable: true,
      data: { id, expected },
    });
  }
}

/** Where a repository reads and writes: the store, or a transaction open on it. */
type Scope = Pick<DocumentStore, "collection"> | Transaction;

export interface ClaimArgs {
  limit: number;
  owner: string;
  now: Date;
  leaseMs: number;
  /** Ids this sender holds already (in flight here). */
  exclude?: ReadonlySet<string>;
}

export class NotificationRepository {
  constructor(private readonly store: DocumentStore) {}

  /** The unique (event, channel) index and the indexes of the sender's claims and of `list`. */
  async ensureIndexes(): Promise<void> {
    // one notification per (event, channel), ever
    await this.store.createIndex(NOTIFICATIONS, {
      name: "event_channel",
      keys: { eventId: 1, channel: 1 },
      unique: true,
    });
    await this.store.createIndex(NOTIFICATIONS, {
      name: "status_next_attempt",
      keys: { status: 1, nextAttemptAt: 1 },
    });
    await this.store.createIndex(NOTIFICATIONS, {
      name: "customer_created",
      keys: { customerId: 1, createdAt: -1, _id: -1 },
    });
  }

  /**
   * Store a new notification unless one for its (event, channel) is stored already (an event
   * processed again); returns whether it stored it. Meant for the inbox transaction `tx`; the unique
   * index refuses a second one (DUPLICATE_KEY) whatever the path.
   */
  async createOnce(notification: Notification, tx: Transaction): Promise<boolean> {
    const state = notification.toState();
    const notifications = collection(tx);
    const existing = await notifications.findOne(
      { eventId: state.eventId, channel: state.channel },
      { projection: { _id: 1 } },
    );
    if (existing !== null) return false;
    await notifications.insertOne(docOf(state));
    return true;
  }

  /** The notification `id` as an aggregate, or null. */
  async load(id: string, tx?: Transaction): Promise<Notification | null> {
    const doc = await collection(tx ?? this.store).findOne({ _id: id });
    return doc === null ? null : Notification.fromState(stateOf(doc));
  }

  /**
   * Write what changed in `notification` since `loaded` (the snapshot it was loaded or claimed as),
   * provided the stored one is still as loaded: same status, attempts and lease owner. Otherwise
   * nothing is written and `NotificationConflictError` says so.
   */
  async save(notification: Notification, loaded: NotificationState, tx?: Transaction): Promise<void> {
    const state = notification.toState();
    if (state.id !== loaded.id) throw new Error(`saving notification ${state.id} as ${loaded.id}`);
    const update = changes(loaded, state);
    if (update === undefined) return;
    const result = await collection(tx ?? this.store).updateOne(
      {
        _id: state.id,
        status: loaded.status,
        attempts: loaded.attempts,
        leaseOwner: loaded.leaseOwner ?? { $exists: false },
      },
      update,
    );
    if (result.modifiedCount === 0) throw new NotificationConflictError(state.id, loaded);
  }

  /**
   * Lease up to `limit` due notifications to `owner`, oldest due first: pending or failed, due, and
   * under no live lease (`Notification.isClaimable`), through the one claim protocol
   * (lib/work/lease-claim.ts). Returns them as stored after the claim.
   */
  async claimDue(args: ClaimArgs): Promise<Notification[]> {
    const { leaseMs, ...claim } = args;
    const docs = await claimWithLease<NotificationDoc>(this.store, { ...SENDER_CLAIM, leaseMs }, claim);
    return docs.map((doc) => Notification.fromState(stateOf(doc)));
  }

  /** A customer's notifications, newest first, one page after `cursor`. */
  async pageForCustomer(
    customerId: string,
    page: { limit: number; cursor?: string },
  ): Promise<CursorPage<NotificationState>> {
    const conditions: Filter[] = [{ customerId }];
    if (page.cursor !== undefined) conditions.push(afterCursor(page.cursor, "date"));
    const docs = await collection(this.store).find(
      { $and: conditions },
      { sort: NEWEST_FIRST, limit: page.limit + 1 },
    );
    return pageOf(docs, page.limit, stateOf);
  }

  /** How many notifications are in each status. */
  async countByStatus(): Promise<NotificationCounts> {
    const notifications = collection(this.store);
    const counts = await Promise.all(
      NOTIFICATION_STATUSES.map((status) => notifications.countDocuments({ status })),
    );
    return Object.fromEntries(
      NOTIFICATION_STATUSES.map((status, i) => [status, counts[i] ?? 0]),
    ) as NotificationCounts;
  }

  /** Dead notifications, most recently dead first. */
  async dead(limit: number): Promise<NotificationState[]> {
    const docs = await collection(this.store).find(
      { status: "dead" },
      { sort: { deadAt: -1, _id: -1 }, limit },
    );
    return docs.map(stateOf);
  }
}

/**
 * The sender's claim: `Notification.isClaimable(now)` as a filter (claimWithLease adds "under no
 * live lease"), oldest due first.
 */
const SENDER_CLAIM: Omit<LeaseClaim, "leaseMs"> = {
  collection: NOTIFICATIONS,
  due: (now) => ({ status: { $in: [...SENDABLE_STATUSES] }, nextAttemptAt: { $lte: now } }),
  sort: { nextAttemptAt: 1, _id: 1 },
};

function collection(scope: Scope): Collection<NotificationDoc> {
  return scope.collection<NotificationDoc>(NOTIFICATIONS);
}

function docOf(state: NotificationState): NotificationDoc {
  const { id, ...rest } = state;
  return { _id: id, ...rest };
}

function stateOf(doc: NotificationDoc): NotificationState {
  const { _id, ...rest } = doc;
  return { id: _id, ...rest };
}

/** The `$set`/`$unset` that turns `before` into `after`; undefined when nothing changed. */
function changes(
  before: NotificationState,
  after: NotificationState,
): { $set?: Record<string, unknown>; $unset?: Record<string, ""> } | undefined {
  const $set: Record<string, unknown> = {};
  const $unset: Record<string, ""> = {};
  const keys = new Set([...Object.keys(before), ...Object.keys(after)]) as Set<keyof NotificationState>;
  keys.delete("id");
  for (const key of keys) {
    const was = before[key];
    const is = after[key];
    if (is === undefined) {
      if (was !== undefined) $unset[key] = "";
    } else if (!same(was, is)) {
      $set[key] = is;
    }
  }
  const hasSet = Object.keys($set).length > 0;
  const hasUnset = Object.keys($unset).length > 0;
  if (!hasSet && !hasUnset) return undefined;
  return { ...(hasSet ? { $set } : {}), ...(hasUnset ? { $unset } : {}) };
}

function same(a: unknown, b: unknown): boolean {
  if (a instanceof Date && b instanceof Date) return a.getTime() === b.getTime();
  return a === b;
}
