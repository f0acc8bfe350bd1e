/**
 * Secondary indexes over a collection's committed documents: key → ids, for unique constraints and for
 * equality lookups. Keys follow MongoDB: a missing field indexes as null, an array indexes each
 * element (multikey), a compound index takes the cross product (at most one array-valued path).
 *
 * A compound index also keeps, per value of its first path, the ids in the order of its second path
 * (then id): a query with an equality on the first path, sorted by the second and limited, reads
 * only as far as its limit — a claim of the oldest due rows of a queue reads `limit` rows, not the
 * backlog. That order is kept while every document has at most one scalar at both paths; the first
 * array (multikey) turns it off for good, and such queries scan as before.
 */
import { InvalidDocumentError } from "../../errors";
import type { Doc, Filter, IndexSpec } from "../store.port";
import { compileFilter } from "./matcher";
import type { Predicate } from "./matcher";
import { MISSING, compareStrings, compareValues, keyOf, valuesAtPath } from "./values";

/** Key of an empty array (MongoDB indexes it as `undefined`; two of them collide in a unique index). */
const EMPTY_ARRAY_KEY = "[]";

/** One key of a document in an index, with the values it was made from (for error messages). */
export interface IndexKey {
  key: string;
  values: unknown[];
}

/** The comparable form of a spec, for "same spec → no-op". */
export function normalizeSpec(spec: IndexSpec, name: string): string {
  return JSON.stringify({
    name,
    keys: Object.entries(spec.keys),
    unique: spec.unique === true,
    partialFilterExpression: spec.partialFilterExpression ?? null,
    expireAfterSeconds: spec.expireAfterSeconds ?? null,
  });
}

function pathKeys(doc: Doc, parts: readonly string[]): { keys: Map<string, unknown>; multi: boolean } {
  const keys = new Map<string, unknown>();
  const leaves = valuesAtPath(doc, parts);
  let multi = leaves.length > 1;
  for (const leaf of leaves) {
    if (leaf === MISSING) {
      keys.set("null", null);
    } else if (Array.isArray(leaf)) {
      multi = true;
      if (leaf.length === 0) keys.set(EMPTY_ARRAY_KEY, []);
      for (const element of leaf) keys.set(keyOf(element), element);
    } else {
      keys.set(keyOf(leaf), leaf);
    }
  }
  return { keys, multi };
}

/** An index of one collection. */
export class IndexState {
  readonly paths: string[][];
  readonly unique: boolean;
  readonly ttlSeconds: number | undefined;
  readonly partialFilter: Filter | undefined;
  readonly normalized: string;
  private readonly partial: Predicate | null;
  private readonly entries = new Map<string, Set<string>>();
  /** Ids by the key of the first path alone (compound indexes only), for prefix lookups. */
  private readonly first: Map<string, Set<string>> | null;
  /** Ids per first-path key in second-path order (compound, non-partial indexes), until a multikey document. */
  private ordered: OrderedPostings | null;

  constructor(
    readonly collection: string,
    readonly name: string,
    readonly spec: IndexSpec,
  ) {
    this.paths = Object.keys(spec.keys).map((p) => p.split("."));
    this.unique = spec.unique === true;
    this.ttlSeconds = spec.expireAfterSeconds;
    this.partialFilter = spec.partialFilterExpression;
    this.partial =
      spec.partialFilterExpression === undefined ? null : compileFilter(spec.partialFilterExpression);
    this.first = this.paths.length > 1 ? new Map() : null;
    this.ordered = this.paths.length > 1 && this.partial === null ? new OrderedPostings() : null;
    this.normalized = normalizeSpec(spec, name);
  }

  /** The second key path, dotted; undefined for a single-path index. */
  get secondPath(): string | undefined {
    return this.paths[1]?.join(".");
  }

  /**
   * Ids whose first path has `key`, in the order of the second path (a missing value as null,
   * BSON order) then id; undefined when the index keeps no such order (single-path, partial, or
   * a multikey document seen).
   */
  orderedByFirst(key: string): readonly Posting[] | undefined {
    if (this.ordered === null) return undefined;
    return this.ordered.list(key) ?? NO_POSTINGS;
  }

  /** Whether `orderedByFirst` answers. */
  get keepsOrder(): boolean {
    return this.ordered !== null;
  }

  /** Where a document goes in the ordered postings; null when it is multikey on either path. */
  private placement(doc: Doc): { keys: string[]; value: unknown } | null {
    const first = pathKeys(doc, this.paths[0] as string[]);
    if (first.multi) return null;
    const leaves = valuesAtPath(doc, this.paths[1] as string[]);
    if (leaves.length !== 1 || Array.isArray(leaves[0])) return null;
    return { keys: [...first.keys.keys()], value: leaves[0] === MISSING ? null : leaves[0] };
  }

