/**
 * What node:http itself refuses, answered in the error envelope too (docs/architecture.md, "The
 * gateway's edge"): headers over its limit (431), bytes that are no HTTP request (400), and a client
 * too slow to send its request within REQUEST_TIMEOUT (408). Such a request never reaches
 * moleculer-web, so the answer is written on the socket, which then closes.
 */
import { randomUUID } from "node:crypto";
import type { Server } from "node:http";
import type { Duplex } from "node:stream";
import { HEADERS } from "../constants";
import { errorBody } from "./error-response";
import { JSON_CONTENT_TYPE, SECURITY_HEADERS, spelled } from "./headers";

/** The answer to a request node's parser refused. */
export interface ClientErrorAnswer {
  status: number;
  /** The status line's reason phrase. */
  reason: string;
  code: string;
  message: string;
}

/** Longest a client may take to send its headers, whatever REQUEST_TIMEOUT says. */
const MAX_HEADERS_TIMEOUT_MS = 10_000;

/** The answer to node's `clientError` code (`HPE_*`, `ERR_HTTP_REQUEST_TIMEOUT`, …). */
export function clientErrorAnswer(code: string | undefined): ClientErrorAnswer {
  if (code === "HPE_HEADER_OVERFLOW")
    return {
      status: 431,
      reason: "Request Header Fields Too Large",
      code: "HEADERS_TOO_LARGE",
      message: "request header fields too large",
    };
  if (code === "ERR_HTTP_REQUEST_TIMEOUT")
    return { status: 408, reason: "Request Timeout", code: "REQUEST_TIMEOUT", message: "request timeout" };
  return {
    status: 400,
    reason: "Bad Request",
    code: "BAD_REQUEST",
    message: "the request is not valid HTTP",
  };
}

/** The whole HTTP/1.1 answer as text: status line, headers (the security ones too), the envelope. */
export function clientErrorResponse(answer: ClientErrorAnswer, requestId: string): string {
  const body = JSON.stringify(errorBody(answer.code, answer.message, requestId));
  const headers = {
    [spelled(HEADERS.contentType)]: JSON_CONTENT_TYPE,
    [spelled(HEADERS.contentLength)]: String(Buffer.byteLength(body)),
    [spelled(HEADERS.requestId)]: requestId,
    ...SECURITY_HEADERS,
    [spelled(HEADERS.connection)]: "close",
  };
  const lines = Object.entries(headers).map(([name, value]) => `${name}: ${value}`);
  return [`HTTP/1.1 ${answer.status} ${answer.reason}`, ...lines].join("\r\n") + `\r\n\r\n${body}`;
}

/** node:http's `clientError` handler: the envelope for a request its parser refused, then the socket closes. */
export function answerClientError(err: Error & { code?: string }, socket: Duplex): void {
  // a client that went away, or a socket that can take no answer: nothing to say
  if (!socket.writable || err.code === "ECONNRESET") {
    socket.destroy();
    return;
  }
  socket.end(clientErrorResponse(clientErrorAnswer(err.code), randomUUID()));
}

/**
 * Bound the HTTP server moleculer-web created (it listens later, in `started`): slow clients must
 * send their headers and the whole request within `requestTimeoutMs` (408), checked often enough
 * for that to hold; what node's parser refuses is answered by `answerClientError`.
 */
export function guardServer(server: Server, requestTimeoutMs: number): void {
  server.requestTimeout = requestTimeoutMs;
  server.headersTimeout = Math.min(requestTimeoutMs, MAX_HEADERS_TIMEOUT_MS);
  // read when the server starts listening; node's default (30 s) would let a timeout run that late
  // (the typings know it only as a createServer option)
  (server as Server & { connectionsCheckingInterval: number }).connectionsCheckingInterval = Math.min(
    30_000,
    Math.max(250, Math.floor(requestTimeoutMs / 4)),
  );
  server.on("clientError", answerClientError);
}
