/**
 * What a hostile-client test of the HTTP API needs besides the requests it generates: a client
 * that sends requests byte for byte (node:http, no URL normalising, duplicated headers, any body
 * bytes), the checks every answer must pass whatever was sent, and a fingerprint of everything a
 * request could change — stores, stock, outbox, idempotency records, `Object.prototype`.
 */
import { createHmac } from "node:crypto";
import { request as httpRequest, type IncomingHttpHeaders } from "node:http";
import type { ServiceBroker } from "moleculer";
import { infrastructureOf } from "../../lib/infrastructure";
import { DEAD_LETTER_COLLECTION } from "../../lib/inbox/dead-letters";
import { PROCESSED_COLLECTION } from "../../lib/inbox/processed-events";
import { OUTBOX_COLLECTION } from "../../lib/outbox/outbox";
import type { Doc, DocumentStore } from "../../lib/store/store.port";

/** One header line, as sent; a name may appear more than once. */
export type Header = readonly [name: string, value: string];

/** A request as it goes on the wire. */
export interface RawRequest {
  method: string;
  /**
   * The request target, byte for byte: each character is one byte (U+0000..U+00FF), so
   * `"\u00ff"` sends the byte 0xFF. Nothing is encoded or normalised.
   */
  path: string;
  headers: readonly Header[];
  body?: Buffer;
  /** Send the body chunked (no Content-Length). */
  chunked?: boolean;
}

/** The answer; `status` 0 when none came (`failure` says why). */
export interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  failure?: string;
}

/** What the contract allows as an answer to one request. */
export interface Expectation {
  statuses: readonly number[];
  /** Error codes allowed when the answer is an error; any code when absent. */
  codes?: readonly string[];
}

/** Methods node sends without any body framing when there is no body. */
const BODYLESS_METHODS = new Set(["GET", "HEAD", "DELETE", "OPTIONS", "TRACE", "CONNECT"]);

/**
 * Send `request` to the gateway on 127.0.0.1:`port` over a fresh connection. Host and
 * Content-Length are added unless the request names them (or is chunked).
 */
