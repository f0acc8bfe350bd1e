/**
 * fastest-validator rules (Moleculer's `params`) as JSON Schema 2020-12, so that the API
 * description is read from the very rules that check each request and cannot drift from them.
 *
 * Every rule type and every rule property the converter understands is listed below; anything else
 * throws `UNSUPPORTED_PARAM_RULE` while the document is built. A rule the API starts using must be
 * taught here first, instead of silently going undocumented (or documented looser than enforced).
 * Rule reference: https://github.com/icebob/fastest-validator#readme
 */
import { ApiDescriptionError, type JsonSchema } from "./openapi.types";

/** One converted rule. */
export interface ConvertedRule {
  schema: JsonSchema;
  optional: boolean;
  /** The value may arrive as text (a path segment or a query string) and still pass the rule. */
  acceptsText: boolean;
}

/** The top level of an action's `params`: one converted rule per property. */
export interface ConvertedParams {
  properties: Record<string, ConvertedRule>;
  /** `$$strict: true`: any property not listed is refused. */
  closed: boolean;
}

type Rule = Readonly<Record<string, unknown>>;

/** Properties every rule may carry. */
const COMMON_PROPERTIES = ["type", "optional", "default"] as const;

/** Properties understood per rule type; a type missing here is unsupported. */
const RULE_PROPERTIES: Readonly<Record<string, readonly string[]>> = {
  string: ["min", "max", "length", "pattern", "enum", "empty"],
  number: ["integer", "min", "max", "positive", "negative", "convert"],
  boolean: ["convert"],
  enum: ["values"],
  array: ["items", "min", "max", "length", "unique", "empty"],
  object: ["props", "properties", "strict", "minProps", "maxProps"],
  any: [],
};

/** Top-level keys of `params` that are options, not properties. */
const PARAMS_OPTIONS = new Set(["$$strict"]);

/** The properties of an action's `params` (its `$$strict` included); `at` names it in errors. */
export function convertParams(params: Readonly<Record<string, unknown>>, at: string): ConvertedParams {
  const properties: Record<string, ConvertedRule> = {};
  for (const [name, rule] of Object.entries(params)) {
    if (name.startsWith("$$")) {
      if (!PARAMS_OPTIONS.has(name)) unsupported(`${at}.${name}`, `the option ${name}`);
      continue;
    }
    properties[name] = convertRule(rule, `${at}.${name}`);
  }
  const strict = params.$$strict;
  if (strict !== undefined && strict !== true && strict !== false && strict !== "remove")
    unsupported(`${at}.$$strict`, `$$strict: ${JSON.stringify(strict)}`);
  return { properties, closed: strict === true };
}

/** One rule as JSON Schema; throws `UNSUPPORTED_PARAM_RULE` for anything not listed above. */
export function convertRule(rule: unknown, at: string): ConvertedRule {
  if (typeof rule !== "object" || rule === null || Array.isArray(rule))
    unsupported(at, `a rule written as ${JSON.stringify(String(rule))} (write the object form)`);
  const r = rule as Rule;
  const type = r.type;
  const known = typeof type === "string" ? RULE_PROPERTIES[type] : undefined;
  if (known === undefined) unsupported(at, `the rule type ${JSON.stringify(type)}`);
  for (const property of Object.keys(r)) {
    if (!(COMMON_PROPERTIES as readonly string[]).includes(property) && !known.includes(property))
      unsupported(at, `the property "${property}" of a ${String(type)} rule`);
  }
  const converted = convertTyped(type as string, r, at);
  if (r.default !== undefined) converted.schema.default = jsonValue(r.default, `${at}.default`);
  return { ...converted, optional: r.optional === true || r.default !== undefined };
}

function convertTyped(type: string, r: Rule, at: string): Omit<ConvertedRule, "optional"> {
  switch (type) {
    case "string":
      return { schema: stringSchema(r, at), acceptsText: true };
    case "number": {
      const schema: JsonSchema = { type: r.integer === true ? "integer" : "number" };
      if (r.min !== undefined) schema.minimum = numberOf(r.min, `${at}.min`);
      if (r.max !== undefined) schema.maximum = numberOf(r.max, `${at}.max`);
      if (r.positive === true) schema.exclusiveMinimum = 0;
      if (r.negative === true) schema.exclusiveMaximum = 0;
      return { schema, acceptsText: r.convert === true };
    }
    case "boolean":
      return { schema: { type: "boolean" }, acceptsText: r.convert === true };
    case "enum": {
      if (!Array.isArray(r.values) || r.values.length === 0) unsupported(at, "an enum without values");
      const values = r.values.map((v, i) => jsonValue(v, `${at}.values[${i}]`));
      const allText = values.every((v) => typeof v === "string");
      return { schema: allText ? { type: "string", enum: values } : { enum: values }, acceptsText: allText };
    }
    case "array":
      return { schema: arraySchema(r, at), acceptsText: false };
    case "object":
      return { schema: objectSchema(r, at), acceptsText: false };
    default:
      // "any"
      return { schema: {}, acceptsText: true };
  }
}

