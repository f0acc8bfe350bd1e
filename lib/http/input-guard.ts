/**
 * Checks on what a client sends that the schema validator cannot make, done before anything reads
 * the input: keys that would reach an object's prototype when merged (`__proto__`, `constructor`,
 * `prototype`), nesting deep enough to exhaust a recursive walk, and query values that are arrays
 * or objects where every parameter is a scalar. Bodies themselves are checked by body-guard.ts.
 */
import { Errors } from "moleculer";

const { MoleculerClientError } = Errors;

/** Deeper than any body the API takes (an order is 3 levels). */
export const MAX_INPUT_DEPTH = 16;

const FORBIDDEN_KEYS = new Set(["__proto__", "constructor", "prototype"]);

/** 400 VALIDATION_ERROR naming where, as fastest-validator's own errors do. */
function invalid(field: string, message: string, type: string): Error {
  return new MoleculerClientError("the request does not match the expected shape", 400, "VALIDATION_ERROR", [
    { field, message, type },
  ]);
}

/** Refuse prototype keys at any level and nesting beyond MAX_INPUT_DEPTH; iterative, never recursive. */
export function checkInputShape(value: unknown, where: "body" | "query"): void {
  const stack: { value: unknown; path: string; depth: number }[] = [{ value, path: where, depth: 0 }];
  while (stack.length > 0) {
    const item = stack.pop() as { value: unknown; path: string; depth: number };
    if (typeof item.value !== "object" || item.value === null) continue;
    if (item.depth >= MAX_INPUT_DEPTH)
      throw invalid(item.path, `nesting deeper than ${MAX_INPUT_DEPTH} levels`, "depth");
    for (const key of Object.keys(item.value)) {
      if (FORBIDDEN_KEYS.has(key))
        throw invalid(`${item.path}.${key}`, "this key is not allowed", "forbiddenKey");
      stack.push({
        value: (item.value as Record<string, unknown>)[key],
        path: `${item.path}.${key}`,
        depth: item.depth + 1,
      });
    }
  }
}

/** Every query parameter of the API is a scalar: `?limit[]=1` or `?a[b]=c` is refused, not coerced. */
export function checkScalarQuery(query: unknown): void {
  if (typeof query !== "object" || query === null) return;
  for (const [key, value] of Object.entries(query)) {
    if (typeof value === "object" && value !== null)
      throw invalid(key, "a query parameter takes one plain value", "scalar");
  }
}
