/**
 * A small, dependency-free schema language for validating wire data (event payloads, request
 * bodies). Each schema checks a value and reports every problem with its path; `Infer` gives
 * the TypeScript type of what a schema accepts.
 */

/** One problem found in a value. */
export interface SchemaIssue {
  path: string;
  message: string;
}

export interface Schema<T> {
  /** Problems with `value` (none → it is a `T`). */
  check(value: unknown, path?: string): SchemaIssue[];
  /** A description for documentation (JSON-Schema-like). */
  readonly describe: Record<string, unknown>;
  /** Type carrier only; never set. */
  readonly _type?: T;
}

export type Infer<S> = S extends Schema<infer T> ? T : never;

function schema<T>(
  describe: Record<string, unknown>,
  check: (value: unknown, path: string) => SchemaIssue[],
): Schema<T> {
  return { describe, check: (value, path = "") => check(value, path) };
}

const at = (path: string, key: string | number): string =>
  typeof key === "number" ? `${path}[${key}]` : path === "" ? key : `${path}.${key}`;

export function string(
  options: { minLength?: number; maxLength?: number; pattern?: RegExp } = {},
): Schema<string> {
  const { minLength = 0, maxLength = Number.MAX_SAFE_INTEGER, pattern } = options;
  return schema<string>(
    {
      type: "string",
      minLength,
      ...(maxLength < Number.MAX_SAFE_INTEGER ? { maxLength } : {}),
      ...(pattern ? { pattern: pattern.source } : {}),
    },
    (value, path) => {
      if (typeof value !== "string") return [{ path, message: "must be a string" }];
      if (value.length < minLength) return [{ path, message: `must be at least ${minLength} characters` }];
      if (value.length > maxLength) return [{ path, message: `must be at most ${maxLength} characters` }];
      if (pattern !== undefined && !pattern.test(value))
        return [{ path, message: `must match ${pattern.source}` }];
      return [];
    },
  );
}

export function integer(options: { min?: number; max?: number } = {}): Schema<number> {
  const { min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER } = options;
  return schema<number>({ type: "integer", minimum: min, maximum: max }, (value, path) => {
    if (typeof value !== "number" || !Number.isSafeInteger(value))
      return [{ path, message: "must be a safe integer" }];
    if (value < min || value > max) return [{ path, message: `must be between ${min} and ${max}` }];
    return [];
  });
}

export function boolean(): Schema<boolean> {
  return schema<boolean>({ type: "boolean" }, (value, path) =>
    typeof value === "boolean" ? [] : [{ path, message: "must be true or false" }],
  );
}

export function literal<const T extends string | number>(...values: T[]): Schema<T> {
  return schema<T>({ enum: values }, (value, path) =>
    (values as unknown[]).includes(value) ? [] : [{ path, message: `must be one of ${values.join(", ")}` }],
  );
}

/** An ISO 8601 timestamp in UTC with milliseconds, as `Date.prototype.toISOString` writes it. */
export function isoTimestamp(): Schema<string> {
  const shape = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
  return schema<string>({ type: "string", format: "date-time" }, (value, path) =>
    typeof value === "string" && shape.test(value) && roundTrips(value)
      ? []
      : [{ path, message: "must be an ISO 8601 UTC timestamp such as 2026-01-31T12:00:00.000Z" }],
  );
}

/** True when the timestamp names a real instant (no 31 February). */
function roundTrips(value: string): boolean {
  const time = Date.parse(value);
  return !Number.isNaN(time) && new Date(time).toISOString() === value;
}

export function array<T>(
  items: Schema<T>,
  options: { minItems?: number; maxItems?: number } = {},
): Schema<T[]> {
  const { minItems = 0, maxItems = Number.MAX_SAFE_INTEGER } = options;
  return schema<T[]>(
    {
      type: "array",
      items: items.describe,
      minItems,
      ...(maxItems < Number.MAX_SAFE_INTEGER ? { maxItems } : {}),
    },
    (value, path) => {
      if (!Array.isArray(value)) return [{ path, message: "must be an array" }];
      if (value.length < minItems) return [{ path, message: `must have at least ${minItems} items` }];
      if (value.length > maxItems) return [{ path, message: `must have at most ${maxItems} items` }];
      return value.flatMap((item, i) => items.check(item, at(path, i)));
    },
  );
}

type Shape = Record<string, Schema<unknown>>;
type OptionalKeys<S extends Shape> = {
  [K in keyof S]: S[K] extends OptionalSchema<unknown> ? K : never;
}[keyof S];
type ObjectOf<S extends Shape> = { [K in Exclude<keyof S, OptionalKeys<S>>]: Infer<S[K]> } & {
  [K in OptionalKeys<S>]?: Infer<S[K]>;
};

interface OptionalSchema<T> extends Schema<T | undefined> {
  readonly optional: true;
}

/** Marks an object field as optional (absent or `undefined`). */
export function optional<T>(inner: Schema<T>): OptionalSchema<T> {
  return {
    optional: true,
    describe: inner.describe,
    check: (value, path = "") => (value === undefined ? [] : inner.check(value, path)),
  };
}

/** A plain object with exactly these fields: unknown fields are refused. */
export function object<S extends Shape>(shape: S): Schema<ObjectOf<S>> {
  const required = Object.entries(shape)
    .filter(([, s]) => !("optional" in s))
    .map(([k]) => k);
  return schema<ObjectOf<S>>(
    {
      type: "object",
      additionalProperties: false,
      required,
      properties: Object.fromEntries(Object.entries(shape).map(([k, s]) => [k, s.describe])),
    },
    (value, path) => {
      if (typeof value !== "object" || value === null || Array.isArray(value))
        return [{ path, message: "must be an object" }];
      const record = value as Record<string, unknown>;
      const issues: SchemaIssue[] = [];
      for (const key of Object.keys(record)) {
        if (!(key in shape)) issues.push({ path: at(path, key), message: "is not allowed" });
      }
      for (const [key, fieldSchema] of Object.entries(shape)) {
        if (record[key] === undefined && !("optional" in fieldSchema)) {
          issues.push({ path: at(path, key), message: "is required" });
        } else {
          issues.push(...fieldSchema.check(record[key], at(path, key)));
        }
      }
      return issues;
    },
  );
}

/** Problems rendered as one line: `items[0].quantity must be between 1 and 1000; …`. */
export function formatIssues(issues: readonly SchemaIssue[]): string {
  return issues.map((i) => `${i.path === "" ? "value" : i.path} ${i.message}`).join("; ");
}
