/**
 * Notification-provider port: hands one rendered message to whatever delivers e-mails and SMS.
 * Adapters: `file.adapter.ts` (default), `http.adapter.ts` (NOTIFY_URL). The contract below is
 * proven for each by test/conformance/notify.conformance.spec.ts.
 *
 * - **Receipt.** `send` resolves once the message is accepted for delivery (written and synced,
 *   answered 2xx), with the provider's own non-empty `providerMessageId`.
 * - **Idempotent by `message.id`.** The id is our notification id and the provider's idempotency
 *   key: sending the same id again — a retry after a timeout, a resend after a crash and restart,
 *   or two sends at once — answers the first receipt and reaches the customer once. The http adapter sends the id as `Idempotency-Key` and relies on the provider honouring
 *   it (towards one that ignores it, delivery is at least once); the file adapter remembers the ids
 *   in its file.
 * - **Typed failures**, by `code` (never by class, see lib/errors.ts):
 *   - `NOTIFY_REJECTED`, not retryable: this message can never be delivered — it is malformed (no
 *     id, unknown channel, no recipient or body; checked alike by every adapter, `checkMessage`), or
 *     the provider refused it (HTTP 4xx but 408/409/425/429). Nothing was delivered.
 *   - `NOTIFY_UNAVAILABLE`, retryable: the provider could not be reached, failed, or did not answer
 *     in time; it may or may not have delivered, and a retry with the same id is safe.
 * - **Bounded.** The http adapter gives up after its `timeoutMs` (NOTIFY_UNAVAILABLE); the file
 *   adapter waits only for its disk. Callers still put a breaker with a timeout around `send`.
 * - **Closing.** `close()` lets writes in flight finish and is idempotent; a later `send` rejects
 *   with `ADAPTER_CLOSED`.
 */
import { OrdermeshError } from "../errors";
import type { NotificationChannel } from "../../models/notification";

/** One message to deliver. */
export interface OutboundMessage {
  /** Our notification id; the provider's idempotency key. */
  id: string;
  channel: NotificationChannel;
  /** `customer:<customerId>`: the provider resolves the customer's address. */
  to: string;
  /** E-mail only. */
  subject?: string;
  body: string;
}

/** What the provider answered for an accepted message. */
export interface SendReceipt {
  /** The provider's own id of the message. */
  providerMessageId: string;
}

/** A provider of outbound messages. */
export interface NotificationProvider {
  /** Which adapter this is, for diagnostics only. */
  readonly kind: "file" | "http";
  /** Deliver `message` (contract above); rejects with `NOTIFY_REJECTED`, `NOTIFY_UNAVAILABLE` or `ADAPTER_CLOSED`. */
  send(message: OutboundMessage): Promise<SendReceipt>;
  /** Finish writes in flight and release resources; later sends fail. Idempotent. */
  close(): Promise<void>;
}

/** The provider refused the message (HTTP 4xx): sending it again cannot help. */
export class NotifyRejectedError extends OrdermeshError {
  constructor(message: string, data?: Record<string, unknown>) {
    super("NOTIFY_REJECTED", message, { retryable: false, data });
  }
}

/** The provider could not be reached, failed or timed out; retry later with the same id. */
export class NotifyUnavailableError extends OrdermeshError {
  constructor(message: string, data?: Record<string, unknown>, cause?: unknown) {
    super("NOTIFY_UNAVAILABLE", message, { retryable: true, data, cause });
  }
}
