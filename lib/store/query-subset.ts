/**
 * The documented subset of MongoDB's query language (docs/store.md), checked by every store adapter
 * before it runs anything, so that both adapters accept and refuse exactly the same requests.
 *
 * Outside the subset → `UnsupportedQueryError` naming the operator and path. A request that is inside
 * the subset but malformed for a document (a `$`-prefixed field name, an `_id` change) →
 * `InvalidDocumentError`.
 */
import { InvalidDocumentError, UnsupportedQueryError } from "../errors";
import type { FindOptions, IndexSpec, Projection, Sort, Update } from "./store.port";

/** Operators allowed on a field in a filter. */
export const FIELD_OPERATORS: ReadonlySet<string> = new Set([
  "$eq",
  "$ne",
  "$gt",
  "$gte",
  "$lt",
  "$lte",
  "$in",
  "$nin",
  "$exists",
  "$not",
]);

/** Operators allowed at the top of a filter. */
export const LOGICAL_OPERATORS: ReadonlySet<string> = new Set(["$and", "$or"]);

/** Update operators in the subset. */
export const UPDATE_OPERATORS: ReadonlySet<string> = new Set([
  "$set",
  "$unset",
  "$inc",
  "$push",
  "$pull",
  "$addToSet",
  "$min",
  "$max",
  "$setOnInsert",
]);

/** Operators allowed in a `$pull` condition on array elements: the comparisons of a filter. */
const PULL_CONDITION_OPERATORS: ReadonlySet<string> = new Set(
  [...FIELD_OPERATORS].filter((op) => op !== "$exists" && op !== "$not"),
);

/** MongoDB's maximum nesting depth of a BSON document. */
const MAX_DEPTH = 100;

/** A plain object (not an array, Date, Map, class instance …). */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null) return false;
  const proto = Object.getPrototypeOf(value) as { constructor?: unknown } | null;
  if (proto === null || proto === Object.prototype) return true;
  // an Object.prototype of another realm (structuredClone, vm contexts): same shape, other identity
  return (
    Object.getPrototypeOf(proto) === null &&
    typeof proto.constructor === "function" &&
    proto.constructor.name === "Object"
  );
}

/** A non-empty plain object whose keys all start with `$`, e.g. `{ $gt: 1 }`. */
export function isOperatorObject(value: unknown): value is Record<string, unknown> {
  if (!isPlainObject(value)) return false;
  const keys = Object.keys(value);
  return keys.length > 0 && keys.every((k) => k.startsWith("$"));
}

function hasOperatorKey(value: Record<string, unknown>): boolean {
  return Object.keys(value).some((k) => k.startsWith("$"));
}

function unsupported(what: string, path: string, operator?: string): never {
  const data: Record<string, unknown> = { path };
  if (operator !== undefined) data.operator = operator;
  throw new UnsupportedQueryError(`${what}${path === "" ? "" : ` at "${path}"`}`, data);
}

/**
 * Checks a dotted path used by a filter, update, sort or projection. Positional forms (`a.0`, `a.$`,
 * `a.$[]`, `a.$[x]`) and `$`-prefixed segments are outside the subset.
 */
export function assertSupportedPath(path: string, context: string): void {
  if (path.length === 0) unsupported(`empty field path in ${context}`, path);
  for (const segment of path.split(".")) {
    if (segment.length === 0) unsupported(`empty segment in field path in ${context}`, path);
    if (segment.startsWith("$")) {
      const positional = segment === "$" || segment.startsWith("$[");
      unsupported(
        positional
          ? `positional path operator ${segment} in ${context} is not supported`
          : `operator ${segment} in ${context} is not supported`,
        path,
        segment,
      );
    }
    if (/^[0-9]+$/.test(segment))
      unsupported(`positional (array index) path in ${context} is not supported`, path);
  }
}

/**
 * Checks a value that may be stored: null, booleans, finite numbers, strings, valid Dates, arrays and
 * plain objects of those. Field names may not be empty, start with `$`, or contain `.` or NUL.
 * `undefined` object fields are allowed (they are not stored); `undefined` array elements are not.
 */
