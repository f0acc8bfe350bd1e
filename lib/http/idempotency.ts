/**
 * Idempotency-Key (IETF draft "The Idempotency-Key HTTP Header Field") for POST routes of the
 * gateway: the first request with a key claims it in the key-value store (atomic set-if-absent)
 * with the fingerprint of its body; once it succeeds, its status and body are stored for
 * `ttlMs` (24 h by default) and replayed to a retry with the same key and body. The same key with
 * another body → 422 `IDEMPOTENCY_KEY_REUSED`; while the first is in flight → 409
 * `IDEMPOTENCY_KEY_IN_FLIGHT`. Keys are scoped per principal and route, so one customer never sees
 * another's response. A failed request releases its claim, so that a retry runs again.
 * The orders store's unique (customer, key) index still holds when the key-value store was flushed.
 */
import { createHash } from "node:crypto";
import { Errors } from "moleculer";
import { HEADERS } from "../constants";
import type { KeyValueStore } from "../kv/kv.port";
import { spelled } from "./headers";

const { MoleculerClientError } = Errors;

/** An Idempotency-Key: 1 to 255 printable ASCII characters. */
export const IDEMPOTENCY_KEY_PATTERN = /^[\x21-\x7e]{1,255}$/;

export const IDEMPOTENCY_DEFAULTS = {
  /** How long a completed response is replayed. */
  ttlMs: 24 * 3600_000,
  /** How long a claim without an answer blocks the key (a crashed gateway frees it then). */
  inFlightTtlMs: 60_000,
};

type Stored =
  | { state: "in_flight"; fingerprint: string }
  | { state: "done"; fingerprint: string; status: number; body: unknown };

export type IdempotentOutcome<T> =
  { replayed: false; status: number; body: T } | { replayed: true; status: number; body: unknown };

/** Stable JSON: object keys sorted at every depth. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.keys(value as Record<string, unknown>)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonicalJson((value as Record<string, unknown>)[key])}`);
    return `{${entries.join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

export function fingerprintOf(body: unknown): string {
  return createHash("sha256").update(canonicalJson(body)).digest("hex");
}

/**
 * Run `execute` at most once per (scope, key) with this body, replaying its stored answer to a
 * retry. `scope` names the principal and the route, e.g. `alice:POST /api/v1/orders`.
 */
export async function idempotent<T>(
  kv: KeyValueStore,
  request: { scope: string; key: string; body: unknown },
  execute: () => Promise<{ status: number; body: T }>,
  options: { ttlMs?: number; inFlightTtlMs?: number } = {},
): Promise<IdempotentOutcome<T>> {
  const ttlMs = options.ttlMs ?? IDEMPOTENCY_DEFAULTS.ttlMs;
  const inFlightTtlMs = options.inFlightTtlMs ?? IDEMPOTENCY_DEFAULTS.inFlightTtlMs;
  const recordKey = `idem:${createHash("sha256").update(`${request.scope}\u0000${request.key}`).digest("hex")}`;
  const fingerprint = fingerprintOf(request.body);
  const claim = JSON.stringify({ state: "in_flight", fingerprint } satisfies Stored);

  if (!(await kv.setIfAbsent(recordKey, claim, inFlightTtlMs))) {
    const raw = await kv.get(recordKey);
    const stored = raw === null ? null : (JSON.parse(raw) as Stored);
    if (stored !== null && stored.fingerprint !== fingerprint)
      throw new MoleculerClientError(
        "this Idempotency-Key was used with another request body",
        422,
        "IDEMPOTENCY_KEY_REUSED",
      );
    if (stored?.state === "done") return { replayed: true, status: stored.status, body: stored.body };
    if (stored !== null)
      throw new MoleculerClientError(
        "a request with this Idempotency-Key is still in progress",
        409,
        "IDEMPOTENCY_KEY_IN_FLIGHT",
      );
    // the record expired between the two reads: claim again, once
    if (!(await kv.setIfAbsent(recordKey, claim, inFlightTtlMs)))
      throw new MoleculerClientError(
        "a request with this Idempotency-Key is still in progress",
        409,
        "IDEMPOTENCY_KEY_IN_FLIGHT",
      );
  }

  let result: { status: number; body: T };
  try {
    result = await execute();
  } catch (err) {
    // nothing to replay: a retry runs again (the domain's own idempotency still holds)
    await kv.delete(recordKey, claim).catch(() => undefined);
    throw err;
  }
  const done: Stored = { state: "done", fingerprint, status: result.status, body: result.body };
  await kv.compareAndSet(recordKey, claim, JSON.stringify(done), ttlMs).catch(() => undefined);
  return { replayed: false, ...result };
}

/**
 * The request's Idempotency-Key, checked: 400 IDEMPOTENCY_KEY_REQUIRED when a route needs one and
 * there is none, 400 INVALID_IDEMPOTENCY_KEY when it is not 1 to 255 printable ASCII characters.
 */
export function idempotencyKeyOf(key: string | undefined, need: "required"): string;
export function idempotencyKeyOf(key: string | undefined, need: "optional"): string | undefined;
export function idempotencyKeyOf(key: string | undefined, need: "required" | "optional"): string | undefined;
export function idempotencyKeyOf(key: string | undefined, need: "required" | "optional"): string | undefined {
  if (key === undefined) {
    if (need === "optional") return undefined;
    throw new MoleculerClientError("the Idempotency-Key header is required", 400, "IDEMPOTENCY_KEY_REQUIRED");
  }
  if (!IDEMPOTENCY_KEY_PATTERN.test(key))
    throw new MoleculerClientError(
      "Idempotency-Key must be 1 to 255 printable ASCII characters",
      400,
      "INVALID_IDEMPOTENCY_KEY",
    );
  return key;
}

/** Headers of an idempotent answer: `Idempotent-Replayed: true` when it came from the store. */
export function replayHeaders(outcome: IdempotentOutcome<unknown>): Record<string, string> | undefined {
  return outcome.replayed ? { [spelled(HEADERS.idempotentReplayed)]: "true" } : undefined;
}
