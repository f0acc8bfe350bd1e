/**
 * Sort order as MongoDB applies it: keys in the given order, values in BSON comparison order, an array
 * field sorting by its smallest element ascending and its largest descending, an empty array before
 * null and missing. Ties are broken by `_id` so the order (and a limit) is deterministic.
 */
import type { Doc, Sort } from "../store.port";
import { MISSING, compareStrings, compareValues, valuesAtPath } from "./values";

/** Sort key of an empty array: below null, as in MongoDB. */
const EMPTY_ARRAY: unique symbol = Symbol("empty-array");

/** A comparator of documents for one sort specification. */
export interface DocOrder {
  /** Negative when `a` comes first. */
  compare(a: Doc, b: Doc): number;
  /** The first `k` documents in this order, sorted (all of them when `k` ≥ their number). */
  top<T extends Doc>(docs: readonly T[], k: number): T[];
  /** A test for "sorts no later than `last`". */
  notAfter(last: Doc): (doc: Doc) => boolean;
}

interface Keyed<T extends Doc> {
  doc: T;
  keys: unknown[];
}

function compareKey(a: unknown, b: unknown): number {
  if (a === EMPTY_ARRAY || b === EMPTY_ARRAY) {
    if (a === b) return 0;
    return a === EMPTY_ARRAY ? -1 : 1;
  }
  return compareValues(a, b);
}

/** The value one document sorts by on one path and direction. */
function sortKey(doc: Doc, parts: readonly string[], direction: 1 | -1): unknown {
  let best: unknown = MISSING;
  let sawEmptyArray = false;
  const consider = (v: unknown): void => {
    if (best === MISSING) {
      best = v;
      return;
    }
    const c = compareValues(v, best);
    if (direction === 1 ? c < 0 : c > 0) best = v;
  };
  for (const leaf of valuesAtPath(doc, parts)) {
    if (leaf === MISSING) consider(null);
    else if (Array.isArray(leaf)) {
      if (leaf.length === 0) sawEmptyArray = true;
      for (const element of leaf) consider(element);
    } else consider(leaf);
  }
  if (best === MISSING) return sawEmptyArray ? EMPTY_ARRAY : null;
  if (sawEmptyArray && direction === 1) return EMPTY_ARRAY;
  return best;
}

/** Compiles a sort specification (checked by `assertSupportedSort`). */
export function compileSort(sort: Sort): DocOrder {
  const fields = Object.entries(sort).map(([path, direction]) => ({ parts: path.split("."), direction }));
  const keysOf = (doc: Doc): unknown[] => fields.map((f) => sortKey(doc, f.parts, f.direction));
  const compareKeyed = (a: Keyed<Doc>, b: Keyed<Doc>): number => {
    for (let i = 0; i < fields.length; i++) {
      const c = compareKey(a.keys[i], b.keys[i]);
      if (c !== 0) return c * (fields[i] as { direction: 1 | -1 }).direction;
    }
    return compareStrings(a.doc._id, b.doc._id);
  };
  const keyed = <T extends Doc>(doc: T): Keyed<T> => ({ doc, keys: keysOf(doc) });

  return {
    compare: (a, b) => compareKeyed(keyed(a), keyed(b)),
    notAfter: (last) => {
      const bound = keyed(last);
      return (doc) => compareKeyed(keyed(doc), bound) <= 0;
    },
    top: <T extends Doc>(docs: readonly T[], k: number): T[] => {
      if (k >= docs.length) {
        return docs
          .map((d) => keyed(d))
          .sort(compareKeyed)
          .map((e) => e.doc);
      }
      if (k <= 0) return [];
      // Bounded max-heap of the k best so far: O(n log k) instead of sorting everything.
      const heap: Keyed<T>[] = [];
      const worse = (i: number, j: number): boolean =>
        compareKeyed(heap[i] as Keyed<T>, heap[j] as Keyed<T>) > 0;
      const swap = (i: number, j: number): void => {
        const t = heap[i] as Keyed<T>;
        heap[i] = heap[j] as Keyed<T>;
        heap[j] = t;
      };
      for (const doc of docs) {
        const entry = keyed(doc);
        if (heap.length < k) {
          heap.push(entry);
          for (let i = heap.length - 1; i > 0;) {
            const parent = (i - 1) >> 1;
            if (!worse(i, parent)) break;
            swap(i, parent);
            i = parent;
          }
        } else if (compareKeyed(entry, heap[0] as Keyed<T>) < 0) {
          heap[0] = entry;
          for (let i = 0; ;) {
            const l = 2 * i + 1;
            const r = l + 1;
            let largest = i;
            if (l < heap.length && worse(l, largest)) largest = l;
            if (r < heap.length && worse(r, largest)) largest = r;
            if (largest === i) break;
            swap(i, largest);
            i = largest;
          }
        }
      }
      return heap.sort(compareKeyed).map((e) => e.doc);
    },
  };
}