export function assertValidValue(value: unknown, path: string, depth = 0): void {
  if (depth > MAX_DEPTH)
    throw new InvalidDocumentError(`nesting deeper than ${MAX_DEPTH} at "${path}"`, { path });
  switch (typeof value) {
    case "string":
    case "boolean":
      return;
    case "number":
      if (!Number.isFinite(value)) {
        throw new InvalidDocumentError(`non-finite number ${String(value)} at "${path}"`, { path });
      }
      return;
    case "object":
      break;
    default:
      throw new InvalidDocumentError(`a value of type ${typeof value} cannot be stored (at "${path}")`, {
        path,
      });
  }
  if (value === null) return;
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) throw new InvalidDocumentError(`invalid Date at "${path}"`, { path });
    return;
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      const itemPath = `${path}.${i}`;
      if (item === undefined) {
        throw new InvalidDocumentError(`undefined (or a hole) in an array at "${itemPath}"`, {
          path: itemPath,
        });
      }
      assertValidValue(item, itemPath, depth + 1);
    }
    return;
  }
  if (!isPlainObject(value)) {
    const kind = (value as object).constructor?.name ?? "object";
    throw new InvalidDocumentError(`a ${kind} cannot be stored (at "${path}")`, { path });
  }
  for (const key of Object.keys(value)) {
    const fieldPath = path === "" ? key : `${path}.${key}`;
    assertValidFieldName(key, fieldPath);
    const field = value[key];
    if (field !== undefined) assertValidValue(field, fieldPath, depth + 1);
  }
}

function assertValidFieldName(key: string, path: string): void {
  if (key.length === 0) throw new InvalidDocumentError(`empty field name at "${path}"`, { path });
  if (key.startsWith("$")) {
    throw new InvalidDocumentError(`field names may not start with "$" (at "${path}")`, { path });
  }
  if (key.includes(".") || key.includes("\0")) {
    throw new InvalidDocumentError(`field names may not contain "." or NUL (at "${path}")`, { path });
  }
}

/** Checks a document to insert: a plain object of storable values, `_id` (when present) a string. */
export function assertValidDocument(doc: unknown): void {
  if (!isPlainObject(doc)) throw new InvalidDocumentError("a document must be a plain object");
  if (doc._id !== undefined && typeof doc._id !== "string") {
    throw new InvalidDocumentError(`_id must be a string, got ${typeName(doc._id)}`, { path: "_id" });
  }
  assertValidValue(doc, "");
}

function typeName(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (value instanceof Date) return "Date";
  return typeof value;
}

/** A literal used for equality or comparison in a filter. */
function assertFilterLiteral(value: unknown, path: string, operator: string): void {
  if (value === undefined) unsupported(`undefined is not a valid value for ${operator}`, path, operator);
  if (value instanceof RegExp) unsupported(`regular expressions ($regex) are not supported`, path, "$regex");
  if (isPlainObject(value) && hasOperatorKey(value)) {
    const op = Object.keys(value).find((k) => k.startsWith("$")) ?? "";
    unsupported(`operator ${op} is not allowed inside ${operator}`, path, op);
  }
  try {
    assertValidValue(value, path);
  } catch (error) {
    if (error instanceof InvalidDocumentError)
      unsupported(`invalid value for ${operator}: ${error.message}`, path, operator);
    throw error;
  }
}

/** Checks the operators applied to one field, e.g. `{ $gte: 1, $lt: 5 }`. */
function assertFieldCondition(
  condition: Record<string, unknown>,
  path: string,
  allowed: ReadonlySet<string>,
): void {
  for (const [op, operand] of Object.entries(condition)) {
    if (!allowed.has(op)) unsupported(`filter operator ${op} is not supported`, path, op);
    switch (op) {
      case "$in":
      case "$nin":
        if (!Array.isArray(operand)) unsupported(`${op} needs an array`, path, op);
        for (const item of operand as unknown[]) assertFilterLiteral(item, path, op);
        break;
      case "$exists":
        if (typeof operand !== "boolean") unsupported(`$exists needs true or false`, path, op);
        break;
      case "$not":
        if (!isOperatorObject(operand)) {
          unsupported(
            `$not needs an operator object such as { $gt: 1 } (regular expressions are not supported)`,
            path,
            op,
          );
        }
        assertFieldCondition(operand, path, allowed);
        break;
      default:
        assertFilterLiteral(operand, path, op);
    }
  }
}

/** Throws `UnsupportedQueryError` unless `filter` is inside the documented subset. */
export function assertSupportedFilter(filter: unknown, path = ""): void {
  if (filter === undefined && path === "") return;
  if (!isPlainObject(filter)) unsupported(`a filter must be a plain object`, path);
  for (const [key, value] of Object.entries(filter)) {
    if (key.startsWith("$")) {
      if (!LOGICAL_OPERATORS.has(key)) unsupported(`filter operator ${key} is not supported`, path, key);
      if (!Array.isArray(value) || value.length === 0)
        unsupported(`${key} needs a non-empty array of filters`, path, key);
      (value as unknown[]).forEach((clause, i) => assertSupportedFilter(clause, `${path}${key}.${i}`));
      continue;
    }
    assertSupportedPath(key, "a filter");
    if (isPlainObject(value) && hasOperatorKey(value)) {
      if (!isOperatorObject(value)) {
        unsupported(`a condition may not mix operators and field names`, key);
      }
      assertFieldCondition(value, key, FIELD_OPERATORS);
    } else {
      assertFilterLiteral(value, key, "equality");
    }
  }
}