export function sendRaw(port: number, request: RawRequest, timeoutMs = 15_000): Promise<RawResponse> {
  const names = new Set(request.headers.map(([name]) => name.toLowerCase()));
  const lines: string[] = [];
  if (!names.has("host")) lines.push("Host", `127.0.0.1:${port}`);
  for (const [name, value] of request.headers) lines.push(name, value);
  if (request.body !== undefined && !request.chunked && !names.has("content-length"))
    lines.push("Content-Length", String(request.body.length));
  if (request.chunked && !names.has("transfer-encoding")) lines.push("Transfer-Encoding", "chunked");
  // without a body, say so as browsers do; node would otherwise send an empty chunked body
  if (request.body === undefined && !BODYLESS_METHODS.has(request.method) && !names.has("content-length"))
    lines.push("Content-Length", "0");

  return new Promise((resolve) => {
    let settled = false;
    const finish = (response: RawResponse): void => {
      if (settled) return;
      settled = true;
      resolve(response);
    };
    // what has arrived of the answer, kept when the connection breaks afterwards (a 413 sent
    // before the whole body was read, say)
    let status = 0;
    let headers: IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    const received = (failure?: string): RawResponse => ({
      status,
      headers,
      text: Buffer.concat(chunks).toString("utf8"),
      ...(status === 0 ? { failure: failure ?? "connection closed" } : {}),
    });
    let client: ReturnType<typeof httpRequest>;
    try {
      client = httpRequest(
        {
          host: "127.0.0.1",
          port,
          method: request.method,
          path: request.path,
          headers: lines,
          agent: false,
          timeout: timeoutMs,
        },
        (res) => {
          status = res.statusCode ?? 0;
          headers = res.headers;
          res.on("data", (chunk: Buffer) => chunks.push(chunk));
          res.on("end", () => finish(received()));
          res.on("error", (err) => finish(received(err.message)));
        },
      );
    } catch (err) {
      // node refused to send it at all: a mistake in the test, not an answer of the gateway
      throw new Error(`cannot send ${request.method} ${request.path}: ${(err as Error).message}`);
    }
    client.on("timeout", () => client.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    client.on("error", (err) => finish(received(err.message)));
    if (request.body === undefined) {
      client.end();
    } else if (request.chunked) {
      // several chunks, so that the server never learns the length up front
      const size = Math.max(1, Math.ceil(request.body.length / 4));
      for (let at = 0; at < request.body.length; at += size)
        client.write(request.body.subarray(at, at + size));
      client.end();
    } else {
      client.end(request.body);
    }
  });
}

/** Phrases that only an internal error would put in an answer. */
const LEAK_MARKERS: readonly RegExp[] = [
  /\bat (?:async )?[\w$.<>[\]]+ \(/, // stack frame: "at fn (file:1:2)"
  /\n\s+at /,
  /\.(?:[cm]?[jt]s|tsx?):\d+/, // file.ts:12
  /\b(?:TypeError|ReferenceError|RangeError|SyntaxError|EvalError|URIError)\b/,
  /Cannot (?:read|set) propert/,
  /is not a function|is not defined|is not iterable/,
  /Unexpected (?:token|end of JSON)|in JSON at position/,
  /Maximum call stack/,
  /node_modules|\/node:internal/,
  /\bE(?:NOENT|ACCES|CONNREFUSED|CONNRESET|ADDRINUSE|PIPE)\b/,
  /Moleculer(?:Server|Retryable)?Error|ServiceNotFoundError|"stack"/,
];

/** Strings that must never appear in what the gateway sends (paths of this process, ...). */
export function internalMarkers(...paths: string[]): RegExp[] {
  const literal = (s: string) => new RegExp(s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  return [...LEAK_MARKERS, ...paths.filter((p) => p.length > 1).map(literal)];
}

/** True when `text` contains no leak marker (used to keep generated input free of them). */
export function freeOfLeakMarkers(text: string): boolean {
  return LEAK_MARKERS.every((marker) => !marker.test(text));
}

const ENVELOPE_KEYS = new Set(["code", "message", "details", "requestId"]);

/**
 * Everything wrong with `response` as an answer to `request`: a 5xx or no answer, a status the
 * contract does not allow, an error that is not the envelope (or whose requestId is not the
 * X-Request-Id header), a leak of internals, or any of `secrets` that the request did not name.
 */
export function problemsWith(
  request: RawRequest,
  response: RawResponse,
  expected: Expectation,
  leaks: readonly RegExp[],
  secrets: readonly string[] = [],
): string[] {
  const problems: string[] = [];
  if (response.status === 0) return [`no answer (${response.failure ?? "connection closed"})`];
  if (response.status >= 500) problems.push(`server error ${response.status}`);
  if (!expected.statuses.includes(response.status))
    problems.push(`status ${response.status}, the contract says ${expected.statuses.join(" or ")}`);

  const hasBody = request.method !== "HEAD" && response.status !== 204 && response.status !== 304;
  if (response.status >= 400 && hasBody) problems.push(...envelopeProblems(response, expected));
  if (response.status >= 200 && response.status < 300 && hasBody && request.path.startsWith("/api/v1")) {
    if (!parsesAsJson(response.text)) problems.push("a success whose body is not JSON");
  }

  const answer = `${JSON.stringify(response.headers)}\n${response.text}`;
  for (const marker of leaks) {
    const match = marker.exec(answer);
    if (match !== null) problems.push(`leaks internals: …${excerpt(answer, match.index)}…`);
  }
  const asked = `${request.path}\n${request.headers.map(([, v]) => v).join("\n")}\n${request.body?.toString("latin1") ?? ""}`;
  for (const secret of secrets) {
    if (answer.includes(secret) && !asked.includes(secret)) problems.push(`shows ${secret} to someone else`);
  }
  return problems;
}

function envelopeProblems(response: RawResponse, expected: Expectation): string[] {
  const problems: string[] = [];
  const type = String(response.headers["content-type"] ?? "");
  if (!/^application\/json\b/.test(type)) problems.push(`error with Content-Type "${type}"`);
  let body: unknown;
  try {
    body = JSON.parse(response.text);
  } catch {
    return [...problems, "error body is not JSON"];
  }
  const error = (body as { error?: unknown } | null)?.error as Record<string, unknown> | undefined;
  if (typeof body !== "object" || body === null || Object.keys(body).join() !== "error")
    problems.push("error body is not exactly { error }");
  if (typeof error !== "object" || error === null) return [...problems, "no error object"];
  const extra = Object.keys(error).filter((key) => !ENVELOPE_KEYS.has(key));
  if (extra.length > 0) problems.push(`error has other fields: ${extra.join(", ")}`);
  if (typeof error.code !== "string" || !/^[A-Z][A-Z0-9_]*$/.test(error.code))
    problems.push(`error.code ${JSON.stringify(error.code)} is not a SCREAMING_SNAKE code`);
  else if (expected.codes !== undefined && !expected.codes.includes(error.code))
    problems.push(`error.code ${error.code}, the contract says ${expected.codes.join(" or ")}`);
  if (typeof error.message !== "string") problems.push("error.message is not a string");
  const requestId = response.headers["x-request-id"];
  if (typeof requestId !== "string" || requestId === "") problems.push("no X-Request-Id header");
  else if (error.requestId !== requestId)
    problems.push(`error.requestId ${JSON.stringify(error.requestId)} is not X-Request-Id ${requestId}`);
  return problems;
}

function parsesAsJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

function excerpt(text: string, at: number): string {
  return JSON.stringify(text.slice(Math.max(0, at - 40), at + 60)).slice(1, -1);
}

/** A request as a person reads it: tokens by name, long or binary bodies shortened and escaped. */
export function describeRequest(request: RawRequest, tokenNames: ReadonlyMap<string, string>): string {
  const named = (value: string): string => {
    let out = value;
    for (const [token, name] of tokenNames) out = out.split(token).join(`<${name}>`);
    return out;
  };
  const lines = [`${request.method} ${printable(request.path, 300)}`];
  for (const [name, value] of request.headers) lines.push(`  ${name}: ${printable(named(value), 200)}`);
  if (request.chunked) lines.push("  (body sent chunked)");
  if (request.body !== undefined)
    lines.push(`  body (${request.body.length} bytes): ${printable(request.body.toString("latin1"), 300)}`);
  return lines.join("\n");
}

/** The answer as a person reads it. */
export function describeResponse(response: RawResponse): string {
  if (response.status === 0) return `no answer: ${response.failure ?? "connection closed"}`;
  const type = response.headers["content-type"] ?? "(no Content-Type)";
  return `${response.status} ${type} ${printable(response.text, 400)}`;
}

/** Bytes outside printable ASCII as \xNN, cut after `max` characters. */
function printable(text: string, max: number): string {
  const shown = text.length > max ? text.slice(0, max) : text;
  const escaped = shown.replace(/[^\x20-\x7e]/g, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff
      ? `\\x${code.toString(16).padStart(2, "0")}`
      : `\\u${code.toString(16).padStart(4, "0")}`;
  });
  return text.length > max ? `${escaped}…(${text.length} in all)` : escaped;
}

/** A compact HS-family JWT with any header and payload (also ones a library refuses to sign). */
export function signJwt(header: object, payload: unknown, secret: string, hash = "sha256"): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const signingInput = `${part(header)}.${part(payload)}`;
  const signature = createHmac(hash, secret).update(signingInput).digest("base64url");
  return `${signingInput}.${signature}`;
}

/** Everything a request could change, in a form two snapshots can be compared by. */
export interface StateFingerprint {
  orders: unknown[];
  products: unknown[];
  reservations: unknown[];
  payments: unknown[];
  counts: Record<string, number>;
  idempotencyRecords: number;
}

/**
 * The documents of orders, products (their stock numbers included), reservations and payments,
 * the number of outbox, inbox, webhook and notification rows in every store, and the number of
 * idempotency records in the key-value store.
 */
export async function stateFingerprint(broker: ServiceBroker): Promise<StateFingerprint> {
  const infra = infrastructureOf(broker);
  const [orders, inventory, payments, notifications] = await Promise.all([
    infra.store("orders"),
    infra.store("inventory"),
    infra.store("payments"),
    infra.store("notifications"),
  ]);
  const all = (store: DocumentStore, name: string) =>
    store.collection<Doc>(name).find({}, { sort: { _id: 1 } });
  const counts: Record<string, number> = {};
  const stores: [string, DocumentStore][] = [
    ["orders", orders],
    ["inventory", inventory],
    ["payments", payments],
    ["notifications", notifications],
  ];
  for (const [service, store] of stores) {
    for (const name of [OUTBOX_COLLECTION, PROCESSED_COLLECTION, DEAD_LETTER_COLLECTION])
      counts[`${service}.${name}`] = await store.collection(name).countDocuments({});
  }
  counts["payments.webhook_events"] = await payments.collection("webhook_events").countDocuments({});
  counts["notifications.notifications"] = await notifications.collection("notifications").countDocuments({});
  const kv = await infra.kv();
  // the port lists no keys; the memory adapter (the one used here) keeps them in `entries`
  const keys = [...(kv as unknown as { entries: Map<string, unknown> }).entries.keys()];
  return {
    orders: toJson(await all(orders, "orders")),
    products: toJson(await all(inventory, "products")),
    reservations: toJson(await all(inventory, "reservations")),
    payments: toJson(await all(payments, "payments")),
    counts,
    idempotencyRecords: keys.filter((key) => key.startsWith("idem:")).length,
  };
}

function toJson(docs: Doc[]): unknown[] {
  return JSON.parse(JSON.stringify(docs)) as unknown[];
}

/** The fingerprint once it stopped changing (asynchronous flows done), or after `timeoutMs`. */
export async function settledFingerprint(
  broker: ServiceBroker,
  timeoutMs = 15_000,
): Promise<StateFingerprint> {
  const deadline = Date.now() + timeoutMs;
  let last = JSON.stringify(await stateFingerprint(broker));
  let stableSince = Date.now();
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    const now = await stateFingerprint(broker);
    const text = JSON.stringify(now);
    if (text !== last) {
      last = text;
      stableSince = Date.now();
    } else if (Date.now() - stableSince >= 500 || Date.now() > deadline) {
      return now;
    }
  }
}

/** Own keys of the built-in prototypes a pollution would show on. */
export function prototypeFingerprint(): string {
  const keysOf = (o: object) => [
    ...Object.getOwnPropertyNames(o).sort(),
    ...Object.getOwnPropertySymbols(o).map(String),
  ];
  return JSON.stringify({
    object: keysOf(Object.prototype),
    array: keysOf(Array.prototype),
    function: keysOf(Function.prototype),
    string: keysOf(String.prototype),
  });
}
