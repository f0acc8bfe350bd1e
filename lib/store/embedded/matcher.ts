/**
 * Compiles a filter (already checked by `assertSupportedFilter`) into a predicate with MongoDB's
 * semantics: implicit equality, type-bracketed comparisons, null matching missing fields, and a
 * condition on an array field matching when the array itself or any element matches.
 */
import { isOperatorObject, isPlainObject } from "../query-subset";
import type { Filter } from "../store.port";
import { MISSING, rankOf, compareValues, valuesAtPath, valuesEqual, Rank } from "./values";
import type { Leaf } from "./values";

/** A compiled filter. */
export type Predicate = (doc: unknown) => boolean;

/** A test over every value a path reaches. */
type LeafTest = (leaves: Leaf[]) => boolean;

const always: Predicate = () => true;

/** Compiles a filter; an empty filter matches everything. */
export function compileFilter(filter: Filter | undefined): Predicate {
  if (filter === undefined) return always;
  const clauses: Predicate[] = [];
  for (const [key, value] of Object.entries(filter)) {
    if (key === "$and") {
      const parts = (value as Filter[]).map(compileFilter);
      clauses.push((doc) => parts.every((p) => p(doc)));
    } else if (key === "$or") {
      const parts = (value as Filter[]).map(compileFilter);
      clauses.push((doc) => parts.some((p) => p(doc)));
    } else {
      const path = key.split(".");
      const test = isOperatorObject(value) ? compileConditions(value) : equalsTest(value);
      clauses.push((doc) => test(valuesAtPath(doc, path)));
    }
  }
  if (clauses.length === 0) return always;
  if (clauses.length === 1) return clauses[0] as Predicate;
  return (doc) => {
    for (const clause of clauses) if (!clause(doc)) return false;
    return true;
  };
}

/** Compiles `{ $gt: 1, $lt: 5 }` into a test over the leaves of one path. */
export function compileConditions(conditions: Record<string, unknown>): LeafTest {
  const tests = Object.entries(conditions).map(([op, operand]) => compileOperator(op, operand));
  if (tests.length === 1) return tests[0] as LeafTest;
  return (leaves) => tests.every((t) => t(leaves));
}

function compileOperator(op: string, operand: unknown): LeafTest {
  switch (op) {
    case "$eq":
      return equalsTest(operand);
    case "$ne": {
      const eq = equalsTest(operand);
      return (leaves) => !eq(leaves);
    }
    case "$gt":
    case "$gte":
    case "$lt":
    case "$lte":
      return comparisonTest(op, operand);
    case "$in": {
      const tests = (operand as unknown[]).map(equalsTest);
      return (leaves) => tests.some((t) => t(leaves));
    }
    case "$nin": {
      const tests = (operand as unknown[]).map(equalsTest);
      return (leaves) => !tests.some((t) => t(leaves));
    }
    case "$exists": {
      const wanted = operand as boolean;
      return (leaves) => leaves.some((l) => l !== MISSING) === wanted;
    }
    case "$not": {
      const inner = compileConditions(operand as Record<string, unknown>);
      return (leaves) => !inner(leaves);
    }
    default:
      // Unreachable after assertSupportedFilter; refuse rather than guess.
      throw new Error(`operator ${op} reached the matcher unchecked`);
  }
}

/** Equality with a literal: null also matches a missing field; arrays match as a whole or by element. */
export function equalsTest(operand: unknown): LeafTest {
  if (operand === null) {
    return (leaves) =>
      leaves.some((l) => l === MISSING || l === null || (Array.isArray(l) && l.includes(null)));
  }
  if (typeof operand !== "object") {
    return (leaves) => {
      for (const l of leaves) {
        if (l === operand) return true;
        if (Array.isArray(l) && l.includes(operand)) return true;
      }
      return false;
    };
  }
  return (leaves) => {
    for (const l of leaves) {
      if (l === MISSING) continue;
      if (valuesEqual(l, operand)) return true;
      if (Array.isArray(l)) for (const e of l) if (valuesEqual(e, operand)) return true;
    }
    return false;
  };
}

/** `$gt`/`$gte`/`$lt`/`$lte`: only values of the operand's type are compared (type bracketing). */
function comparisonTest(op: string, operand: unknown): LeafTest {
  if (operand === null) {
    // Only null/missing share null's type: `$gte`/`$lte` null mean "is null or missing".
    return op === "$gte" || op === "$lte" ? equalsTest(null) : () => false;
  }
  const rank = rankOf(operand);
  const accept =
    op === "$gt"
      ? (c: number) => c > 0
      : op === "$gte"
        ? (c: number) => c >= 0
        : op === "$lt"
          ? (c: number) => c < 0
          : (c: number) => c <= 0;
  const one = (v: unknown): boolean => rankOf(v) === rank && accept(compareValues(v, operand));
  return (leaves) => {
    for (const l of leaves) {
      if (l === MISSING) continue;
      if (Array.isArray(l)) {
        if (rank === Rank.Array && one(l)) return true;
        for (const e of l) if (one(e)) return true;
      } else if (one(l)) {
        return true;
      }
    }
    return false;
  };
}

/**
 * The `$pull` condition for one array element: an operator object applies to the element itself, a
 * document without operators is a filter on embedded-document elements, anything else is equality.
 */
export function compilePullCondition(condition: unknown): (element: unknown) => boolean {
  if (isOperatorObject(condition)) {
    const test = compileConditions(condition);
    return (element) => test([element]);
  }
  if (isPlainObject(condition)) {
    const match = compileFilter(condition);
    return (element) => isPlainObject(element) && match(element);
  }
  return (element) => valuesEqual(element, condition);
}