/** Collects every path an update touches, to reject overlapping ones as MongoDB does. */
function assertNoPathConflicts(paths: string[]): void {
  const sorted = [...paths].sort();
  for (let i = 1; i < sorted.length; i++) {
    const a = sorted[i - 1] as string;
    const b = sorted[i] as string;
    if (a === b || b.startsWith(`${a}.`)) {
      throw new InvalidDocumentError(`updating the path "${b}" would create a conflict at "${a}"`, {
        path: a,
      });
    }
  }
}

function assertUpdateValue(value: unknown, path: string, op: string): void {
  if (value === undefined) {
    throw new InvalidDocumentError(`undefined is not a valid value for ${op} (use $unset)`, { path });
  }
  assertValidValue(value, path);
}

function assertArrayOperand(op: string, path: string, operand: unknown): void {
  if (isPlainObject(operand) && hasOperatorKey(operand)) {
    const keys = Object.keys(operand);
    if (keys.includes("$each")) {
      const extra = keys.find((k) => k !== "$each");
      if (extra !== undefined) unsupported(`${op} modifier ${extra} is not supported`, path, extra);
      const items = operand.$each;
      if (!Array.isArray(items)) throw new InvalidDocumentError(`${op} $each needs an array`, { path });
      items.forEach((item: unknown, i) => assertUpdateValue(item, `${path}.${i}`, op));
      return;
    }
  }
  assertUpdateValue(operand, path, op);
}

function assertPullOperand(path: string, operand: unknown): void {
  if (operand instanceof RegExp)
    unsupported(`regular expressions ($regex) are not supported`, path, "$regex");
  if (!isPlainObject(operand)) {
    assertUpdateValue(operand, path, "$pull");
    return;
  }
  if (isOperatorObject(operand)) {
    assertFieldCondition(operand, path, PULL_CONDITION_OPERATORS);
    return;
  }
  if (hasOperatorKey(operand)) unsupported(`a $pull condition may not mix operators and field names`, path);
  // A document without operators is a filter on the array's embedded documents, as in MongoDB.
  assertSupportedFilter(operand, path);
}

/**
 * Throws unless `update` is an update document inside the subset. Replacement documents (no
 * operators), empty updates and anything touching `_id` (except `$setOnInsert`) are refused.
 */
export function assertSupportedUpdate(update: unknown): asserts update is Update {
  if (!isPlainObject(update)) unsupported(`an update must be a plain object of update operators`, "");
  const entries = Object.entries(update);
  if (entries.length === 0) unsupported(`an update needs at least one update operator`, "");
  const paths: string[] = [];
  for (const [op, operand] of entries) {
    if (!op.startsWith("$")) {
      unsupported(`replacement documents are not supported; use update operators such as $set`, op);
    }
    if (!UPDATE_OPERATORS.has(op)) unsupported(`update operator ${op} is not supported`, "", op);
    if (!isPlainObject(operand)) unsupported(`${op} needs an object of field paths`, "", op);
    for (const [path, value] of Object.entries(operand)) {
      assertSupportedPath(path, op);
      paths.push(path);
      if (path === "_id" || path.startsWith("_id.")) {
        if (op !== "$setOnInsert" || path !== "_id") {
          throw new InvalidDocumentError(`the field "_id" is immutable (${op})`, { path, operator: op });
        }
        if (typeof value !== "string")
          throw new InvalidDocumentError(`_id must be a string`, { path: "_id" });
      }
      switch (op) {
        case "$inc":
          if (typeof value !== "number" || !Number.isFinite(value)) {
            throw new InvalidDocumentError(`$inc needs a finite number`, { path, operator: op });
          }
          break;
        case "$unset":
          break;
        case "$push":
        case "$addToSet":
          assertArrayOperand(op, path, value);
          break;
        case "$pull":
          assertPullOperand(path, value);
          break;
        default:
          assertUpdateValue(value, path, op);
      }
    }
  }
  assertNoPathConflicts(paths);
}

/** Throws unless `sort` maps field paths to 1 or -1. */
export function assertSupportedSort(sort: unknown): asserts sort is Sort {
  if (sort === undefined) return;
  if (!isPlainObject(sort)) unsupported(`a sort must be a plain object of field paths`, "");
  for (const [path, direction] of Object.entries(sort)) {
    assertSupportedPath(path, "a sort");
    if (direction !== 1 && direction !== -1) {
      const op = isPlainObject(direction) ? Object.keys(direction)[0] : undefined;
      unsupported(`sort direction must be 1 or -1`, path, op);
    }
  }
}

