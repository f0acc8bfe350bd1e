/**
 * One attempt of a transaction: a snapshot view (committed state as of its start, plus its own writes),
 * a private write set, and the footprint of what it read, for validation at commit.
 *
 * Operations here are synchronous and work on internal (shared, never mutated) documents; the
 * collection handles copy what they hand out. An operation that throws here (a duplicate key, a type
 * error while updating) dooms the whole transaction, as it does on MongoDB: whatever it half did can
 * never commit.
 */
import { randomUUID } from "node:crypto";
import { DuplicateKeyError, InvalidDocumentError } from "../../errors";
import { assertValidValue, isOperatorObject } from "../query-subset";
import type { Doc, Filter, NewDoc, Sort, Update } from "../store.port";
import type { CollectionState, Engine, TransactionFootprint } from "./engine";
import { comparePostings, type IndexState, type Posting } from "./indexes";
import { compileFilter } from "./matcher";
import type { Predicate } from "./matcher";
import { compileSort } from "./sorting";
import { applyUpdate, upsertSeed } from "./updater";
import { cloneValue, compareValues, keyOf, valuesEqual } from "./values";

/** Options of a query inside the engine (already validated). */
export interface QueryOptions {
  sort?: Sort;
  skip?: number;
  limit?: number;
}

/** What an update did. */
export interface UpdateOutcome {
  matched: number;
  modified: number;
  upsertedId: string | null;
  /** The first matched document before the update (or null). */
  before: Doc | null;
  /** The first matched (or upserted) document after the update (or null). */
  after: Doc | null;
}

function isScalar(value: unknown): boolean {
  return value === null || typeof value !== "object" || value instanceof Date;
}

/** Scalar values a path must equal for `filter` to match, from top-level (and `$and`) conditions. */
function equalityConstraints(filter: Filter, out = new Map<string, unknown[]>()): Map<string, unknown[]> {
  for (const [key, value] of Object.entries(filter)) {
    if (key === "$and") {
      for (const clause of value as Filter[]) equalityConstraints(clause, out);
      continue;
    }
    if (key.startsWith("$") || out.has(key)) continue;
    if (!isOperatorObject(value)) {
      if (isScalar(value)) out.set(key, [value]);
    } else if (Object.hasOwn(value, "$eq")) {
      if (isScalar(value.$eq)) out.set(key, [value.$eq]);
    } else if (Array.isArray(value.$in) && value.$in.every(isScalar)) {
      out.set(key, value.$in as unknown[]);
    }
  }
  return out;
}

/** Ids a filter confines its matches to, when it has an `_id` equality or `$in`; else null. */
function idConstraint(constraints: Map<string, unknown[]>): string[] | null {
  const ids = constraints.get("_id");
  if (ids === undefined) return null;
  return ids.filter((v): v is string => typeof v === "string");
}

/** Candidate ids from the most selective usable index, or null for a full scan. */
function planLookup(state: CollectionState, constraints: Map<string, unknown[]>): Iterable<string> | null {
  if (constraints.size === 0) return null;
  let best: Set<string> | null = null;
  for (const index of state.indexes.values()) {
    if (index.partialFilter !== undefined) continue; // usable only when the filter implies it
    const values = constraints.get(index.firstPath);
    if (values === undefined) continue;
    const ids = new Set<string>();
    const full = fullKeys(index, constraints);
    if (full !== null) {
      for (const key of full) for (const id of index.lookup(key) ?? []) ids.add(id);
    } else {
      for (const v of values) for (const id of index.lookupFirst(keyOf(v)) ?? []) ids.add(id);
    }
    if (best === null || ids.size < best.size) best = ids;
    if (best.size === 0) break;
  }
  return best;
}

/** Full compound keys when every path of the index has exactly one equality value. */
function fullKeys(index: IndexState, constraints: Map<string, unknown[]>): string[] | null {
  if (index.paths.length === 1) return null;
  const parts: string[] = [];
  for (const path of index.paths) {
    const values = constraints.get(path.join("."));
    if (values === undefined || values.length !== 1) return null;
    parts.push(keyOf(values[0]));
  }
  return [parts.join(",")];
}

