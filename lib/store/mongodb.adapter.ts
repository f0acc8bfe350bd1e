/**
 * MongoDB adapter of the document-store port: the official driver, kept thin so that the
 * conformance suite (run whenever MONGO_URL is set) covers almost all of it.
 *
 * - Transactions: `session.withTransaction` (snapshot read concern, majority write concern); the
 *   driver re-runs the callback on TransientTransactionError, as the port allows.
 * - Multi-document auto-commit writes (`insertMany`, `updateMany`) run in a transaction of their
 *   own, so they are all-or-nothing on both adapters.
 * - Duplicate keys (code 11000) become `DuplicateKeyError`, type mismatches in updates
 *   `InvalidDocumentError`; every query and document goes through the same subset validation as
 *   the embedded engine.
 * - An operation that fails inside a transaction aborts it even when the body catches the error
 *   (the server has aborted it anyway); the first such error is rethrown when the body ends.
 * - A replica set (or sharded cluster) is required: transactions do not exist on a standalone server.
 */
import {
  MongoClient,
  MongoServerError,
  ObjectId,
  type ClientSession,
  type Collection as MongoRawCollection,
  type Db,
  type Filter as MongoFilter,
  type UpdateFilter,
} from "mongodb";
import {
  AdapterClosedError,
  DuplicateKeyError,
  InvalidDocumentError,
  TransactionConflictError,
  UnavailableError,
} from "../errors";
import {
  assertSupportedFilter,
  assertSupportedIndexSpec,
  assertSupportedProjection,
  assertSupportedSort,
  assertSupportedUpdate,
  assertValidDocument,
  isPlainObject,
} from "./query-subset";
import type {
  Collection,
  DeleteResult,
  Doc,
  DocumentStore,
  Filter,
  FindOneAndUpdateOptions,
  FindOptions,
  IndexSpec,
  InsertManyResult,
  InsertOneResult,
  NewDoc,
  Transaction,
  TransactionOptions,
  Update,
  UpdateOptions,
  UpdateResult,
} from "./store.port";

export interface MongoDocumentStoreOptions {
  /** Connection string of a replica set, e.g. `mongodb://mongo-0:27017/?replicaSet=rs0`. */
  url: string;
  /** Database of this store (one per service). */
  database: string;
  /** Give up connecting after this long (default 10 s). */
  connectTimeoutMs?: number;
}

const TX_OPTIONS = {
  readConcern: { level: "snapshot" as const },
  writeConcern: { w: "majority" as const },
  readPreference: "primary" as const,
};

export class MongoDocumentStore implements DocumentStore {
  readonly kind = "mongodb" as const;
  private readonly client: MongoClient;
  private db: Db | undefined;
  private closed = false;

  constructor(private readonly options: MongoDocumentStoreOptions) {
    const timeout = options.connectTimeoutMs ?? 10_000;
    this.client = new MongoClient(options.url, {
      serverSelectionTimeoutMS: timeout,
      connectTimeoutMS: timeout,
      writeConcern: { w: "majority" },
      retryWrites: true,
      // `undefined` fields are dropped, as the embedded engine does.
      ignoreUndefined: true,
    });
  }

  async open(): Promise<void> {
    if (this.closed) throw new AdapterClosedError("mongodb store");
    if (this.db !== undefined) return;
    try {
      await this.client.connect();
      const db = this.client.db(this.options.database);
      const hello = await db.admin().command({ hello: 1 });
      if (hello.setName === undefined && hello.msg !== "isdbgrid") {
        throw new UnavailableError("MONGO_URL must point at a replica set: transactions need one", {
          url: redact(this.options.url),
        });
      }
      this.db = db;
    } catch (err) {
      if (err instanceof UnavailableError) throw err;
      throw new UnavailableError(`cannot reach MongoDB at ${redact(this.options.url)}`, undefined, err);
    }
  }

