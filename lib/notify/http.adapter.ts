/**
 * HTTP notification provider (NOTIFY_URL set): `POST <NOTIFY_URL>/v1/messages` with a JSON body
 * `{ channel, to, subject?, body }` and the header `Idempotency-Key: <notification id>`; the
 * provider answers `{ "id": "<its message id>" }`.
 *
 * Outcomes: 2xx → sent; 4xx → `NOTIFY_REJECTED` (not retryable), except 408, 409, 425 and 429,
 * which say "not now" (timeout, same key still in flight, too early, rate limited) and are
 * `NOTIFY_UNAVAILABLE`; 5xx, a network error, a timeout or a 2xx without an id →
 * `NOTIFY_UNAVAILABLE` (retryable: the same key makes the retry safe). A malformed message is
 * `NOTIFY_REJECTED` before any request (`checkMessage`). Port contract: ./notify.port.ts.
 */
import { HEADERS } from "../constants";
import { AdapterClosedError } from "../errors";
import { checkMessage } from "./notify.message";
import {
  NotifyRejectedError,
  NotifyUnavailableError,
  type NotificationProvider,
  type OutboundMessage,
  type SendReceipt,
} from "./notify.port";

export interface HttpNotificationProviderOptions {
  /** Base URL of the provider, e.g. `https://notify.example.com`. */
  url: string;
  /** Whole request (connect, send, read the answer) in ms (default 5 000). */
  timeoutMs?: number;
}

/** 4xx answers that mean "try again later", not "never". */
const RETRYABLE_CLIENT_STATUSES = new Set([408, 409, 425, 429]);

/** How much of an error answer is kept in the error. */
const ERROR_BODY_CHARS = 500;

export class HttpNotificationProvider implements NotificationProvider {
  readonly kind = "http" as const;
  /** `<url>/v1/messages`. */
  readonly endpoint: string;
  private readonly timeoutMs: number;
  private closed = false;

  constructor(options: HttpNotificationProviderOptions) {
    this.endpoint = `${options.url.replace(/\/+$/, "")}/v1/messages`;
    this.timeoutMs = options.timeoutMs ?? 5000;
    if (!Number.isInteger(this.timeoutMs) || this.timeoutMs < 1)
      throw new RangeError(`timeoutMs must be a positive integer, got ${this.timeoutMs}`);
  }

  async send(message: OutboundMessage): Promise<SendReceipt> {
    if (this.closed) throw new AdapterClosedError("http notification provider");
    checkMessage(message);
    const signal = AbortSignal.timeout(this.timeoutMs);
    let status: number;
    let text: string;
    try {
      const response = await fetch(this.endpoint, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          accept: "application/json",
          [HEADERS.idempotencyKey]: message.id,
        },
        body: JSON.stringify({
          channel: message.channel,
          to: message.to,
          ...(message.subject === undefined ? {} : { subject: message.subject }),
          body: message.body,
        }),
        signal,
      });
      status = response.status;
      text = await response.text();
    } catch (err) {
      const timedOut = signal.aborted;
      throw new NotifyUnavailableError(
        timedOut
          ? `notification provider did not answer within ${this.timeoutMs} ms`
          : `notification provider unreachable: ${describe(err)}`,
        { endpoint: this.endpoint, id: message.id, ...(timedOut ? { timeoutMs: this.timeoutMs } : {}) },
        err,
      );
    }

    if (status >= 200 && status < 300) {
      const providerMessageId = idOf(text);
      if (providerMessageId === undefined) {
        throw new NotifyUnavailableError(`notification provider answered ${status} without a message id`, {
          endpoint: this.endpoint,
          id: message.id,
          status,
        });
      }
      return { providerMessageId };
    }
    const data = { endpoint: this.endpoint, id: message.id, status, body: text.slice(0, ERROR_BODY_CHARS) };
    if (status >= 400 && status < 500 && !RETRYABLE_CLIENT_STATUSES.has(status)) {
      throw new NotifyRejectedError(
        `notification provider rejected message ${message.id}: HTTP ${status}`,
        data,
      );
    }
    throw new NotifyUnavailableError(`notification provider failed: HTTP ${status}`, data);
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}

/** The `id` of a JSON answer, when it is a non-empty string. */
function idOf(text: string): string | undefined {
  try {
    const parsed = JSON.parse(text) as unknown;
    if (typeof parsed !== "object" || parsed === null) return undefined;
    const id = (parsed as { id?: unknown }).id;
    return typeof id === "string" && id.length > 0 ? id : undefined;
  } catch {
    return undefined;
  }
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  // fetch wraps the socket error ("fetch failed"); its cause says what happened
  const cause = (err as { cause?: unknown }).cause;
  return cause instanceof Error ? `${err.message} (${cause.message})` : err.message;
}