/**
 * A test for "no value from here on can satisfy the filter's `$lt`/`$lte` on `path`" over values in
 * BSON order (top-level and `$and` conditions; comparisons are type-bracketed, so a value past the
 * bound in BSON order never matches); null when the filter bounds `path` from above nowhere.
 */
function pastUpperBound(filter: Filter, path: string): ((value: unknown) => boolean) | null {
  const tests: ((value: unknown) => boolean)[] = [];
  const collect = (clause: Filter): void => {
    for (const [key, condition] of Object.entries(clause)) {
      if (key === "$and") for (const inner of condition as Filter[]) collect(inner);
      if (key !== path || !isOperatorObject(condition)) continue;
      if (Object.hasOwn(condition, "$lte")) tests.push((v) => compareValues(v, condition.$lte) > 0);
      if (Object.hasOwn(condition, "$lt")) tests.push((v) => compareValues(v, condition.$lt) >= 0);
    }
  };
  collect(filter);
  return tests.length === 0 ? null : (value) => tests.some((past) => past(value));
}

/** Ids of sorted posting lists, merged in posting order, until `past` says no later value can match. */
function* mergePostings(
  lists: readonly (readonly Posting[])[],
  past: ((value: unknown) => boolean) | null,
): Generator<string> {
  const at = lists.map(() => 0);
  for (;;) {
    let best = -1;
    for (let i = 0; i < lists.length; i++) {
      const head = (lists[i] as readonly Posting[])[at[i] as number];
      if (head === undefined) continue;
      if (
        best < 0 ||
        comparePostings(head, (lists[best] as readonly Posting[])[at[best] as number] as Posting) < 0
      )
        best = i;
    }
    if (best < 0) return;
    const posting = (lists[best] as readonly Posting[])[at[best] as number] as Posting;
    if (past?.(posting.value) === true) return;
    at[best] = (at[best] as number) + 1;
    yield posting.id;
  }
}

/** The committed documents of `ids`, in that order. */
function* documentsOf(state: CollectionState, ids: Iterable<string>): Generator<Doc> {
  for (const id of ids) {
    const doc = state.docs.get(id);
    if (doc !== undefined) yield doc;
  }
}

/** A copy of `doc` with `_id` first, as MongoDB stores it. */
function withIdFirst(id: string, doc: Record<string, unknown>): Doc {
  const out: Doc = { _id: id };
  for (const key of Object.keys(doc)) if (key !== "_id" && doc[key] !== undefined) out[key] = doc[key];
  return out;
}

export class TransactionContext implements TransactionFootprint {
  readonly touched = new Set<string>();
  readonly reads = new Map<string, Set<string>>();
  readonly predicates = new Map<string, Predicate[]>();
  readonly keyReads = new Map<string, Map<string, Set<string>>>();
  readonly writes = new Map<string, Map<string, Doc | null>>();
  /** Unique-index keys of this transaction's own written versions: collection → index → key → ids. */
  private readonly ownKeys = new Map<string, Map<string, Map<string, Set<string>>>>();
  status: "active" | "committing" | "finished" = "active";
  /** The error of a failed operation: the transaction can no longer commit (MongoDB aborts it too). */
  doomedBy: unknown = undefined;

  /**
   * @param recording false for a one-shot auto-commit read, which needs no footprint.
   */
  constructor(
    private readonly engine: Engine,
    readonly startSeq: number,
    private readonly recording: boolean,
  ) {}

  /** Whether the transaction wrote anything (a read-only one commits without validation). */
  get hasWrites(): boolean {
    for (const docs of this.writes.values()) if (docs.size > 0) return true;
    return false;
  }

  // -- the snapshot view ----------------------------------------------------------------------

