/**
 * Embedded document store: the working set in memory, durability in one SQLite file, serializable
 * transactions by optimistic concurrency control, and group commit. Design: docs/adr/0003-embedded-document-store.md;
 * the supported subset and guarantees: docs/store.md.
 */
import {
  AdapterClosedError,
  DuplicateKeyError,
  InvalidDocumentError,
  TransactionConflictError,
  UnavailableError,
} from "../../errors";
import {
  assertSupportedFilter,
  assertValidDocument,
  assertSupportedFindOptions,
  assertSupportedIndexSpec,
  assertSupportedProjection,
  assertSupportedSort,
  assertSupportedUpdate,
  defaultIndexName,
} from "../query-subset";
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
} from "../store.port";
import { Engine } from "./engine";
import type { CommitRecord } from "./engine";
import { IndexState, normalizeSpec } from "./indexes";
import { compileProjection } from "./projection";
import { SqliteStorage } from "./sqlite.storage";
import { TransactionContext } from "./transaction";

export interface EmbeddedStoreOptions {
  /** Path of the SQLite file (created with its directory when missing). */
  file: string;
  /** "full" (default): a commit survives power loss. "normal": it survives a process crash, not power loss. */
  synchronous?: "full" | "normal";
  /** How often expired TTL documents are removed (default 60 000 ms, like MongoDB's TTL monitor). */
  ttlSweepIntervalMs?: number;
  /** Default of `TransactionOptions.maxRetryTimeMs` (30 000 ms). */
  maxRetryTimeMs?: number;
  /** Refuse commits that would grow the file past this many bytes (default: no limit). */
  maxSizeBytes?: number;
}

/** A commit waiting for the next group flush. */
interface CommitRequest {
  tx: TransactionContext;
  resolve: (outcome: "committed" | "conflict") => void;
  reject: (error: unknown) => void;
}

/** Runs an operation either in a caller's transaction or as its own auto-commit transaction. */
interface OperationScope {
  read<R>(operation: (tx: TransactionContext) => R): Promise<R>;
  write<R>(operation: (tx: TransactionContext) => R): Promise<R>;
}

const DEFAULT_TTL_SWEEP_MS = 60_000;
const DEFAULT_MAX_RETRY_MS = 30_000;

function assertCollectionName(name: string): void {
  if (typeof name !== "string" || name.length === 0 || name.includes("\0") || name.includes("$")) {
    throw new InvalidDocumentError(`invalid collection name ${JSON.stringify(name)}`, { collection: name });
  }
}

/** Waits before retry `attempt` (1-based): the first at once, then jittered and growing up to 50 ms. */
function backoff(attempt: number): Promise<void> {
  if (attempt <= 1) return new Promise((resolve) => setImmediate(resolve));
  const ceiling = Math.min(50, 2 ** (attempt - 1));
  return new Promise((resolve) => setTimeout(resolve, Math.random() * ceiling));
}

/** A collection bound to a scope (auto-commit or one transaction). */
class EmbeddedCollection<T extends Doc> implements Collection<T> {
  constructor(
    readonly name: string,
    private readonly scope: OperationScope,
  ) {}

  async insertOne(doc: NewDoc<T>): Promise<InsertOneResult> {
    assertValidDocument(doc);
    const [insertedId] = await this.scope.write((tx) => tx.insert(this.name, [doc]));
    return { insertedId: insertedId as string };
  }

  async insertMany(docs: NewDoc<T>[]): Promise<InsertManyResult> {
    if (!Array.isArray(docs)) throw new InvalidDocumentError("insertMany needs an array of documents");
    if (docs.length === 0) return { insertedIds: [] };
    for (const doc of docs) assertValidDocument(doc);
    const insertedIds = await this.scope.write((tx) => tx.insert(this.name, docs));
    return { insertedIds };
  }

  async findOne(filter: Filter, options: FindOptions = {}): Promise<T | null> {
    const [doc] = await this.find(filter, { ...options, limit: 1 });
    return doc ?? null;
  }

  async find(filter: Filter, options: FindOptions = {}): Promise<T[]> {
    assertSupportedFilter(filter);
    assertSupportedFindOptions(options);
    const project = compileProjection(options.projection);
    return this.scope.read((tx) => tx.find(this.name, filter ?? {}, options).map((doc) => project(doc) as T));
  }

  async countDocuments(filter: Filter = {}): Promise<number> {
    assertSupportedFilter(filter);
    return this.scope.read((tx) => tx.count(this.name, filter ?? {}));
  }

  async updateOne(filter: Filter, update: Update, options: UpdateOptions = {}): Promise<UpdateResult> {
    return this.update(filter, update, options, false);
  }

