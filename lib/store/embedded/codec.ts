/**
 * The stored form of a document: JSON with each Date tagged as `{"$date": "<ISO-8601>"}`. Field
 * names never start with `$` (see `assertValidValue`), so a tag cannot be confused with data.
 */
import type { Doc } from "../store.port";

function dateReplacer(this: Record<string, unknown>, key: string, value: unknown): unknown {
  const raw = this[key];
  return raw instanceof Date ? { $date: raw.toISOString() } : value;
}

function dateReviver(_key: string, value: unknown): unknown {
  if (typeof value === "object" && value !== null && !Array.isArray(value)) {
    const tagged = (value as { $date?: unknown }).$date;
    if (typeof tagged === "string" && Object.keys(value).length === 1) return new Date(tagged);
  }
  return value;
}

function containsDate(value: unknown, depth: number): boolean {
  if (typeof value !== "object" || value === null) return false;
  if (value instanceof Date) return true;
  if (depth > 100) return true;
  if (Array.isArray(value)) {
    for (const item of value) if (containsDate(item, depth + 1)) return true;
    return false;
  }
  for (const key in value) if (containsDate((value as Record<string, unknown>)[key], depth + 1)) return true;
  return false;
}

/** Encodes a (validated) value for storage. */
export function encodeValue(value: unknown): string {
  return containsDate(value, 0) ? JSON.stringify(value, dateReplacer) : JSON.stringify(value);
}

/** Decodes a stored value. */
export function decodeValue(text: string): unknown {
  return text.includes('"$date"') ? JSON.parse(text, dateReviver) : JSON.parse(text);
}

/** Encodes a (validated) document for storage. */
export function encodeDoc(doc: Doc): string {
  return encodeValue(doc);
}

/** Decodes a stored document. */
export function decodeDoc(body: string): Doc {
  return decodeValue(body) as Doc;
}
