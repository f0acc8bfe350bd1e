/**
 * What every request gets before it is routed: a request id (the client's X-Request-Id when it is
 * short and plain, else a new one) that names the call chain and comes back in X-Request-Id and in
 * error bodies; the security headers; REQUEST_TIMEOUT as the deadline of the whole call chain; and
 * a well-formed W3C `traceparent` carried into `ctx.meta`, where services and the outbox pass it on.
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { HEADERS } from "../constants";
import { SECURITY_HEADERS, spelled } from "./headers";

/** A client's request id is kept only when it is short and plain (it ends up in logs). */
export const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

/** W3C Trace Context, version 00: `00-<trace id>-<parent id>-<flags>`. */
const TRACEPARENT_PATTERN = /^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/i;

/** The id of a request: the one the client sent when it is well-formed, else a new one. */
export function requestIdOf(given: unknown): string {
  return typeof given === "string" && REQUEST_ID_PATTERN.test(given) ? given : randomUUID();
}

/** W3C Trace Context: version 00, non-zero trace and parent ids. */
export function isTraceparent(value: string): boolean {
  const match = TRACEPARENT_PATTERN.exec(value);
  return match !== null && !/^0+$/.test(match[1] as string) && !/^0+$/.test(match[2] as string);
}

/** The request's `traceparent`, lower-cased, when it is well-formed; a malformed one is dropped. */
export function traceparentOf(headers: IncomingMessage["headers"]): string | undefined {
  const value = headers[HEADERS.traceparent];
  return typeof value === "string" && isTraceparent(value) ? value.toLowerCase() : undefined;
}

/** The call options moleculer-web starts a request's call chain with. */
export interface RootCallOptions {
  requestID?: unknown;
  timeout?: number;
  meta?: Record<string, unknown>;
}

/** moleculer-web's `rootCallOptions` as a function: it runs once per request, before routing. */
export type RootCallOptionsHook = (
  options: RootCallOptions,
  req: IncomingMessage,
  res: ServerResponse,
) => void;

/**
 * The per-request hook: fix the request id, bound the call chain by `requestTimeoutMs`, carry the
 * trace context, and set X-Request-Id and the security headers on the answer, whatever it will be.
 */
export function requestCallOptions(requestTimeoutMs: number): RootCallOptionsHook {
  return function withRequestId(options, req, res) {
    const requestID = requestIdOf(options.requestID);
    options.requestID = requestID;
    options.timeout = requestTimeoutMs;
    const traceparent = traceparentOf(req.headers);
    if (traceparent !== undefined) options.meta = { ...options.meta, traceparent };
    res.setHeader(spelled(HEADERS.requestId), requestID);
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) res.setHeader(name, value);
  };
}
