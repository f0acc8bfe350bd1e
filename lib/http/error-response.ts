/**
 * The one mapper from any error to the HTTP error envelope of DESIGN §6:
 * `{ error: { code, message, details?, requestId } }`. Client errors keep their status, code,
 * message and data; anything else becomes a 503 (retryable: try again) or a 500 whose message
 * says nothing about the inside. No stack trace ever leaves.
 */

export interface ErrorResponse {
  status: number;
  headers: Record<string, string>;
  body: { error: { code: string; message: string; details?: unknown; requestId: string } };
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

export function errorResponse(err: unknown, requestId: string): ErrorResponse {
  const e = (typeof err === "object" && err !== null ? err : {}) as {
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
    headers: status === 503 ? { "Retry-After": "1" } : {},
    body: { error: { code, message, ...(details === undefined ? {} : { details }), requestId } },
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
  if (
    status === 503 ||
    status === 408 ||
    (type !== undefined && UNAVAILABLE_TYPES.has(type)) ||
    e.retryable === true
  ) {
    return build(503, "SERVICE_UNAVAILABLE", "temporarily unavailable, retry shortly");
  }
  if (status !== undefined && status >= 400 && status < 500 && status !== 408) {
    const code =
      type !== undefined && /^[A-Z][A-Z0-9_]*$/.test(type) ? type : (CODE_BY_STATUS[status] ?? "BAD_REQUEST");
    return build(status, code, message, e.data);
  }
  return build(500, "INTERNAL", "internal error");
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
