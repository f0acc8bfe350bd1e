/**
 * Document-store port: collections of JSON documents queried and updated in MongoDB's
 * language (the subset documented in docs/store.md), unique/partial/TTL indexes, and ACID
 * transactions across the collections of one store.
 *
 * Contract shared by every adapter (proven by test/conformance/store.conformance.spec.ts):
 * - `_id` is always a string; `insertOne` generates one when absent.
 * - Documents hold JSON values plus `Date`; what is read back equals what was written.
 * - A unique-index violation throws `DuplicateKeyError` (code `DUPLICATE_KEY`).
 * - Anything outside the subset throws `UnsupportedQueryError` — never a silently wrong result.
 * - `transaction(fn)` may run `fn` more than once (conflicts are retried), so `fn` must have no
 *   side effects outside `tx`. Writes inside commit all together or not at all.
 * - Results are copies: mutating a returned document never changes the store.
 */

/** A stored document. */
export interface Doc {
  _id: string;
  [field: string]: unknown;
}

/** A document to insert: `_id` may be omitted and is then generated. */
export type NewDoc<T extends Doc> = Omit<T, "_id"> & { _id?: string };

/** MongoDB query filter (subset: $eq $ne $gt $gte $lt $lte $in $nin $exists $and $or $not, dotted paths, arrays). */
export type Filter = Record<string, unknown>;
/** MongoDB update document (subset: $set $unset $inc $push $pull $addToSet $min $max $setOnInsert). */
export type Update = Record<string, unknown>;
/** Sort specification, applied in key order. */
export type Sort = Record<string, 1 | -1>;
/** Inclusion (1) or exclusion (0) projection; `_id` is included unless set to 0. */
export type Projection = Record<string, 0 | 1>;

export interface FindOptions {
  sort?: Sort;
  skip?: number;
  limit?: number;
  projection?: Projection;
}

export interface UpdateOptions {
  /** Insert a document built from the filter's equality fields and the update when nothing matches. */
  upsert?: boolean;
}

export interface FindOneAndUpdateOptions extends UpdateOptions {
  /** Which version to return; MongoDB's default is "before". */
  returnDocument?: "before" | "after";
  sort?: Sort;
  projection?: Projection;
}

export interface InsertOneResult {
  insertedId: string;
}
export interface InsertManyResult {
  insertedIds: string[];
}
export interface UpdateResult {
  matchedCount: number;
  modifiedCount: number;
  /** `_id` of the document an upsert inserted, else null. */
  upsertedId: string | null;
}
export interface DeleteResult {
  deletedCount: number;
}

/** Index definition. Keys are dotted paths; direction is kept for MongoDB and ignored by the embedded engine. */
export interface IndexSpec {
  name?: string;
  keys: Record<string, 1 | -1>;
  unique?: boolean;
  /** Only documents matching this filter are indexed (and constrained, when unique). */
  partialFilterExpression?: Filter;
  /** TTL: documents whose (single, Date-valued) key is older than this many seconds are removed in the background. */
  expireAfterSeconds?: number;
}

/** Operations on one collection; inside a transaction they see and make uncommitted writes. */
export interface Collection<T extends Doc = Doc> {
  readonly name: string;
  insertOne(doc: NewDoc<T>): Promise<InsertOneResult>;
  insertMany(docs: NewDoc<T>[]): Promise<InsertManyResult>;
  findOne(filter: Filter, options?: FindOptions): Promise<T | null>;
  find(filter: Filter, options?: FindOptions): Promise<T[]>;
  countDocuments(filter?: Filter): Promise<number>;
  updateOne(filter: Filter, update: Update, options?: UpdateOptions): Promise<UpdateResult>;
  updateMany(filter: Filter, update: Update, options?: UpdateOptions): Promise<UpdateResult>;
  findOneAndUpdate(filter: Filter, update: Update, options?: FindOneAndUpdateOptions): Promise<T | null>;
  deleteOne(filter: Filter): Promise<DeleteResult>;
  deleteMany(filter: Filter): Promise<DeleteResult>;
}

/** Handle passed to a transaction body. */
export interface Transaction {
  collection<T extends Doc = Doc>(name: string): Collection<T>;
}

export interface TransactionOptions {
  /** Give up retrying conflicts after this long (default 30 s); then `TransactionConflictError`. */
  maxRetryTimeMs?: number;
}

/** A document store (one per service: its own database or file). */
export interface DocumentStore {
  /** Which adapter this is, for diagnostics only; business code never branches on it. */
  readonly kind: "embedded" | "mongodb";
  /** Connect/open; idempotent. */
  open(): Promise<void>;
  /** Auto-commit access: each call is its own atomic operation. */
  collection<T extends Doc = Doc>(name: string): Collection<T>;
  /** Create an index if missing (same spec → no-op); returns its name. Existing data violating a new unique index → `DuplicateKeyError`. */
  createIndex(collection: string, spec: IndexSpec): Promise<string>;
  /** Run `fn` in an ACID transaction; retried on conflict, so `fn` may run more than once. */
  transaction<R>(fn: (tx: Transaction) => Promise<R>, options?: TransactionOptions): Promise<R>;
  /**
   * Optional: call `onInsert` whenever anyone — another process included — inserts into
   * `collection`; resolves to a function that stops watching. MongoDB implements it with a change
   * stream. The embedded engine does not: its file is locked to one process, whose own commits the
   * caller already sees. Best effort: callers keep polling as the fallback.
   */
  watchInserts?(collection: string, onInsert: () => void): Promise<() => Promise<void>>;
  /** Resolves when the store answers; throws `UnavailableError` otherwise. */
  ping(): Promise<void>;
  /** Flush and release; later calls throw `AdapterClosedError`. Idempotent. */
  close(): Promise<void>;
}