  /** The version of a document this transaction sees, or null. */
  private resolve(collection: string, id: string): Doc | null {
    const own = this.writes.get(collection)?.get(id);
    if (own !== undefined) return own;
    const state = this.engine.collections.get(collection);
    if (state === undefined) return null;
    if (this.startSeq < this.engine.seq) {
      const entries = state.history.get(id);
      if (entries !== undefined) for (const e of entries) if (e.seq > this.startSeq) return e.before;
    }
    return state.docs.get(id) ?? null;
  }

  /** The newest version (own write, else latest committed) — for unique checks. */
  private resolveLatest(collection: string, id: string): Doc | null {
    const own = this.writes.get(collection)?.get(id);
    if (own !== undefined) return own;
    return this.engine.collections.get(collection)?.docs.get(id) ?? null;
  }

  /** Calls `visit` with each visible document that may match; stops when it returns false. */
  private scan(collection: string, constraints: Map<string, unknown[]>, visit: (doc: Doc) => boolean): void {
    const state = this.engine.collections.get(collection);
    const ids = idConstraint(constraints);
    if (ids !== null) {
      for (const id of new Set(ids)) {
        const doc = this.resolve(collection, id);
        if (doc !== null && !visit(doc)) return;
      }
      return;
    }
    const own = this.writes.get(collection);
    const planned = state === undefined ? null : planLookup(state, constraints);
    const stale = state !== undefined && this.startSeq < this.engine.seq && state.history.size > 0;
    if ((own === undefined || own.size === 0) && !stale) {
      if (state === undefined) return;
      if (planned === null) {
        for (const doc of state.docs.values()) if (!visit(doc)) return;
      } else {
        for (const id of planned) {
          const doc = state.docs.get(id);
          if (doc !== undefined && !visit(doc)) return;
        }
      }
      return;
    }
    const seen = new Set<string>();
    const each = (id: string): boolean => {
      if (seen.has(id)) return true;
      seen.add(id);
      const doc = this.resolve(collection, id);
      return doc === null || visit(doc);
    };
    for (const id of planned ?? state?.docs.keys() ?? []) if (!each(id)) return;
    if (stale) for (const id of state.history.keys()) if (!each(id)) return;
    if (own !== undefined) for (const id of own.keys()) if (!each(id)) return;
  }

  /**
   * The candidates of a sorted query in sort order, from a compound index whose first path the
   * filter pins by equality (or `$in`) and whose second path is the sort (ascending, then `_id`
   * ascending at most); null when no index serves it, or when this transaction's view differs from
   * the committed state the index describes (own writes, an older snapshot).
   */
  private inIndexOrder(
    collection: string,
    filter: Filter,
    constraints: Map<string, unknown[]>,
    sort: Sort,
  ): Iterable<Doc> | null {
    const fields = Object.entries(sort);
    const [path, direction] = fields[0] ?? [];
    if (path === undefined || direction !== 1 || path === "_id") return null;
    if (fields.length > 2 || (fields.length === 2 && (fields[1]?.[0] !== "_id" || fields[1]?.[1] !== 1)))
      return null;
    if (constraints.has("_id")) return null;
    const state = this.engine.collections.get(collection);
    if (state === undefined) return null;
    if ((this.writes.get(collection)?.size ?? 0) > 0) return null;
    if (this.startSeq < this.engine.seq && state.history.size > 0) return null;
    for (const index of state.indexes.values()) {
      if (!index.keepsOrder || index.secondPath !== path) continue;
      const values = constraints.get(index.firstPath);
      if (values === undefined || !values.every(isScalar)) continue;
      const lists = [...new Set(values.map((v) => keyOf(v)))].map((key) => index.orderedByFirst(key) ?? []);
      return documentsOf(state, mergePostings(lists, pastUpperBound(filter, path)));
    }
    return null;
  }

  // -- footprint ------------------------------------------------------------------------------

