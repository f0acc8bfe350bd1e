/**
 * The one mapper from errors to what a client is told (README, "HTTP API (v1)"; docs/architecture.md,
 * "The gateway's edge"):
 *
 * - `asClientError`: a domain refusal (a `code` listed in lib/errors.ts `DOMAIN_REFUSALS`) becomes
 *   a `MoleculerClientError` with its status; services apply it to what their actions throw.
 * - `errorResponse`: any error becomes the envelope `{ error: { code, message, details?, requestId } }`
 *   with its status and headers. Client errors keep their status, code, message and data; anything
 *   else becomes a 503 (retryable: try again) or a 500 whose message says nothing about the inside.
 *   No stack trace ever leaves.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { Errors } from "moleculer";
import { HEADERS } from "../constants";
import { refusalStatusOf } from "../errors";
import { JSON_CONTENT_TYPE, spelled } from "./headers";

/** The error envelope. */
export interface ErrorBody {
  error: { code: string; message: string; details?: unknown; requestId: string };
}

export interface ErrorResponse {
  status: number;
  headers: Record<string, string>;
  body: ErrorBody;
}

const CODE_BY_STATUS: Record<number, string> = {
  400: "BAD_REQUEST",
  401: "UNAUTHORIZED",
  403: "FORBIDDEN",
  404: "NOT_FOUND",
  405: "METHOD_NOT_ALLOWED",
  409: "CONFLICT",
  413: "PAYLOAD_TOO_LARGE",
  415: "UNSUPPORTED_MEDIA_TYPE",
  422: "UNPROCESSABLE_ENTITY",
  429: "RATE_LIMITED",
};

/** Errors of the HTTP layer (body parsing) by their `type`. */
const BODY_ERRORS: Record<string, { status: number; code: string; message: string }> = {
  "entity.parse.failed": { status: 400, code: "INVALID_JSON", message: "the body is not valid JSON" },
  "entity.too.large": { status: 413, code: "PAYLOAD_TOO_LARGE", message: "the body is too large" },
  "encoding.unsupported": { status: 415, code: "UNSUPPORTED_MEDIA_TYPE", message: "unsupported encoding" },
  "charset.unsupported": { status: 415, code: "UNSUPPORTED_MEDIA_TYPE", message: "unsupported charset" },
};

/** Moleculer's "nobody can answer now" errors. */
const UNAVAILABLE_TYPES = new Set([
  "SERVICE_NOT_FOUND",
  "SERVICE_NOT_AVAILABLE",
  "REQUEST_TIMEOUT",
  "REQUEST_REJECTED",
  "REQUEST_SKIPPED",
  "QUEUE_FULL",
  "BREAKER_OPEN",
  "UNAVAILABLE",
  "TRANSACTION_CONFLICT",
]);

/** Headers that go with a status: how to authenticate after a 401, when to retry after a 503. */
const HEADERS_BY_STATUS: Readonly<Record<number, Record<string, string>>> = {
  401: { [spelled(HEADERS.wwwAuthenticate)]: 'Bearer realm="ordermesh"' },
  503: { [spelled(HEADERS.retryAfter)]: "1" },
};

/**
 * A domain refusal as a client error: status from `DOMAIN_REFUSALS`, the code as its `type`, the
 * same message, the refusal's `details` as its `data`. Anything else is returned unchanged.
 */
export function asClientError(err: unknown): unknown {
  if (typeof err !== "object" || err === null) return err;
  const { code, message, details } = err as { code?: unknown; message?: unknown; details?: unknown };
  const status = refusalStatusOf(code);
  if (status === undefined) return err;
  return new Errors.MoleculerClientError(String(message), status, code as string, details);
}

/** The envelope of one error; `details` only when there are some. */
export function errorBody(code: string, message: string, requestId: string, details?: unknown): ErrorBody {
  return { error: { code, message, ...(details === undefined ? {} : { details }), requestId } };
}

/** The status, headers and envelope a client gets for `err`. */
export function errorResponse(err: unknown, requestId: string): ErrorResponse {
  const mapped = asClientError(err);
  const e = (typeof mapped === "object" && mapped !== null ? mapped : {}) as {
    code?: unknown;
    status?: unknown;
    type?: unknown;
    message?: unknown;
    data?: unknown;
    retryable?: unknown;
  };
  const type = typeof e.type === "string" ? e.type : undefined;
  const build = (status: number, code: string, message: string, details?: unknown): ErrorResponse => ({
    status,
    headers: { ...HEADERS_BY_STATUS[status] },
    body: errorBody(code, message, requestId, details),
  });

  const bodyError = type === undefined ? undefined : BODY_ERRORS[type];
  if (bodyError !== undefined) return build(bodyError.status, bodyError.code, bodyError.message);

  const status = typeof e.code === "number" ? e.code : typeof e.status === "number" ? e.status : undefined;
  const message = typeof e.message === "string" ? e.message : "request failed";

  if (type === "VALIDATION_ERROR") {
    return build(
      400,
      "VALIDATION_ERROR",
      "the request does not match the expected shape",
      validationDetails(e.data),
    );
  }
  // a call chain that outlived REQUEST_TIMEOUT (408 from Moleculer) is ours to retry, not the client's
  if (
    status === 503 ||
    status === 408 ||
    (type !== undefined && UNAVAILABLE_TYPES.has(type)) ||
    e.retryable === true
  ) {
    return build(503, "SERVICE_UNAVAILABLE", "temporarily unavailable, retry shortly");
  }
  if (status !== undefined && status >= 400 && status < 500) {
    const code =
      type !== undefined && /^[A-Z][A-Z0-9_]*$/.test(type) ? type : (CODE_BY_STATUS[status] ?? "BAD_REQUEST");
    return build(status, code, message, e.data);
  }
  return build(500, "INTERNAL", "internal error");
}

/** moleculer-web's `onError`: the answer of `errorResponse`, as JSON, with the request's id. */
export function sendError(
  req: IncomingMessage & { $ctx?: { requestID?: string | null } },
  res: ServerResponse,
  err: unknown,
): void {
  const { status, headers, body } = errorResponse(err, req.$ctx?.requestID ?? "");
  res.setHeader(spelled(HEADERS.contentType), JSON_CONTENT_TYPE);
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
  res.writeHead(status);
  res.end(JSON.stringify(body));
}

/** fastest-validator's issues, without the values the client sent back at it. */
function validationDetails(data: unknown): unknown {
  if (!Array.isArray(data)) return undefined;
  return data.map((issue: { field?: unknown; message?: unknown; type?: unknown }) => ({
    field: issue.field,
    message: issue.message,
    type: issue.type,
  }));
}
