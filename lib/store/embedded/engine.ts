/**
 * The in-memory side of the embedded store: committed documents per collection, their indexes, and
 * the commit log that serializable optimistic concurrency control validates against.
 *
 * Every commit gets a sequence number. A transaction remembers the sequence it started at and what it
 * read (ids, predicates, unique keys); it may commit only if nothing committed after its start touched
 * any of that. Until every transaction that started before a commit has finished, the commit's record
 * (with before-images) is kept, both for that validation and so those transactions keep reading the
 * snapshot they started from.
 */
import type { Doc } from "../store.port";
import type { IndexState } from "./indexes";
import type { Predicate } from "./matcher";

/** One document changed by a commit. */
export interface WriteRecord {
  collection: string;
  id: string;
  before: Doc | null;
  after: Doc | null;
}

/** What one commit changed: documents, or (`schema`) the indexes of a collection. */
export interface CommitRecord {
  seq: number;
  writes: WriteRecord[];
  schema: string | null;
}

/** An older version of a document, still visible to transactions that started before `seq`. */
interface HistoryEntry {
  seq: number;
  before: Doc | null;
}

/** What a transaction read and wrote, as validation needs it. */
export interface TransactionFootprint {
  readonly startSeq: number;
  /** Collections it read or wrote. */
  readonly touched: ReadonlySet<string>;
  /** Ids it read (every id it wrote is also here). */
  readonly reads: ReadonlyMap<string, ReadonlySet<string>>;
  /** Filters it evaluated; a concurrent write whose before- or after-image matches one conflicts. */
  readonly predicates: ReadonlyMap<string, readonly Predicate[]>;
  /** Unique-index keys it checked, per collection and index name. */
  readonly keyReads: ReadonlyMap<string, ReadonlyMap<string, ReadonlySet<string>>>;
  /** Its private writes: null = deleted. */
  readonly writes: ReadonlyMap<string, ReadonlyMap<string, Doc | null>>;
}

/** The committed state of one collection. */
export class CollectionState {
  readonly docs = new Map<string, Doc>();
  readonly indexes = new Map<string, IndexState>();
  /** Before-images for running transactions, oldest first, per id. */
  readonly history = new Map<string, HistoryEntry[]>();
  private unique: IndexState[] = [];

  constructor(readonly name: string) {}

  /** Unique indexes, for constraint checks. */
  get uniqueIndexes(): readonly IndexState[] {
    return this.unique;
  }

  /** Adds an index that already holds every document of the collection. */
  addIndex(index: IndexState): void {
    this.indexes.set(index.name, index);
    this.unique = [...this.indexes.values()].filter((i) => i.unique);
  }

  /** Replaces (or with null removes) the committed version of a document, keeping indexes current. */
  put(id: string, before: Doc | null, after: Doc | null): void {
    if (before !== null) for (const index of this.indexes.values()) index.remove(id, before);
    if (after === null) {
      this.docs.delete(id);
      return;
    }
    this.docs.set(id, after);
    for (const index of this.indexes.values()) index.add(id, after);
  }
}

export class Engine {
  /** Sequence of the last commit applied to memory (what new transactions start from). */
  seq = 0;
  private lastAssigned = 0;
  readonly collections = new Map<string, CollectionState>();
  private readonly log: CommitRecord[] = [];
  private readonly running = new Set<TransactionFootprint>();

  /** The state of a collection, created empty on first use. */
  collection(name: string): CollectionState {
    let state = this.collections.get(name);
    if (state === undefined) {
      state = new CollectionState(name);
      this.collections.set(name, state);
    }
    return state;
  }

  /** Starts tracking a transaction (its snapshot and its validation window). */
  register(tx: TransactionFootprint): void {
    this.running.add(tx);
  }

  /** Stops tracking a transaction; records no running transaction needs any more are dropped. */
  end(tx: TransactionFootprint): void {
    if (this.running.delete(tx)) this.prune();
  }

  /** Ends several transactions at once (a flushed batch), pruning once. */
  endAll(txs: Iterable<TransactionFootprint>): void {
    for (const tx of txs) this.running.delete(tx);
  }

