/**
 * The HTTP adapter of the payment-provider port (lib/psp/psp.port.ts): a Stripe-like subset
 * (payment intents, refunds) spoken over `fetch`, as the shipped simulator (lib/psp/psp.simulator.ts)
 * and a real provider answer it. Every call goes through a circuit breaker and carries its own
 * timeout (`AbortSignal.timeout`).
 *
 * How answers are classified:
 * | answer                                  | result                                   | counts against the breaker |
 * |-----------------------------------------|------------------------------------------|----------------------------|
 * | 2xx                                     | the object                               | no (success)               |
 * | 402 card error on create                | `{ outcome: "declined", declineCode, … }` | no                         |
 * | 429, 5xx, network error, timeout        | `PspUnavailableError` (PSP_UNAVAILABLE, retryable; `data.outcomeUnknown`) | yes |
 * | other 4xx                               | `PspRequestError` (PSP_REJECTED, not retryable), the provider's error in `data` | no |
 * | breaker open                            | `BreakerOpenError` (BREAKER_OPEN, retryable) | —                      |
 *
 * The adapter never retries: a caller retries where it is safe, which the `Idempotency-Key` makes
 * true of creates and refunds (the provider answers a repeated key with the stored response).
 */
import type { Breaker, BreakerOptions } from "../breaker";
import { OrdermeshError } from "../errors";
import {
  PspRequestError,
  PspUnavailableError,
  type ChargeResult,
  type CreatePaymentIntentRequest,
  type CreateRefundRequest,
  type PaymentIntent,
  type PaymentProvider,
  type ProviderError,
  type Refund,
} from "./psp.port";

export interface PspHttpAdapterOptions {
  /** Base URL of the provider, e.g. `http://127.0.0.1:4242`. */
  baseUrl: string;
  breaker: Breaker;
  /** Each request is aborted after this long (default 4 000 ms, below the breaker's own 5 s). */
  timeoutMs?: number;
  /** Sent as `Authorization: Bearer <apiKey>` when set. */
  apiKey?: string;
  /** For tests; defaults to the global `fetch`. */
  fetch?: typeof fetch;
}

/** A card decline (HTTP 402): the provider working as intended. Mapped to the `declined` outcome. */
export class CardDeclinedError extends OrdermeshError {
  constructor(readonly error: ProviderError) {
    super("CARD_DECLINED", error.message ?? "card declined", {
      retryable: false,
      data: { declineCode: error.decline_code ?? error.code ?? "declined" },
    });
  }
}

/** Codes that count against the provider's breaker: the provider down or slow, never its "no". */
const BREAKER_FAILURE_CODES: ReadonlySet<string> = new Set(["PSP_UNAVAILABLE", "CALL_TIMEOUT", "ETIMEDOUT"]);

/** Whether an error means the provider is unhealthy (only those open the breaker). */
export function isPspFailure(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && BREAKER_FAILURE_CODES.has(code);
}

/** Breaker settings for the payment provider. */
export const pspBreakerOptions: Omit<BreakerOptions, "onStateChange"> & { name: "psp" } = {
  name: "psp",
  timeoutMs: 5000,
  volumeThreshold: 5,
  errorThresholdPercentage: 50,
  resetTimeoutMs: 5000,
  isFailure: isPspFailure,
};

const DEFAULT_TIMEOUT_MS = 4000;

export class PspHttpAdapter implements PaymentProvider {
  private readonly baseUrl: string;
  private readonly breaker: Breaker;
  private readonly timeoutMs: number;
  private readonly apiKey: string | undefined;
  private readonly fetch: typeof fetch;

  constructor(options: PspHttpAdapterOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.breaker = options.breaker;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.apiKey = options.apiKey;
    this.fetch = options.fetch ?? globalThis.fetch;
    if (!Number.isInteger(this.timeoutMs) || this.timeoutMs < 1)
      throw new RangeError(`PspHttpAdapter timeoutMs must be a positive integer, got ${this.timeoutMs}`);
  }