  private recordId(collection: string, id: string): void {
    if (!this.recording) return;
    this.touched.add(collection);
    let ids = this.reads.get(collection);
    if (ids === undefined) this.reads.set(collection, (ids = new Set()));
    ids.add(id);
  }

  /**
   * Records a query: by ids when the filter pins `_id`; else as a predicate — narrowed, for a sorted
   * query whose limit was reached, to documents sorting no later than the last one returned.
   */
  private recordQuery(
    collection: string,
    constraints: Map<string, unknown[]>,
    match: Predicate,
    notAfterLast?: (doc: Doc) => boolean,
  ): void {
    if (!this.recording) return;
    this.touched.add(collection);
    const ids = idConstraint(constraints);
    if (ids !== null) {
      for (const id of ids) this.recordId(collection, id);
      return;
    }
    const predicate: Predicate =
      notAfterLast === undefined ? match : (doc) => match(doc) && notAfterLast(doc as Doc);
    let list = this.predicates.get(collection);
    if (list === undefined) this.predicates.set(collection, (list = []));
    list.push(predicate);
  }

  private recordKey(collection: string, index: string, key: string): void {
    if (!this.recording) return;
    this.touched.add(collection);
    let byIndex = this.keyReads.get(collection);
    if (byIndex === undefined) this.keyReads.set(collection, (byIndex = new Map()));
    let keys = byIndex.get(index);
    if (keys === undefined) byIndex.set(index, (keys = new Set()));
    keys.add(key);
  }

  // -- private writes -------------------------------------------------------------------------

  private put(collection: string, id: string, doc: Doc | null): void {
    let docs = this.writes.get(collection);
    if (docs === undefined) this.writes.set(collection, (docs = new Map()));
    this.setOwn(collection, id, doc);
    this.recordId(collection, id);
  }

  private setOwn(collection: string, id: string, next: Doc | null): void {
    const docs = this.writes.get(collection) as Map<string, Doc | null>;
    const previous = docs.get(id);
    const unique = this.engine.collections.get(collection)?.uniqueIndexes ?? [];
    if (unique.length > 0) {
      let byIndex = this.ownKeys.get(collection);
      if (byIndex === undefined) this.ownKeys.set(collection, (byIndex = new Map()));
      for (const index of unique) {
        let keys = byIndex.get(index.name);
        if (keys === undefined) byIndex.set(index.name, (keys = new Map()));
        if (previous) for (const { key } of index.keysOf(previous)) keys.get(key)?.delete(id);
        if (next) {
          for (const { key } of index.keysOf(next)) {
            const ids = keys.get(key);
            if (ids === undefined) keys.set(key, new Set([id]));
            else ids.add(id);
          }
        }
      }
    }
    docs.set(id, next);
  }

  /**
   * Checks a new version against every index of the collection before it is written: it must be
   * indexable (no parallel arrays in a compound index) and share no unique key with another visible
   * document (`DuplicateKeyError`). Nothing can fail later, once the commit is durable.
   */
  private checkIndexes(collection: string, doc: Doc): void {
    const state = this.engine.collections.get(collection);
    if (state === undefined) return;
    for (const index of state.indexes.values()) {
      const keys = index.keysOf(doc);
      if (!index.unique) continue;
      const own = this.ownKeys.get(collection)?.get(index.name);
      for (const { key, values } of keys) {
        this.recordKey(collection, index.name, key);
        const duplicate = (): never => {
          throw new DuplicateKeyError(collection, index.name, index.keyValue(values));
        };
        for (const id of own?.get(key) ?? []) if (id !== doc._id) duplicate();
        for (const id of index.lookup(key) ?? []) {
          if (id === doc._id) continue;
          const other = this.resolveLatest(collection, id);
          if (other !== null && index.keysOf(other).some((k) => k.key === key)) duplicate();
        }
      }
    }
  }

  private insertNew(collection: string, doc: Doc): void {
    this.recordId(collection, doc._id);
    if (this.resolve(collection, doc._id) !== null) {
      throw new DuplicateKeyError(collection, "_id_", { _id: doc._id });
    }
    this.checkIndexes(collection, doc);
    this.put(collection, doc._id, doc);
  }