  collection<T extends Doc = Doc>(name: string): Collection<T> {
    return new MongoCollection<T>(this, name, undefined);
  }

  async createIndex(collection: string, spec: IndexSpec): Promise<string> {
    assertSupportedIndexSpec(spec);
    try {
      return await this.database()
        .collection(collection)
        .createIndex(spec.keys, {
          ...(spec.name === undefined ? {} : { name: spec.name }),
          ...(spec.unique === undefined ? {} : { unique: spec.unique }),
          ...(spec.partialFilterExpression === undefined
            ? {}
            : { partialFilterExpression: spec.partialFilterExpression }),
          ...(spec.expireAfterSeconds === undefined ? {} : { expireAfterSeconds: spec.expireAfterSeconds }),
        });
    } catch (err) {
      throw translate(err, collection);
    }
  }

  async transaction<R>(fn: (tx: Transaction) => Promise<R>, _options?: TransactionOptions): Promise<R> {
    // The driver bounds its own retries (120 s); maxRetryTimeMs is an embedded-engine setting.
    const session = this.client.startSession();
    try {
      return await this.inSession(session, fn);
    } catch (err) {
      throw translate(err);
    } finally {
      await session.endSession();
    }
  }

  /** Run `fn` in a transaction on an existing session. */
  inSession<R>(session: ClientSession, fn: (tx: Transaction) => Promise<R>): Promise<R> {
    return session.withTransaction(async () => {
      const attempt: TxAttempt = { session, failure: undefined };
      const tx: Transaction = {
        collection: <T extends Doc = Doc>(name: string): Collection<T> =>
          new MongoCollection<T>(this, name, attempt),
      };
      const result = await fn(tx);
      // the server aborted the transaction when an operation failed: never commit a body that swallowed that
      if (attempt.failure !== undefined) throw attempt.failure;
      return result;
    }, TX_OPTIONS);
  }

  /** Run `fn` in a transaction unless a session is already open. */
  async atomically<R>(
    session: ClientSession | undefined,
    fn: (session: ClientSession) => Promise<R>,
  ): Promise<R> {
    if (session !== undefined) return fn(session);
    const own = this.client.startSession();
    try {
      return await own.withTransaction(() => fn(own), TX_OPTIONS);
    } finally {
      await own.endSession();
    }
  }

  async watchInserts(collection: string, onInsert: () => void): Promise<() => Promise<void>> {
    const stream = this.database()
      .collection(collection)
      .watch([{ $match: { operationType: "insert" } }], { fullDocument: "default" });
    stream.on("change", () => onInsert());
    // The driver resumes on resumable errors; any other ends the stream, and the caller's polling carries on.
    stream.on("error", () => undefined);
    return async () => {
      await stream.close();
    };
  }

  async ping(): Promise<void> {
    try {
      await this.database().command({ ping: 1 });
    } catch (err) {
      throw new UnavailableError(`MongoDB at ${redact(this.options.url)} does not answer`, undefined, err);
    }
  }

  /** Drop this store's database (tests and tooling only). */
  async dropDatabase(): Promise<void> {
    await this.database().dropDatabase();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.db = undefined;
    await this.client.close();
  }

  /** The connected database; throws when not open. */
  database(): Db {
    if (this.closed) throw new AdapterClosedError("mongodb store");
    if (this.db === undefined) throw new AdapterClosedError("mongodb store (not opened)");
    return this.db;
  }
}

/** One run of a transaction body: its session and the first operation error, if any. */
interface TxAttempt {
  session: ClientSession;
  failure: unknown;
}

class MongoCollection<T extends Doc> implements Collection<T> {
  private readonly session: ClientSession | undefined;

  constructor(
    private readonly store: MongoDocumentStore,
    readonly name: string,
    private readonly attempt: TxAttempt | undefined,
  ) {
    this.session = attempt?.session;
  }

  private get raw(): MongoRawCollection<StoredDoc> {
    return this.store.database().collection<StoredDoc>(this.name);
  }

