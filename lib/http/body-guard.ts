/**
 * Bodies at the gateway (docs/architecture.md, "The gateway's edge"): a JSON route takes JSON only
 * (415 otherwise, never silently ignored), at most 64 KiB (413), UTF-8 (400 INVALID_JSON), never
 * compressed (415, not inflated); the webhook route keeps its body raw, byte for byte, because the
 * provider's signature covers exactly those bytes; the other routes read no body at all.
 */
import type { IncomingMessage } from "node:http";
import { Errors } from "moleculer";
import { HEADERS } from "../constants";

const { MoleculerClientError } = Errors;

/** The largest body any route takes. */
export const BODY_LIMIT = "64kb";

const UTF8 = new TextDecoder("utf-8", { fatal: true });

/**
 * body-parser's `verify` hook: JSON text must be UTF-8 (RFC 8259 §8.1); bytes that are not would
 * otherwise be stored as U+FFFD. Thrown as a parse failure: 400 INVALID_JSON.
 */
export function verifyUtf8(_req: unknown, _res: unknown, body: Buffer): void {
  try {
    UTF8.decode(body);
  } catch {
    throw Object.assign(new Error("the body is not valid UTF-8"), {
      status: 400,
      type: "entity.parse.failed",
    });
  }
}

/** moleculer-web's `bodyParsers` of a JSON route: strict JSON, UTF-8, bounded, never inflated. */
export const JSON_BODY = {
  json: { strict: true, limit: BODY_LIMIT, inflate: false, verify: verifyUtf8 },
  urlencoded: false,
} as const;

/** `bodyParsers` of a route that needs the exact bytes (any media type, bounded, never inflated). */
export const RAW_BODY = {
  json: false,
  urlencoded: false,
  raw: { type: (): boolean => true, limit: BODY_LIMIT, inflate: false },
} as const;

/** `bodyParsers` of a route that reads no body. */
export const NO_BODY = { json: false, urlencoded: false } as const;

/** `application/json`, or a `+json` type such as `application/merge-patch+json`. */
export function isJsonMediaType(type: string): boolean {
  return type === "application/json" || /^application\/[a-z0-9.+-]+\+json$/.test(type);
}

/** A body on a JSON route must say it is JSON: anything else is 415 UNSUPPORTED_MEDIA_TYPE. */
export function requireJsonBody(headers: IncomingMessage["headers"]): void {
  const length = headers[HEADERS.contentLength];
  const hasBody = (length !== undefined && length !== "0") || headers[HEADERS.transferEncoding] !== undefined;
  if (!hasBody) return;
  const type = (headers[HEADERS.contentType] ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
  if (isJsonMediaType(type)) return;
  throw new MoleculerClientError(
    "the body must be JSON (Content-Type: application/json)",
    415,
    "UNSUPPORTED_MEDIA_TYPE",
    { contentType: type === "" ? null : type.slice(0, 100) },
  );
}

/** The text of a raw body as moleculer-web hands it over (a Buffer; a string; nothing). */
export function rawBodyText(raw: unknown): string {
  return Buffer.isBuffer(raw) ? raw.toString("utf8") : typeof raw === "string" ? raw : "";
}
