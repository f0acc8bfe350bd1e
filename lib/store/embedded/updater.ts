/**
 * Applies an update (already checked by `assertSupportedUpdate`) copy-on-write: the stored version is
 * never mutated; the new version shares every subtree the update did not touch.
 */
import { InvalidDocumentError } from "../../errors";
import { isOperatorObject, isPlainObject } from "../query-subset";
import type { Doc, Filter, Update } from "../store.port";
import { compilePullCondition } from "./matcher";
import { cloneValue, compareValues, valuesEqual } from "./values";

type Obj = Record<string, unknown>;

/** The working copy of one document while an update runs. */
class Draft {
  readonly root: Obj;
  private readonly owned = new Set<object>();

  constructor(doc: Obj) {
    this.root = { ...doc };
    this.owned.add(this.root);
  }

  /** The (owned) object holding the last segment of `parts`; created on the way when `create`. */
  parentOf(parts: readonly string[], create: boolean, op: string): Obj | undefined {
    let cur = this.root;
    for (let i = 0; i < parts.length - 1; i++) {
      const key = parts[i] as string;
      const next = cur[key];
      if (next === undefined) {
        if (!create) return undefined;
        const made: Obj = {};
        this.owned.add(made);
        cur[key] = made;
        cur = made;
      } else if (isPlainObject(next)) {
        cur = this.own(cur, key, next);
      } else {
        if (!create) return undefined;
        const at = parts.slice(0, i + 1).join(".");
        throw new InvalidDocumentError(
          `${op}: cannot create field "${parts[i + 1] ?? ""}" inside the non-object value at "${at}"`,
          { path: parts.join("."), operator: op },
        );
      }
    }
    return cur;
  }

  private own(parent: Obj, key: string, child: Obj): Obj {
    if (this.owned.has(child)) return child;
    const copy = { ...child };
    this.owned.add(copy);
    parent[key] = copy;
    return copy;
  }
}

function last(parts: readonly string[]): string {
  return parts[parts.length - 1] as string;
}

function arrayItems(operand: unknown): unknown[] {
  if (isPlainObject(operand) && Array.isArray(operand.$each)) return operand.$each as unknown[];
  return [operand];
}

function requireArray(current: unknown, op: string, path: string): unknown[] {
  if (!Array.isArray(current)) {
    throw new InvalidDocumentError(`${op} needs an array at "${path}"`, { path, operator: op });
  }
  return current;
}

/**
 * Returns the updated version of `doc` (a new object; `doc` is untouched). `inserting` enables
 * `$setOnInsert`. Type errors (e.g. `$inc` on a string) throw `InvalidDocumentError`.
 */
export function applyUpdate<T extends Doc>(doc: T, update: Update, inserting: boolean): T {
  const draft = new Draft(doc);
  for (const [op, fields] of Object.entries(update)) {
    if (op === "$setOnInsert" && !inserting) continue;
    for (const [path, operand] of Object.entries(fields as Obj)) {
      const parts = path.split(".");
      const key = last(parts);
      if (op === "$unset") {
        const parent = draft.parentOf(parts, false, op);
        if (parent !== undefined && Object.hasOwn(parent, key)) delete parent[key];
        continue;
      }
      if (op === "$pull") {
        const parent = draft.parentOf(parts, false, op);
        const current = parent?.[key];
        if (parent === undefined || current === undefined) continue;
        const matches = compilePullCondition(operand);
        const kept = requireArray(current, op, path).filter((e) => !matches(e));
        if (kept.length !== (current as unknown[]).length) parent[key] = kept;
        continue;
      }
      const parent = draft.parentOf(parts, true, op) as Obj;
      const current = parent[key];
      switch (op) {
        case "$set":
        case "$setOnInsert":
          parent[key] = cloneValue(operand);
          break;
        case "$inc": {
          if (current === undefined) {
            parent[key] = operand;
            break;
          }
          if (typeof current !== "number") {
            throw new InvalidDocumentError(`$inc needs a number at "${path}"`, { path, operator: op });
          }
          const sum = current + (operand as number);
          if (!Number.isFinite(sum)) throw new InvalidDocumentError(`$inc overflows at "${path}"`, { path });
          parent[key] = sum;
          break;
        }
        case "$min":
        case "$max": {
          const c = current === undefined ? 0 : compareValues(operand, current);
          if (current === undefined || (op === "$min" ? c < 0 : c > 0)) parent[key] = cloneValue(operand);
          break;
        }
        case "$push": {
          const base = current === undefined ? [] : requireArray(current, op, path);
          parent[key] = [...base, ...arrayItems(operand).map((v) => cloneValue(v))];
          break;
        }
        case "$addToSet": {
          const next = current === undefined ? [] : [...requireArray(current, op, path)];
          for (const item of arrayItems(operand)) {
            if (!next.some((e) => valuesEqual(e, item))) next.push(cloneValue(item));
          }
          parent[key] = next;
          break;
        }
        default:
          throw new Error(`update operator ${op} reached the updater unchecked`);
      }
    }
  }
  return draft.root as T;
}

/**
 * The document an upsert starts from: the filter's equality conditions (`field: value` and
 * `{ $eq: value }`, also inside top-level `$and`), as MongoDB builds it.
 */
export function upsertSeed(filter: Filter): Obj {
  const seed = new Draft({});
  const assigned: string[] = [];
  const visit = (f: Filter): void => {
    for (const [key, value] of Object.entries(f)) {
      if (key === "$and") {
        for (const clause of value as Filter[]) visit(clause);
        continue;
      }
      if (key.startsWith("$")) continue;
      let literal: unknown;
      if (isOperatorObject(value)) {
        if (!Object.hasOwn(value, "$eq")) continue;
        literal = value.$eq;
      } else {
        literal = value;
      }
      for (const other of assigned) {
        if (other === key || other.startsWith(`${key}.`) || key.startsWith(`${other}.`)) {
          throw new InvalidDocumentError(`upsert: the filter sets "${key}" more than once`, { path: key });
        }
      }
      assigned.push(key);
      const parts = key.split(".");
      const parent = seed.parentOf(parts, true, "upsert") as Obj;
      parent[last(parts)] = cloneValue(literal);
    }
  };
  visit(filter);
  return seed.root;
}