  private get opts(): { session?: ClientSession } {
    return this.session === undefined ? {} : { session: this.session };
  }

  async insertOne(doc: NewDoc<T>): Promise<InsertOneResult> {
    assertValidDocument(doc);
    const withId = withGeneratedId(doc);
    await this.run(() => this.raw.insertOne(withId, this.opts));
    return { insertedId: withId._id };
  }

  async insertMany(docs: NewDoc<T>[]): Promise<InsertManyResult> {
    if (docs.length === 0) return { insertedIds: [] };
    for (const doc of docs) assertValidDocument(doc);
    const withIds = docs.map(withGeneratedId);
    await this.run(() =>
      this.store.atomically(this.session, (session) =>
        this.raw.insertMany(withIds, { session, ordered: true }),
      ),
    );
    return { insertedIds: withIds.map((d) => d._id) };
  }

  async findOne(filter: Filter, options: FindOptions = {}): Promise<T | null> {
    const [first] = await this.find(filter, { ...options, limit: 1 });
    return first ?? null;
  }

  async find(filter: Filter, options: FindOptions = {}): Promise<T[]> {
    assertSupportedFilter(filter);
    if (options.sort !== undefined) assertSupportedSort(options.sort);
    if (options.projection !== undefined) assertSupportedProjection(options.projection);
    const cursor = this.raw.find(filter as MongoFilter<StoredDoc>, {
      ...this.opts,
      ...(options.sort === undefined ? {} : { sort: options.sort }),
      ...(options.skip === undefined ? {} : { skip: options.skip }),
      ...(options.limit === undefined ? {} : { limit: options.limit }),
      ...(options.projection === undefined ? {} : { projection: options.projection }),
    });
    return (await this.run(() => cursor.toArray())) as unknown as T[];
  }

  async countDocuments(filter: Filter = {}): Promise<number> {
    assertSupportedFilter(filter);
    return this.run(() => this.raw.countDocuments(filter as MongoFilter<StoredDoc>, this.opts));
  }

  async updateOne(filter: Filter, update: Update, options: UpdateOptions = {}): Promise<UpdateResult> {
    assertSupportedFilter(filter);
    assertSupportedUpdate(update);
    const result = await this.run(() =>
      this.raw.updateOne(filter as MongoFilter<StoredDoc>, upsertable(filter, update, options), {
        ...this.opts,
        upsert: options.upsert === true,
      }),
    );
    return toUpdateResult(result);
  }

  async updateMany(filter: Filter, update: Update, options: UpdateOptions = {}): Promise<UpdateResult> {
    assertSupportedFilter(filter);
    assertSupportedUpdate(update);
    const result = await this.run(() =>
      this.store.atomically(this.session, (session) =>
        this.raw.updateMany(filter as MongoFilter<StoredDoc>, upsertable(filter, update, options), {
          session,
          upsert: options.upsert === true,
        }),
      ),
    );
    return toUpdateResult(result);
  }

  async findOneAndUpdate(
    filter: Filter,
    update: Update,
    options: FindOneAndUpdateOptions = {},
  ): Promise<T | null> {
    assertSupportedFilter(filter);
    assertSupportedUpdate(update);
    if (options.sort !== undefined) assertSupportedSort(options.sort);
    if (options.projection !== undefined) assertSupportedProjection(options.projection);
    const result = await this.run(() =>
      this.raw.findOneAndUpdate(filter as MongoFilter<StoredDoc>, upsertable(filter, update, options), {
        ...this.opts,
        upsert: options.upsert === true,
        returnDocument: options.returnDocument ?? "before",
        ...(options.sort === undefined ? {} : { sort: options.sort }),
        ...(options.projection === undefined ? {} : { projection: options.projection }),
      }),
    );
    return result as unknown as T | null;
  }

