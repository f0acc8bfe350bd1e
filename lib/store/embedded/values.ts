/**
 * Values as the embedded engine sees them: MongoDB's comparison order for the types we store, equality,
 * dotted-path traversal through arrays, index keys and copies.
 * Order reference: https://www.mongodb.com/docs/manual/reference/bson-type-comparison-order/
 */
import { isPlainObject } from "../query-subset";

/** Marks "this path reaches no value" in a traversal result. */
export const MISSING: unique symbol = Symbol("missing");
export type Leaf = unknown;

/** BSON canonical type ranks of the types we store (null and missing share a rank). */
export const Rank = {
  EmptyArray: 2,
  Null: 5,
  Number: 10,
  String: 15,
  Object: 20,
  Array: 25,
  Boolean: 40,
  Date: 45,
} as const;
export type Rank = (typeof Rank)[keyof typeof Rank];

/** The BSON type rank of a stored value. */
export function rankOf(value: unknown): Rank {
  switch (typeof value) {
    case "number":
      return Rank.Number;
    case "string":
      return Rank.String;
    case "boolean":
      return Rank.Boolean;
    case "object":
      if (value === null) return Rank.Null;
      if (value instanceof Date) return Rank.Date;
      if (Array.isArray(value)) return Rank.Array;
      return Rank.Object;
    default:
      return Rank.Null;
  }
}

/** Compares strings by code point, which is the order of their UTF-8 bytes (MongoDB's binary order). */
export function compareStrings(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const ca = a.charCodeAt(i);
    const cb = b.charCodeAt(i);
    if (ca !== cb) return codePointWeight(ca) - codePointWeight(cb);
  }
  return a.length - b.length;
}

/** UTF-16 code units reordered so surrogates (code points above U+FFFF) sort after U+E000–U+FFFF. */
function codePointWeight(unit: number): number {
  if (unit >= 0xd800 && unit <= 0xdfff) return unit + 0x2000;
  if (unit >= 0xe000) return unit - 0x800;
  return unit;
}

/** Total order of stored values, as MongoDB compares them: type rank first, then value. */
export function compareValues(a: unknown, b: unknown): number {
  const ra = rankOf(a);
  const rb = rankOf(b);
  if (ra !== rb) return ra - rb;
  switch (ra) {
    case Rank.Number:
      return (a as number) < (b as number) ? -1 : (a as number) > (b as number) ? 1 : 0;
    case Rank.String:
      return compareStrings(a as string, b as string);
    case Rank.Boolean:
      return (a ? 1 : 0) - (b ? 1 : 0);
    case Rank.Date:
      return Math.sign((a as Date).getTime() - (b as Date).getTime());
    case Rank.Array:
      return compareArrays(a as unknown[], b as unknown[]);
    case Rank.Object:
      return compareObjects(a as Record<string, unknown>, b as Record<string, unknown>);
    default:
      return 0;
  }
}

function compareArrays(a: unknown[], b: unknown[]): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const c = compareValues(a[i], b[i]);
    if (c !== 0) return c;
  }
  return a.length - b.length;
}

/** Embedded documents compare pair by pair in field order: value type, then field name, then value. */
function compareObjects(a: Record<string, unknown>, b: Record<string, unknown>): number {
  const ka = definedKeys(a);
  const kb = definedKeys(b);
  const n = Math.min(ka.length, kb.length);
  for (let i = 0; i < n; i++) {
    const fa = ka[i] as string;
    const fb = kb[i] as string;
    const va = a[fa];
    const vb = b[fb];
    const r = rankOf(va) - rankOf(vb);
    if (r !== 0) return r;
    const f = compareStrings(fa, fb);
    if (f !== 0) return f;
    const c = compareValues(va, vb);
    if (c !== 0) return c;
  }
  return ka.length - kb.length;
}

function definedKeys(o: Record<string, unknown>): string[] {
  const keys = Object.keys(o);
  for (const k of keys) if (o[k] === undefined) return keys.filter((key) => o[key] !== undefined);
  return keys;
}

/** MongoDB equality of two stored values (embedded documents are equal only with the same field order). */
export function valuesEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  return compareValues(a, b) === 0;
}

/**
 * Every value a dotted path reaches, the way MongoDB's matcher walks it: a non-final array is entered
 * element by element (embedded documents only); an unreachable branch yields `MISSING`.
 */
export function valuesAtPath(doc: unknown, parts: readonly string[]): Leaf[] {
  if (parts.length === 1 && isPlainObject(doc)) {
    const key = parts[0] as string;
    const v = doc[key];
    return [v === undefined ? MISSING : v];
  }
  const out: Leaf[] = [];
  walk(doc, parts, 0, out);
  return out;
}

function walk(value: unknown, parts: readonly string[], i: number, out: Leaf[]): void {
  if (i === parts.length) {
    out.push(value);
    return;
  }
  if (Array.isArray(value)) {
    const before = out.length;
    for (const element of value) if (isPlainObject(element)) walk(element, parts, i, out);
    if (out.length === before) out.push(MISSING);
    return;
  }
  if (isPlainObject(value)) {
    const next = value[parts[i] as string];
    if (next === undefined) out.push(MISSING);
    else walk(next, parts, i + 1, out);
    return;
  }
  out.push(MISSING);
}

/** Reads a plain (non-traversing) dotted path; undefined when any step is not a plain object. */
export function getPath(doc: unknown, parts: readonly string[]): unknown {
  let cur: unknown = doc;
  for (const p of parts) {
    if (!isPlainObject(cur)) return undefined;
    cur = cur[p];
  }
  return cur;
}

/** A string that is equal for two values exactly when MongoDB considers them equal. */
export function keyOf(value: unknown): string {
  switch (typeof value) {
    case "string":
      return JSON.stringify(value);
    case "number":
      return String(value);
    case "boolean":
      return value ? "true" : "false";
    case "object":
      if (value === null) return "null";
      if (value instanceof Date) return `D${value.getTime()}`;
      return JSON.stringify(value, taggedDateReplacer);
    default:
      return "null";
  }
}

function taggedDateReplacer(this: Record<string, unknown>, key: string, value: unknown): unknown {
  const raw = this[key];
  return raw instanceof Date ? { $date: raw.getTime() } : value;
}

/** A deep copy of a stored value (JSON values and Dates); `undefined` object fields are dropped. */
export function cloneValue<T>(value: T): T {
  if (typeof value !== "object" || value === null) return value;
  if (value instanceof Date) return new Date(value.getTime()) as T;
  if (Array.isArray(value)) {
    const out = new Array<unknown>(value.length);
    for (let i = 0; i < value.length; i++) out[i] = cloneValue(value[i] as unknown);
    return out as T;
  }
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value)) {
    const field = (value as Record<string, unknown>)[key];
    if (field !== undefined) out[key] = cloneValue(field);
  }
  return out as T;
}