  /** Charge: `processing` (confirmation follows by webhook), `succeeded`, or `declined`. */
  async createPaymentIntent(request: CreatePaymentIntentRequest): Promise<ChargeResult> {
    try {
      const intent = (await this.request("POST", "/v1/payment_intents", request.idempotencyKey, {
        amount: request.amount.minor,
        currency: request.amount.currency,
        payment_method: request.paymentMethod,
        metadata: request.metadata ?? {},
      })) as PaymentIntent;
      return { outcome: intent.status === "succeeded" ? "succeeded" : "processing", intent };
    } catch (err) {
      if (err instanceof CardDeclinedError) {
        return {
          outcome: "declined",
          declineCode: err.error.decline_code ?? err.error.code ?? "declined",
          message: err.error.message ?? "card declined",
          ...(err.error.payment_intent === undefined ? {} : { intent: err.error.payment_intent }),
        };
      }
      throw err;
    }
  }

  async getPaymentIntent(id: string): Promise<PaymentIntent> {
    return (await this.requestNoDecline(
      "GET",
      `/v1/payment_intents/${encodeURIComponent(id)}`,
    )) as PaymentIntent;
  }

  async createRefund(request: CreateRefundRequest): Promise<Refund> {
    const body: Record<string, unknown> = { payment_intent: request.paymentIntentId };
    if (request.amount !== undefined) body.amount = request.amount.minor;
    return (await this.requestNoDecline("POST", "/v1/refunds", body, request.idempotencyKey)) as Refund;
  }

  /** A request where a 402 is not a decline outcome: it is a rejection like any other 4xx. */
  private async requestNoDecline(
    method: "GET" | "POST",
    path: string,
    body?: Record<string, unknown>,
    idempotencyKey?: string,
  ): Promise<unknown> {
    try {
      return await this.request(method, path, idempotencyKey, body);
    } catch (err) {
      if (err instanceof CardDeclinedError)
        throw new PspRequestError(`${method} ${path}: ${err.message}`, {
          status: 402,
          error: err.error,
          path,
        });
      throw err;
    }
  }

  /** One HTTP exchange under the breaker, classified (see the table above). */
  private request(
    method: "GET" | "POST",
    path: string,
    idempotencyKey: string | undefined,
    body?: Record<string, unknown>,
  ): Promise<unknown> {
    return this.breaker.fire(() => this.exchange(method, path, idempotencyKey, body));
  }

  private async exchange(
    method: "GET" | "POST",
    path: string,
    idempotencyKey: string | undefined,
    body: Record<string, unknown> | undefined,
  ): Promise<unknown> {
    const headers: Record<string, string> = { accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (idempotencyKey !== undefined) headers["idempotency-key"] = idempotencyKey;
    if (this.apiKey !== undefined) headers.authorization = `Bearer ${this.apiKey}`;
    let response: Response;
    let text: string;
    try {
      response = await this.fetch(`${this.baseUrl}${path}`, {
        method,
        headers,
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      text = await response.text();
    } catch (err) {
      const timedOut = (err as { name?: unknown } | null)?.name === "TimeoutError";
      const refused = (err as { cause?: { code?: unknown } } | null)?.cause?.code === "ECONNREFUSED";
      throw new PspUnavailableError(
        timedOut
          ? `${method} ${path}: no answer within ${this.timeoutMs} ms`
          : `${method} ${path}: ${describe(err)}`,
        { path, timeout: timedOut, outcomeUnknown: !refused },
        err,
      );
    }
    const parsed = parseJson(text);
    if (response.status >= 200 && response.status < 300) {
      if (parsed === undefined || typeof parsed !== "object" || parsed === null)
        throw new PspUnavailableError(`${method} ${path}: unreadable answer`, {
          path,
          status: response.status,
          outcomeUnknown: true,
        });
      return parsed;
    }
    const error = errorOf(parsed);
    if (response.status === 402 && error?.type === "card_error") throw new CardDeclinedError(error);
    if (response.status === 429 || response.status >= 500) {
      throw new PspUnavailableError(`${method} ${path}: provider answered ${response.status}`, {
        path,
        status: response.status,
        error,
        // "too many requests" and "unavailable" say the request was not handled
        outcomeUnknown: response.status !== 429 && response.status !== 503,
      });
    }
    throw new PspRequestError(
      `${method} ${path}: provider refused (${response.status}${error?.code === undefined ? "" : ` ${error.code}`})`,
      { status: response.status, error, path },
    );
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function errorOf(body: unknown): ProviderError | undefined {
  const error = (body as { error?: unknown } | null | undefined)?.error;
  if (typeof error !== "object" || error === null || typeof (error as { type?: unknown }).type !== "string")
    return undefined;
  return error as ProviderError;
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = (err as { cause?: unknown }).cause;
  return cause instanceof Error ? `${err.message} (${cause.message})` : err.message;
}
