/** Tokens put together by hand, for the checks a JWT library would never let a test reach. */
import { createHmac } from "node:crypto";

/** `value` as JSON in base64url: one part of a token. */
export function b64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString("base64url");
}

/**
 * A token assembled by hand, so that headers a library would refuse to produce can be tried;
 * HS256-signed with `key`, or with an empty signature when there is none.
 */
export function handMade(
  header: Record<string, unknown>,
  claims: Record<string, unknown>,
  key?: string,
): string {
  const head = `${b64url(header)}.${b64url(claims)}`;
  const signature = key === undefined ? "" : createHmac("sha256", key).update(head).digest("base64url");
  return `${head}.${signature}`;
}