  // -- operations -----------------------------------------------------------------------------

  /** Inserts documents already checked by `assertValidDocument`. */
  insert<T extends Doc>(collection: string, inputs: readonly NewDoc<T>[]): string[] {
    const docs = inputs.map((input) => {
      const copy = cloneValue(input as Record<string, unknown>);
      return withIdFirst(typeof copy._id === "string" ? copy._id : randomUUID(), copy);
    });
    for (const doc of docs) this.insertNew(collection, doc);
    return docs.map((d) => d._id);
  }

  find(collection: string, filter: Filter, options: QueryOptions = {}): Doc[] {
    const constraints = equalityConstraints(filter);
    const match = compileFilter(filter);
    const order =
      options.sort !== undefined && Object.keys(options.sort).length > 0 ? compileSort(options.sort) : null;
    const skip = options.skip ?? 0;
    const limit = options.limit ?? 0;
    const inOrder =
      limit > 0 && options.sort !== undefined
        ? this.inIndexOrder(collection, filter, constraints, options.sort)
        : null;
    // read in the sort's own order, the first matches are the page: stop there
    const wanted =
      limit > 0 && (order === null || inOrder !== null) ? skip + limit : Number.POSITIVE_INFINITY;
    const found: Doc[] = [];
    const visit = (doc: Doc): boolean => {
      if (match(doc)) found.push(doc);
      return found.length < wanted;
    };
    if (inOrder === null) this.scan(collection, constraints, visit);
    else for (const doc of inOrder) if (!visit(doc)) break;
    const ordered = order === null ? found : order.top(found, limit > 0 ? skip + limit : found.length);
    const page = ordered.slice(skip, limit > 0 ? skip + limit : undefined);
    const full = order !== null && limit > 0 && page.length === limit;
    this.recordQuery(
      collection,
      constraints,
      match,
      full ? order.notAfter(page[page.length - 1] as Doc) : undefined,
    );
    return page;
  }

  count(collection: string, filter: Filter): number {
    const constraints = equalityConstraints(filter);
    const match = compileFilter(filter);
    let n = 0;
    this.scan(collection, constraints, (doc) => {
      if (match(doc)) n++;
      return true;
    });
    this.recordQuery(collection, constraints, match);
    return n;
  }

  update(
    collection: string,
    filter: Filter,
    update: Update,
    options: { multi: boolean; upsert: boolean; sort?: Sort },
  ): UpdateOutcome {
    const targets = this.find(collection, filter, { sort: options.sort, limit: options.multi ? 0 : 1 });
    const outcome: UpdateOutcome = {
      matched: targets.length,
      modified: 0,
      upsertedId: null,
      before: null,
      after: null,
    };
    for (const doc of targets) {
      const next = applyUpdate(doc, update, false);
      if (outcome.before === null) {
        outcome.before = doc;
        outcome.after = next;
      }
      if (valuesEqual(doc, next)) continue;
      this.checkIndexes(collection, next);
      this.put(collection, doc._id, next);
      outcome.modified++;
    }
    if (targets.length === 0 && options.upsert) {
      const built = applyUpdate(upsertSeed(filter) as Doc, update, true);
      const id: unknown = built._id;
      if (id !== undefined && typeof id !== "string") {
        throw new InvalidDocumentError(`_id must be a string, got ${typeof id}`, { path: "_id" });
      }
      const doc = withIdFirst(id ?? randomUUID(), built);
      assertValidValue(doc, "");
      this.insertNew(collection, doc);
      outcome.upsertedId = doc._id;
      outcome.after = doc;
    }
    return outcome;
  }

  delete(collection: string, filter: Filter, multi: boolean): number {
    const targets = this.find(collection, filter, { limit: multi ? 0 : 1 });
    for (const doc of targets) this.put(collection, doc._id, null);
    return targets.length;
  }
}