  async updateMany(filter: Filter, update: Update, options: UpdateOptions = {}): Promise<UpdateResult> {
    return this.update(filter, update, options, true);
  }

  private async update(
    filter: Filter,
    update: Update,
    options: UpdateOptions,
    multi: boolean,
  ): Promise<UpdateResult> {
    assertSupportedFilter(filter);
    assertSupportedUpdate(update);
    const outcome = await this.scope.write((tx) =>
      tx.update(this.name, filter ?? {}, update, { multi, upsert: options.upsert === true }),
    );
    return { matchedCount: outcome.matched, modifiedCount: outcome.modified, upsertedId: outcome.upsertedId };
  }

  async findOneAndUpdate(
    filter: Filter,
    update: Update,
    options: FindOneAndUpdateOptions = {},
  ): Promise<T | null> {
    assertSupportedFilter(filter);
    assertSupportedUpdate(update);
    assertSupportedSort(options.sort);
    assertSupportedProjection(options.projection);
    const project = compileProjection(options.projection);
    return this.scope.write((tx) => {
      const outcome = tx.update(this.name, filter ?? {}, update, {
        multi: false,
        upsert: options.upsert === true,
        sort: options.sort,
      });
      const doc = options.returnDocument === "after" ? outcome.after : outcome.before;
      return doc === null ? null : (project(doc) as T);
    });
  }

  async deleteOne(filter: Filter): Promise<DeleteResult> {
    assertSupportedFilter(filter);
    return { deletedCount: await this.scope.write((tx) => tx.delete(this.name, filter ?? {}, false)) };
  }

  async deleteMany(filter: Filter): Promise<DeleteResult> {
    assertSupportedFilter(filter);
    return { deletedCount: await this.scope.write((tx) => tx.delete(this.name, filter ?? {}, true)) };
  }
}

/** The handle a transaction body receives. */
class EmbeddedTransaction implements Transaction, OperationScope {
  constructor(private readonly tx: TransactionContext) {}

  collection<T extends Doc = Doc>(name: string): Collection<T> {
    assertCollectionName(name);
    return new EmbeddedCollection<T>(name, this);
  }

  private active(): TransactionContext {
    if (this.tx.doomedBy !== undefined) {
      throw new AdapterClosedError(
        `transaction (aborted by an earlier failed operation: ${String(this.tx.doomedBy)})`,
      );
    }
    if (this.tx.status !== "active")
      throw new AdapterClosedError("transaction (it has already committed or aborted)");
    return this.tx;
  }

  async read<R>(operation: (tx: TransactionContext) => R): Promise<R> {
    return operation(this.active());
  }

  /** A write that fails part-way dooms the transaction: catching the error cannot make it commit. */
  async write<R>(operation: (tx: TransactionContext) => R): Promise<R> {
    const tx = this.active();
    try {
      return operation(tx);
    } catch (error) {
      tx.doomedBy = error;
      throw error;
    }
  }
}

export class EmbeddedDocumentStore implements DocumentStore {
  readonly kind = "embedded" as const;
  private state: "new" | "open" | "closing" | "closed" = "new";
  private readonly engine = new Engine();
  private readonly storage: SqliteStorage;
  private readonly ttlSweepIntervalMs: number;
  private readonly maxRetryTimeMs: number;
  private pending: CommitRequest[] = [];
  private flushScheduled = false;
  private sweepTimer: NodeJS.Timeout | null = null;
  private sweeping: Promise<void> | null = null;
  /** Transactions (and auto-commit writes) started and not yet settled; close() waits for them. */
  private readonly inFlight = new Set<Promise<unknown>>();
  private closing: Promise<void> | null = null;

  constructor(options: EmbeddedStoreOptions) {
    if (typeof options.file !== "string" || options.file.length === 0) {
      throw new InvalidDocumentError("EmbeddedDocumentStore needs a file path");
    }
    this.storage = new SqliteStorage({
      file: options.file,
      synchronous: options.synchronous ?? "full",
      maxSizeBytes: options.maxSizeBytes,
    });
    this.ttlSweepIntervalMs = options.ttlSweepIntervalMs ?? DEFAULT_TTL_SWEEP_MS;
    this.maxRetryTimeMs = options.maxRetryTimeMs ?? DEFAULT_MAX_RETRY_MS;
  }

  // -- lifecycle --------------------------------------------------------------------------------

