/**
 * Headers of the gateway's answers: how a header name from lib/constants.ts is spelled where people
 * read it (on the wire, in CORS lists, in the API description), the security headers every answer
 * carries, and the JSON media type. HTTP compares header names case-insensitively; the spelling is
 * for readers.
 */
import { HEADERS } from "../constants";

/** Words that specifications spell otherwise than capitalised. */
const SPELLINGS: Readonly<Record<string, string>> = {
  // IETF draft "RateLimit header fields for HTTP"
  ratelimit: "RateLimit",
  // RFC 9110 §11.6.1
  www: "WWW",
  // W3C Trace Context spells its header in lower case
  traceparent: "traceparent",
};

/** A header name as specifications spell it: `x-request-id` → `X-Request-Id`, `ratelimit` → `RateLimit`. */
export function spelled(name: string): string {
  return name
    .toLowerCase()
    .split("-")
    .map((word) => SPELLINGS[word] ?? word.charAt(0).toUpperCase() + word.slice(1))
    .join("-");
}

/** The media type of every JSON answer. */
export const JSON_CONTENT_TYPE = "application/json; charset=utf-8";

/** Sent with every answer: the API serves JSON only, never to be framed, sniffed or cached. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  [spelled(HEADERS.contentTypeOptions)]: "nosniff",
  [spelled(HEADERS.frameOptions)]: "DENY",
  [spelled(HEADERS.referrerPolicy)]: "no-referrer",
  [spelled(HEADERS.contentSecurityPolicy)]: "default-src 'none'; frame-ancestors 'none'",
  [spelled(HEADERS.cacheControl)]: "no-store",
};