  /** The first key path, dotted. */
  get firstPath(): string {
    return (this.paths[0] as string[]).join(".");
  }

  /** Whether the document belongs in the index (partial indexes hold only matching documents). */
  covers(doc: Doc): boolean {
    return this.partial === null || this.partial(doc);
  }

  /** The document's keys in this index (empty when the index does not cover it). */
  keysOf(doc: Doc): IndexKey[] {
    if (!this.covers(doc)) return [];
    if (this.paths.length === 1) {
      const { keys } = pathKeys(doc, this.paths[0] as string[]);
      return [...keys].map(([key, value]) => ({ key, values: [value] }));
    }
    let combos: IndexKey[] = [{ key: "", values: [] }];
    let arrays = 0;
    for (const parts of this.paths) {
      const { keys, multi } = pathKeys(doc, parts);
      if (multi && ++arrays > 1) {
        throw new InvalidDocumentError(
          `cannot index parallel arrays in index ${this.name} of ${this.collection}`,
          {
            index: this.name,
          },
        );
      }
      const next: IndexKey[] = [];
      for (const combo of combos) {
        for (const [key, value] of keys) {
          next.push({
            key: combo.key === "" ? key : `${combo.key},${key}`,
            values: [...combo.values, value],
          });
        }
      }
      combos = next;
    }
    return combos;
  }

  /** The keys of a scalar equality on the first path (for lookups). */
  private firstKeysOf(doc: Doc): string[] {
    if (!this.covers(doc)) return [];
    return [...pathKeys(doc, this.paths[0] as string[]).keys.keys()];
  }

  /** Ids indexed under a full key. */
  lookup(key: string): ReadonlySet<string> | undefined {
    return this.entries.get(key);
  }

  /** Ids whose first path has the given key. */
  lookupFirst(key: string): ReadonlySet<string> | undefined {
    return (this.first ?? this.entries).get(key);
  }

  add(id: string, doc: Doc): void {
    for (const { key } of this.keysOf(doc)) addTo(this.entries, key, id);
    if (this.first !== null) for (const key of this.firstKeysOf(doc)) addTo(this.first, key, id);
    if (this.ordered !== null && this.covers(doc)) {
      const placed = this.placement(doc);
      // a multikey document: no single place in the order; queries scan from now on
      if (placed === null) this.ordered = null;
      else for (const key of placed.keys) this.ordered.add(key, { value: placed.value, id });
    }
  }

  remove(id: string, doc: Doc): void {
    for (const { key } of this.keysOf(doc)) removeFrom(this.entries, key, id);
    if (this.first !== null) for (const key of this.firstKeysOf(doc)) removeFrom(this.first, key, id);
    if (this.ordered !== null && this.covers(doc)) {
      const placed = this.placement(doc);
      if (placed !== null)
        for (const key of placed.keys) this.ordered.remove(key, { value: placed.value, id });
    }
  }

  /** The `keyValue` of a duplicate-key error, as MongoDB reports it. */
  keyValue(values: unknown[]): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    Object.keys(this.spec.keys).forEach((path, i) => {
      out[path] = values[i];
    });
    return out;
  }
}

/** One id in an ordered posting list, with the value it sorts by. */
export interface Posting {
  value: unknown;
  id: string;
}

const NO_POSTINGS: readonly Posting[] = [];

/** The order of postings: value in BSON order, then id. */
export function comparePostings(a: Posting, b: Posting): number {
  return compareValues(a.value, b.value) || compareStrings(a.id, b.id);
}

/** Sorted arrays of postings per first-path key; insertion and removal by binary search. */
class OrderedPostings {
  private readonly lists = new Map<string, Posting[]>();

  list(key: string): readonly Posting[] | undefined {
    return this.lists.get(key);
  }

  add(key: string, posting: Posting): void {
    const list = this.lists.get(key);
    if (list === undefined) {
      this.lists.set(key, [posting]);
      return;
    }
    list.splice(lowerBound(list, posting), 0, posting);
  }

  remove(key: string, posting: Posting): void {
    const list = this.lists.get(key);
    if (list === undefined) return;
    const at = lowerBound(list, posting);
    if (list[at]?.id !== posting.id) return;
    list.splice(at, 1);
    if (list.length === 0) this.lists.delete(key);
  }
}

/** The first position whose posting does not sort before `posting`. */
function lowerBound(list: readonly Posting[], posting: Posting): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (comparePostings(list[mid] as Posting, posting) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function addTo(map: Map<string, Set<string>>, key: string, id: string): void {
  const set = map.get(key);
  if (set === undefined) map.set(key, new Set([id]));
  else set.add(id);
}

function removeFrom(map: Map<string, Set<string>>, key: string, id: string): void {
  const set = map.get(key);
  if (set === undefined) return;
  set.delete(id);
  if (set.size === 0) map.delete(key);
}