/** Throws unless `projection` is all-inclusion or all-exclusion (`_id` may be excluded from either). */
export function assertSupportedProjection(projection: unknown): asserts projection is Projection {
  if (projection === undefined) return;
  if (!isPlainObject(projection)) unsupported(`a projection must be a plain object of field paths`, "");
  let include = 0;
  let exclude = 0;
  const paths: string[] = [];
  for (const [path, flag] of Object.entries(projection)) {
    assertSupportedPath(path, "a projection");
    if (flag !== 0 && flag !== 1 && flag !== true && flag !== false) {
      const op = isPlainObject(flag) ? Object.keys(flag)[0] : undefined;
      unsupported(`projection values must be 0 or 1 (projection operators are not supported)`, path, op);
    }
    paths.push(path);
    if (path === "_id") continue;
    if (flag === 1 || flag === true) include++;
    else exclude++;
  }
  if (include > 0 && exclude > 0) unsupported(`a projection cannot mix inclusion and exclusion`, "");
  const sorted = [...paths].sort();
  for (let i = 1; i < sorted.length; i++) {
    const a = sorted[i - 1] as string;
    const b = sorted[i] as string;
    if (b.startsWith(`${a}.`)) unsupported(`projection path collision between "${a}" and "${b}"`, b);
  }
}

/** Throws unless skip/limit are non-negative integers and sort/projection are supported. */
export function assertSupportedFindOptions(options: FindOptions | undefined): void {
  if (options === undefined) return;
  for (const key of ["skip", "limit"] as const) {
    const n = options[key];
    if (n !== undefined && (!Number.isInteger(n) || n < 0)) {
      unsupported(`${key} must be a non-negative integer`, "", key);
    }
  }
  assertSupportedSort(options.sort);
  assertSupportedProjection(options.projection);
}

/** Operators MongoDB accepts in a partial index filter (and that are in our subset). */
const PARTIAL_FILTER_OPERATORS: ReadonlySet<string> = new Set([
  "$eq",
  "$gt",
  "$gte",
  "$lt",
  "$lte",
  "$in",
  "$exists",
]);

function assertPartialFilter(filter: Record<string, unknown>, path: string): void {
  for (const [key, value] of Object.entries(filter)) {
    if (key === "$and" || key === "$or") {
      (value as Record<string, unknown>[]).forEach((clause, i) =>
        assertPartialFilter(clause, `${path}${key}.${i}`),
      );
    } else if (isOperatorObject(value)) {
      for (const [op, operand] of Object.entries(value)) {
        if (!PARTIAL_FILTER_OPERATORS.has(op) || (op === "$exists" && operand !== true)) {
          unsupported(
            `${op}${op === "$exists" ? ": false" : ""} is not supported in a partial index filter`,
            key,
            op,
          );
        }
      }
    }
  }
}

/** The name MongoDB gives an index by default, e.g. `customerId_1_createdAt_-1`. */
export function defaultIndexName(keys: Record<string, 1 | -1>): string {
  return Object.entries(keys)
    .map(([path, direction]) => `${path}_${direction}`)
    .join("_");
}

/** Throws unless `spec` describes an index the subset supports. */
export function assertSupportedIndexSpec(spec: unknown): asserts spec is IndexSpec {
  if (!isPlainObject(spec)) unsupported(`an index spec must be a plain object`, "");
  const { keys, unique, partialFilterExpression, expireAfterSeconds, name } = spec;
  if (!isPlainObject(keys) || Object.keys(keys).length === 0)
    unsupported(`an index needs at least one key`, "");
  for (const [path, direction] of Object.entries(keys)) {
    assertSupportedPath(path, "an index");
    if (direction !== 1 && direction !== -1) unsupported(`index key direction must be 1 or -1`, path);
  }
  if (unique !== undefined && typeof unique !== "boolean") unsupported(`unique must be a boolean`, "");
  if (name !== undefined && (typeof name !== "string" || name.length === 0)) {
    unsupported(`an index name must be a non-empty string`, "");
  }
  if (partialFilterExpression !== undefined) {
    assertSupportedFilter(partialFilterExpression);
    assertPartialFilter(partialFilterExpression as Record<string, unknown>, "");
  }
  if (expireAfterSeconds !== undefined) {
    if (
      typeof expireAfterSeconds !== "number" ||
      !Number.isInteger(expireAfterSeconds) ||
      expireAfterSeconds < 0
    ) {
      unsupported(`expireAfterSeconds must be a non-negative integer`, "");
    }
    if (Object.keys(keys).length !== 1) unsupported(`a TTL index must have exactly one key`, "");
  }
}