  async deleteOne(filter: Filter): Promise<DeleteResult> {
    assertSupportedFilter(filter);
    const result = await this.run(() => this.raw.deleteOne(filter as MongoFilter<StoredDoc>, this.opts));
    return { deletedCount: result.deletedCount };
  }

  async deleteMany(filter: Filter): Promise<DeleteResult> {
    assertSupportedFilter(filter);
    const result = await this.run(() => this.raw.deleteMany(filter as MongoFilter<StoredDoc>, this.opts));
    return { deletedCount: result.deletedCount };
  }

  /**
   * Port errors for server errors (duplicate key, type mismatch); transient errors stay as they
   * are so withTransaction retries. Inside a transaction the first failure is remembered.
   */
  private async run<R>(op: () => Promise<R>): Promise<R> {
    try {
      return await op();
    } catch (err) {
      const mapped = isDuplicateKey(err) ? duplicateKey(err, this.name) : invalidDocument(err);
      if (this.attempt !== undefined) this.attempt.failure ??= mapped;
      throw mapped;
    }
  }
}

/** An upsert must insert a string `_id` (as every document of the port has one) unless the filter fixes it. */
function upsertable(filter: Filter, update: Update, options: UpdateOptions): UpdateFilter<StoredDoc> {
  if (options.upsert !== true) return update as UpdateFilter<StoredDoc>;
  const setOnInsert = (update.$setOnInsert ?? {}) as Record<string, unknown>;
  const idInFilter = typeof filter._id === "string" || (isPlainObject(filter._id) && "$eq" in filter._id);
  if (idInFilter || "_id" in setOnInsert) return update as UpdateFilter<StoredDoc>;
  return { ...update, $setOnInsert: { ...setOnInsert, _id: newId() } } as UpdateFilter<StoredDoc>;
}

/** Server codes for updates that do not fit the document: $inc on a string, $push on a non-array, … */
const INVALID_DOCUMENT_CODES = new Set([2, 14, 28, 171]);

function invalidDocument(err: unknown): unknown {
  if (
    err instanceof MongoServerError &&
    typeof err.code === "number" &&
    INVALID_DOCUMENT_CODES.has(err.code)
  ) {
    return new InvalidDocumentError(err.message, { codeName: err.codeName });
  }
  return err;
}

function newId(): string {
  return new ObjectId().toHexString();
}

/** Documents as the driver sees them: string ids, like every document of the port. */
interface StoredDoc {
  _id: string;
  [field: string]: unknown;
}

function withGeneratedId<T extends Doc>(doc: NewDoc<T>): StoredDoc {
  return { ...doc, _id: doc._id ?? newId() };
}

function toUpdateResult(result: {
  matchedCount: number;
  modifiedCount: number;
  upsertedId: unknown;
}): UpdateResult {
  return {
    matchedCount: result.matchedCount,
    modifiedCount: result.modifiedCount,
    upsertedId: result.upsertedId == null ? null : String(result.upsertedId),
  };
}

function isDuplicateKey(err: unknown): err is MongoServerError {
  return err instanceof MongoServerError && err.code === 11000;
}

function duplicateKey(err: MongoServerError, collection: string): DuplicateKeyError {
  const index = /index: (\S+)/.exec(err.message)?.[1] ?? "unknown";
  const keyValue = (err.keyValue as Record<string, unknown> | undefined) ?? {};
  return new DuplicateKeyError(collection, index, keyValue, err);
}

/** Map what leaves a transaction or an index build to the port's errors. */
function translate(err: unknown, collection = "unknown"): unknown {
  if (isDuplicateKey(err)) return duplicateKey(err, collection);
  if (err instanceof MongoServerError && err.hasErrorLabel("TransientTransactionError")) {
    return new TransactionConflictError(
      "MongoDB transaction kept conflicting",
      { codeName: err.codeName },
      err,
    );
  }
  return err;
}

/** A connection string without its password, for messages. */
function redact(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== "") parsed.password = "***";
    return parsed.toString();
  } catch {
    return "<invalid url>";
  }
}