  /** Whether anything committed (or accepted into the current batch) after `tx` started conflicts with it. */
  conflicts(tx: TransactionFootprint): boolean {
    for (let i = this.log.length - 1; i >= 0; i--) {
      const record = this.log[i] as CommitRecord;
      if (record.seq <= tx.startSeq) break;
      if (record.schema !== null && tx.touched.has(record.schema)) return true;
      for (const write of record.writes) {
        if (tx.touched.has(write.collection) && this.writeConflicts(tx, write)) return true;
      }
    }
    return false;
  }

  private writeConflicts(tx: TransactionFootprint, write: WriteRecord): boolean {
    if (tx.reads.get(write.collection)?.has(write.id) === true) return true;
    const predicates = tx.predicates.get(write.collection);
    if (predicates !== undefined) {
      for (const p of predicates) {
        if ((write.before !== null && p(write.before)) || (write.after !== null && p(write.after)))
          return true;
      }
    }
    const keyReads = tx.keyReads.get(write.collection);
    if (keyReads !== undefined) {
      const state = this.collections.get(write.collection);
      for (const [indexName, keys] of keyReads) {
        const index = state?.indexes.get(indexName);
        if (index === undefined) continue;
        for (const image of [write.before, write.after]) {
          if (image === null) continue;
          for (const { key } of index.keysOf(image)) if (keys.has(key)) return true;
        }
      }
    }
    return false;
  }

  /**
   * Turns a validated transaction into a commit record and appends it to the log, so that later
   * members of the same batch are validated against it. Not yet applied to memory.
   */
  accept(tx: TransactionFootprint): CommitRecord {
    const writes: WriteRecord[] = [];
    for (const [collection, docs] of tx.writes) {
      const state = this.collections.get(collection);
      for (const [id, after] of docs) {
        const before = state?.docs.get(id) ?? null;
        if (before === null && after === null) continue;
        writes.push({ collection, id, before, after });
      }
    }
    const record: CommitRecord = { seq: ++this.lastAssigned, writes, schema: null };
    this.log.push(record);
    return record;
  }

  /** Removes accepted records whose durable write failed. */
  discard(records: readonly CommitRecord[]): void {
    for (const record of records) {
      const at = this.log.lastIndexOf(record);
      if (at >= 0) this.log.splice(at, 1);
    }
  }

  /** Applies a durable record to memory, keeping before-images for transactions still running. */
  apply(record: CommitRecord): void {
    const keepHistory = this.running.size > 0;
    for (const write of record.writes) {
      const state = this.collection(write.collection);
      state.put(write.id, write.before, write.after);
      if (keepHistory) {
        const entries = state.history.get(write.id);
        const entry = { seq: record.seq, before: write.before };
        if (entries === undefined) state.history.set(write.id, [entry]);
        else entries.push(entry);
      }
    }
    this.seq = record.seq;
  }

  /** Installs a new index: transactions that started earlier and touched the collection will conflict. */
  installIndex(state: CollectionState, index: IndexState): void {
    state.addIndex(index);
    const record: CommitRecord = { seq: ++this.lastAssigned, writes: [], schema: state.name };
    this.log.push(record);
    this.seq = record.seq;
    this.prune();
  }

  /** Drops log records and before-images no running transaction can need. */
  prune(): void {
    let horizon = Number.POSITIVE_INFINITY;
    for (const tx of this.running) if (tx.startSeq < horizon) horizon = tx.startSeq;
    let drop = 0;
    while (drop < this.log.length && (this.log[drop] as CommitRecord).seq <= horizon) drop++;
    if (drop === 0) return;
    for (const record of this.log.splice(0, drop)) {
      for (const write of record.writes) {
        const state = this.collections.get(write.collection);
        const entries = state?.history.get(write.id);
        if (state === undefined || entries === undefined) continue;
        if ((entries[0] as HistoryEntry).seq === record.seq) entries.shift();
        if (entries.length === 0) state.history.delete(write.id);
      }
    }
  }
}