  async open(): Promise<void> {
    if (this.state === "open") return;
    if (this.state !== "new") throw new AdapterClosedError("embedded document store");
    this.storage.open();
    try {
      for (const stored of this.storage.loadIndexes()) {
        this.engine
          .collection(stored.collection)
          .addIndex(new IndexState(stored.collection, stored.name, stored.spec));
      }
      this.storage.loadDocuments((collection, doc) =>
        this.engine.collection(collection).put(doc._id, null, doc),
      );
    } catch (error) {
      this.storage.close();
      throw new UnavailableError(`cannot load the store file: ${String(error)}`, undefined, error);
    }
    this.state = "open";
    if (this.ttlSweepIntervalMs > 0) {
      this.sweepTimer = setInterval(() => this.sweep(), this.ttlSweepIntervalMs);
      this.sweepTimer.unref();
    }
  }

  async ping(): Promise<void> {
    this.assertOpen();
    try {
      this.storage.ping();
    } catch (error) {
      throw new UnavailableError("embedded store does not answer", undefined, error);
    }
  }

  close(): Promise<void> {
    if (this.closing === null) this.closing = this.shutDown();
    return this.closing;
  }

  private async shutDown(): Promise<void> {
    if (this.state === "new") {
      this.state = "closed";
      return;
    }
    // From here on new work is refused; work already started may still commit.
    this.state = "closing";
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    await this.sweeping;
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
    this.flush();
    this.storage.close();
    this.state = "closed";
  }

  private assertOpen(): void {
    if (this.state !== "open") throw new AdapterClosedError("embedded document store");
  }

  // -- public API -------------------------------------------------------------------------------

  collection<T extends Doc = Doc>(name: string): Collection<T> {
    assertCollectionName(name);
    return new EmbeddedCollection<T>(name, this.autoCommit);
  }

  async createIndex(collection: string, spec: IndexSpec): Promise<string> {
    this.assertOpen();
    assertCollectionName(collection);
    assertSupportedIndexSpec(spec);
    const name = spec.name ?? defaultIndexName(spec.keys);
    const state = this.engine.collection(collection);
    const normalized = normalizeSpec(spec, name);
    const existing = state.indexes.get(name);
    if (existing !== undefined) {
      if (existing.normalized === normalized) return name;
      throw new InvalidDocumentError(
        `index ${name} of ${collection} already exists with a different definition`,
        {
          collection,
          index: name,
        },
      );
    }
    const sameDefinition = [...state.indexes.values()].find(
      (i) => normalizeSpec(i.spec, "") === normalizeSpec(spec, ""),
    );
    if (sameDefinition !== undefined) {
      throw new InvalidDocumentError(
        `index ${sameDefinition.name} of ${collection} already has this definition`,
        {
          collection,
          index: sameDefinition.name,
        },
      );
    }
    const stored: IndexSpec = { ...spec, name };
    const index = new IndexState(collection, name, stored);
    for (const [id, doc] of state.docs) {
      if (index.unique) {
        for (const { key, values } of index.keysOf(doc)) {
          const holders = index.lookup(key);
          if (holders !== undefined && holders.size > 0 && !holders.has(id)) {
            throw new DuplicateKeyError(collection, name, index.keyValue(values));
          }
        }
      }
      index.add(id, doc);
    }
    // Durable before visible.
    try {
      this.storage.saveIndex({ collection, name, spec: stored });
    } catch (error) {
      throw new UnavailableError(
        `could not store index ${name} of ${collection}`,
        { collection, index: name },
        error,
      );
    }
    this.engine.installIndex(state, index);
    return name;
  }

  async transaction<R>(fn: (tx: Transaction) => Promise<R>, options: TransactionOptions = {}): Promise<R> {
    return this.run((tx) => fn(new EmbeddedTransaction(tx)), options.maxRetryTimeMs ?? this.maxRetryTimeMs);
  }

  /** Runs `body` in a fresh transaction attempt until one commits or the retry budget is spent. */
  private run<R>(body: (tx: TransactionContext) => Promise<R>, budgetMs: number): Promise<R> {
    this.assertOpen();
    const running = this.attempts(body, budgetMs);
    this.inFlight.add(running);
    const settled = (): void => {
      this.inFlight.delete(running);
    };
    running.then(settled, settled);
    return running;
  }

  private async attempts<R>(body: (tx: TransactionContext) => Promise<R>, budgetMs: number): Promise<R> {
    const started = Date.now();
    for (let attempt = 1; ; attempt++) {
      const tx = new TransactionContext(this.engine, this.engine.seq, true);
      this.engine.register(tx);
      let result: R;
      try {
        result = await body(tx);
      } catch (error) {
        tx.status = "finished";
        this.engine.end(tx);
        throw error;
      }
      if ((await this.commit(tx)) === "committed") return result;
      if (Date.now() - started >= budgetMs) {
        throw new TransactionConflictError(`transaction still conflicting after ${attempt} attempts`, {
          attempts: attempt,
          elapsedMs: Date.now() - started,
        });
      }
      await backoff(attempt);
    }
  }

