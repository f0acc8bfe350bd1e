/**
 * Signatures of payment-provider webhooks, Stripe's scheme: the header
 * `Psp-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`.
 *
 * The receiver checks the raw bytes it was sent (never a re-serialised body), compares in constant
 * time, accepts any of several `v1=` values (the provider signs with every secret it holds while a
 * secret is rolled) and any of several secrets (ours, while we roll), and refuses a timestamp more
 * than `toleranceSeconds` away from now in either direction, so a captured request cannot be
 * replayed later. https://docs.stripe.com/webhooks#verify-manually
 */
import { createHmac, timingSafeEqual } from "node:crypto";

/** Default distance between the signed timestamp and now, in seconds, beyond which a webhook is refused. */
export const SIGNATURE_TOLERANCE_SECONDS = 300;

/** Why a signature was refused. */
export type SignatureFailure =
  "SIGNATURE_MISSING" | "SIGNATURE_MALFORMED" | "SIGNATURE_MISMATCH" | "SIGNATURE_EXPIRED";

export type SignatureVerdict = { ok: true; timestamp: number } | { ok: false; code: SignatureFailure };

export interface VerifySignatureOptions {
  /** The `Psp-Signature` header as received; undefined or empty when there was none. */
  header: string | undefined;
  /** The request body exactly as received. */
  rawBody: string | Buffer;
  /** Every secret currently accepted (more than one while a secret is rolled). */
  secrets: readonly string[];
  /** Refuse timestamps further than this from now, in seconds (default 300). */
  toleranceSeconds?: number;
  /** Now, in Unix seconds (default: the clock). */
  now?: number;
}

/** A SHA-256 HMAC in hex is 64 characters. */
const V1_PATTERN = /^[0-9a-fA-F]{64}$/;

function hmac(secret: string, rawBody: string | Buffer, timestampSeconds: number): Buffer {
  return createHmac("sha256", secret)
    .update(`${timestampSeconds}.`, "utf8")
    .update(typeof rawBody === "string" ? Buffer.from(rawBody, "utf8") : rawBody)
    .digest();
}

/** The `Psp-Signature` header value for `rawBody` signed with `secret` at `timestampSeconds`. */
export function signPayload(secret: string, rawBody: string | Buffer, timestampSeconds: number): string {
  if (!Number.isSafeInteger(timestampSeconds) || timestampSeconds < 0)
    throw new RangeError(`timestamp must be whole Unix seconds, got ${timestampSeconds}`);
  return `t=${timestampSeconds},v1=${hmac(secret, rawBody, timestampSeconds).toString("hex")}`;
}

/** The timestamp and the `v1` signatures of a header; null when it is not of the form `t=…,v1=…`. */
function parseHeader(header: string): { timestamp: number; signatures: Buffer[] } | null {
  let timestamp: number | undefined;
  const signatures: Buffer[] = [];
  let v1Seen = 0;
  for (const part of header.split(",")) {
    const at = part.indexOf("=");
    if (at <= 0) return null;
    const key = part.slice(0, at).trim();
    const value = part.slice(at + 1).trim();
    if (key === "t") {
      if (timestamp !== undefined || !/^\d{1,12}$/.test(value)) return null;
      timestamp = Number(value);
    } else if (key === "v1") {
      v1Seen += 1;
      // a v1 value that cannot be a SHA-256 HMAC can never match; the others may
      if (V1_PATTERN.test(value)) signatures.push(Buffer.from(value, "hex"));
    }
    // other schemes (v0, …) are ignored, as Stripe does
  }
  if (timestamp === undefined || v1Seen === 0) return null;
  return { timestamp, signatures };
}

/**
 * Check a webhook's signature: missing header → SIGNATURE_MISSING; not `t=…,v1=…` →
 * SIGNATURE_MALFORMED; no `v1` matching any secret → SIGNATURE_MISMATCH; a matching signature whose
 * timestamp is further than the tolerance from now (past or future) → SIGNATURE_EXPIRED.
 */
export function verifySignature(options: VerifySignatureOptions): SignatureVerdict {
  const { header, rawBody, secrets } = options;
  const tolerance = options.toleranceSeconds ?? SIGNATURE_TOLERANCE_SECONDS;
  if (header === undefined || header.trim() === "") return { ok: false, code: "SIGNATURE_MISSING" };
  const parsed = parseHeader(header);
  if (parsed === null) return { ok: false, code: "SIGNATURE_MALFORMED" };

  let matched = false;
  for (const secret of secrets) {
    if (secret.length === 0) continue;
    const expected = hmac(secret, rawBody, parsed.timestamp);
    for (const candidate of parsed.signatures) {
      // equal lengths by construction (32 bytes each); timingSafeEqual demands it
      if (candidate.length === expected.length && timingSafeEqual(candidate, expected)) matched = true;
    }
  }
  if (!matched) return { ok: false, code: "SIGNATURE_MISMATCH" };

  const now = options.now ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - parsed.timestamp) > tolerance) return { ok: false, code: "SIGNATURE_EXPIRED" };
  return { ok: true, timestamp: parsed.timestamp };
}
