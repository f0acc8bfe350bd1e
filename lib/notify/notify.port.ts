/**
 * Notification-provider port: hands one rendered message to whatever delivers e-mails and SMS.
 *
 * Contract shared by the adapters:
 * - `message.id` is our notification id and the provider's idempotency key: sending the same id
 *   again (a retry after a timeout, a resend after a crash) must not reach the customer twice. The
 *   http adapter sends it as `Idempotency-Key`; the file adapter skips ids it wrote in this process.
 * - Failures are typed by `code`: `NOTIFY_REJECTED` (the provider refused this message; sending it
 *   again cannot help, not retryable) or `NOTIFY_UNAVAILABLE` (the provider could not be reached or
 *   failed; retryable, and safe to retry with the same id).
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
  /** Deliver `message`; rejects with `NotifyRejectedError` or `NotifyUnavailableError`. */
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