function stringSchema(r: Rule, at: string): JsonSchema {
  const schema: JsonSchema = { type: "string" };
  if (r.min !== undefined) schema.minLength = numberOf(r.min, `${at}.min`);
  if (r.max !== undefined) schema.maxLength = numberOf(r.max, `${at}.max`);
  if (r.length !== undefined) schema.minLength = schema.maxLength = numberOf(r.length, `${at}.length`);
  if (r.empty === false) schema.minLength = Math.max(1, (schema.minLength as number | undefined) ?? 0);
  if (r.pattern !== undefined) schema.pattern = patternOf(r.pattern, `${at}.pattern`);
  if (r.enum !== undefined) {
    if (!Array.isArray(r.enum) || !r.enum.every((v) => typeof v === "string"))
      unsupported(`${at}.enum`, "a string enum that is not a list of strings");
    schema.enum = [...r.enum];
  }
  return schema;
}

function arraySchema(r: Rule, at: string): JsonSchema {
  const schema: JsonSchema = { type: "array" };
  if (r.items !== undefined) schema.items = convertRule(r.items, `${at}[]`).schema;
  if (r.min !== undefined) schema.minItems = numberOf(r.min, `${at}.min`);
  if (r.max !== undefined) schema.maxItems = numberOf(r.max, `${at}.max`);
  if (r.length !== undefined) schema.minItems = schema.maxItems = numberOf(r.length, `${at}.length`);
  if (r.empty === false) schema.minItems = Math.max(1, (schema.minItems as number | undefined) ?? 0);
  if (r.unique === true) schema.uniqueItems = true;
  return schema;
}

function objectSchema(r: Rule, at: string): JsonSchema {
  const schema: JsonSchema = { type: "object" };
  const props = r.props ?? r.properties;
  if (props !== undefined) {
    if (typeof props !== "object" || props === null)
      unsupported(`${at}.props`, "props that are not an object");
    const properties: Record<string, JsonSchema> = {};
    const required: string[] = [];
    for (const [name, rule] of Object.entries(props as Record<string, unknown>)) {
      const converted = convertRule(rule, `${at}.${name}`);
      properties[name] = converted.schema;
      if (!converted.optional) required.push(name);
    }
    schema.properties = properties;
    if (required.length > 0) schema.required = required;
  }
  // strict: "remove" drops unknown properties silently, so they are not refused
  if (r.strict === true) schema.additionalProperties = false;
  else if (r.strict !== undefined && r.strict !== false && r.strict !== "remove")
    unsupported(`${at}.strict`, `strict: ${JSON.stringify(r.strict)}`);
  if (r.minProps !== undefined) schema.minProperties = numberOf(r.minProps, `${at}.minProps`);
  if (r.maxProps !== undefined) schema.maxProperties = numberOf(r.maxProps, `${at}.maxProps`);
  return schema;
}

/** A pattern as ECMA-262 source; flags cannot be expressed in JSON Schema, so they are refused. */
function patternOf(pattern: unknown, at: string): string {
  if (typeof pattern === "string") return pattern;
  if (pattern instanceof RegExp) {
    if (pattern.flags !== "") unsupported(at, `the pattern flags "${pattern.flags}"`);
    return pattern.source;
  }
  return unsupported(at, "a pattern that is neither a RegExp nor a string");
}

function numberOf(value: unknown, at: string): number {
  if (typeof value !== "number" || !Number.isFinite(value)) unsupported(at, `the limit ${String(value)}`);
  return value;
}

/** A value that survives JSON unchanged (enum values, defaults). */
function jsonValue(value: unknown, at: string): unknown {
  const ok =
    value === null ||
    typeof value === "string" ||
    typeof value === "boolean" ||
    (typeof value === "number" && Number.isFinite(value));
  if (!ok) unsupported(at, `the value ${String(value)}`);
  return value;
}

function unsupported(at: string, what: string): never {
  throw new ApiDescriptionError("UNSUPPORTED_PARAM_RULE", `${at}: cannot describe ${what}`, { at });
}