  /** Auto-commit: reads see the latest committed state; each write is a transaction of its own. */
  private readonly autoCommit: OperationScope = {
    read: async (operation) => {
      this.assertOpen();
      return operation(new TransactionContext(this.engine, this.engine.seq, false));
    },
    write: async (operation) => this.run(async (tx) => operation(tx), this.maxRetryTimeMs),
  };

  // -- commit path --------------------------------------------------------------------------------

  /** Queues a transaction for the next group flush; read-only ones commit at once. */
  private commit(tx: TransactionContext): Promise<"committed" | "conflict"> {
    tx.status = "committing";
    if (tx.doomedBy !== undefined) {
      tx.status = "finished";
      this.engine.end(tx);
      return Promise.reject(tx.doomedBy);
    }
    if (!tx.hasWrites) {
      tx.status = "finished";
      this.engine.end(tx);
      return Promise.resolve("committed");
    }
    if (this.state === "closed") {
      tx.status = "finished";
      this.engine.end(tx);
      return Promise.reject(new AdapterClosedError("embedded document store"));
    }
    return new Promise((resolve, reject) => {
      this.pending.push({ tx, resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /**
   * Group commit: validates every queued transaction in arrival order (earlier accepted ones count as
   * committed), writes the accepted ones in ONE SQLite transaction, then applies them to memory and
   * only then settles their promises — nobody can read what is not yet durable.
   */
  private flush(): void {
    this.flushScheduled = false;
    const batch = this.pending;
    if (batch.length === 0) return;
    this.pending = [];
    const conflicted = new Set<CommitRequest>();
    const failed = new Map<CommitRequest, unknown>();
    const durable: CommitRecord[] = [];
    const accepted: Array<[CommitRequest, CommitRecord]> = [];
    try {
      for (const request of batch) {
        if (this.engine.conflicts(request.tx)) conflicted.add(request);
        else accepted.push([request, this.engine.accept(request.tx)]);
      }
    } catch (error) {
      // A defect in validation: fail the whole batch before anything is written.
      this.engine.discard(accepted.map(([, record]) => record));
      accepted.length = 0;
      for (const request of batch) if (!conflicted.has(request)) failed.set(request, error);
    }
    try {
      if (accepted.length > 0) this.storage.write(accepted.flatMap(([, record]) => record.writes));
      durable.push(...accepted.map(([, record]) => record));
    } catch (error) {
      this.engine.discard(accepted.map(([, record]) => record));
      if (accepted.length === 1) {
        failed.set((accepted[0] as [CommitRequest, CommitRecord])[0], error);
      } else {
        // One bad member (e.g. too large for the size limit) must not sink the others: write them one
        // by one. Dropping a member only removes writes that later members were validated against,
        // so they stay valid.
        for (const [request] of accepted) {
          const record = this.engine.accept(request.tx);
          try {
            this.storage.write(record.writes);
            durable.push(record);
          } catch (single) {
            this.engine.discard([record]);
            failed.set(request, single);
          }
        }
      }
    }
    this.engine.endAll(batch.map((r) => r.tx));
    for (const record of durable) this.engine.apply(record);
    this.engine.prune();
    for (const request of batch) {
      request.tx.status = "finished";
      const error = failed.get(request);
      if (error !== undefined) {
        request.reject(
          error instanceof UnavailableError
            ? error
            : new UnavailableError(
                `the store could not write the commit: ${String(error)}`,
                undefined,
                error,
              ),
        );
      } else {
        request.resolve(conflicted.has(request) ? "conflict" : "committed");
      }
    }
  }

  // -- TTL ------------------------------------------------------------------------------------------

  private sweep(): void {
    if (this.sweeping !== null || this.state !== "open") return;
    this.sweeping = this.sweepOnce()
      .catch(() => {
        // A sweep that fails (conflicts, store closing) is simply retried at the next interval.
      })
      .finally(() => {
        this.sweeping = null;
      });
  }

  /** Deletes documents whose TTL-indexed date (the earliest, for an array) is older than the index allows. */
  private async sweepOnce(): Promise<void> {
    for (const state of this.engine.collections.values()) {
      for (const index of state.indexes.values()) {
        if (index.ttlSeconds === undefined) continue;
        const cutoff = new Date(Date.now() - index.ttlSeconds * 1000);
        const expired: Filter = { [index.firstPath]: { $lt: cutoff } };
        const filter = index.partialFilter === undefined ? expired : { $and: [expired, index.partialFilter] };
        await this.transaction((tx) => tx.collection(state.name).deleteMany(filter));
      }
    }
  }
}
