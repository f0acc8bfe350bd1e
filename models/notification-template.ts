/**
 * The words of customer notifications: the message for one notified event on one channel. Pure:
 * rendering depends on the event alone, so a message rendered twice (a transaction that reruns)
 * reads the same. What a notification goes through once rendered is ./notification.
 *
 * Recipient: events carry the customer id only (no e-mail address, no phone number), so every
 * message is addressed to `customer:<customerId>` on both channels; the provider resolves the
 * customer's contact details. Amounts are formatted from integer minor units (`format` of
 * ./money) with the currency's symbol or code, never through floats.
 */
import type { PayloadOf } from "./events";
import { CURRENCY_EXPONENTS, format, isCurrency, type Currency } from "./money";
import {
  NOTIFICATION_CHANNELS,
  NotificationError,
  type NotificationChannel,
  type NotificationMessage,
  type NotifiedEvent,
} from "./notification";

/** Longest SMS body, in characters (Unicode code points). */
export const SMS_MAX_LENGTH = 160;

/** A message ready to send: e-mails have a subject, SMS bodies fit `SMS_MAX_LENGTH`. */
export type RenderedNotification = NotificationMessage;

/** The address of a customer on every channel: `customer:<customerId>`. */
export function recipientOf(customerId: string): string {
  return `customer:${customerId}`;
}

/** Currencies written with a symbol; the others with their code, e.g. `CHF 12.50`. */
const SYMBOLS: Partial<Record<Currency, string>> = { USD: "$", EUR: "€", GBP: "£", JPY: "¥", KRW: "₩" };

/**
 * An amount for people: `$1,234.56`, `¥1,500`, `CHF 12.50`, `BHD 1.250`. Throws
 * `NotificationError` for a currency without a known exponent (its decimals would be guessed).
 */
export function formatAmount(amount: { minor: number; currency: string }): string {
  const { minor, currency } = amount;
  if (!isCurrency(currency) || !Number.isSafeInteger(minor)) {
    throw new NotificationError("UNRENDERABLE_EVENT", `cannot format ${minor} minor units of "${currency}"`, {
      amount,
    });
  }
  const plain = format({ minor: Math.abs(minor), currency });
  const exponent = CURRENCY_EXPONENTS[currency];
  const whole = exponent === 0 ? plain : plain.slice(0, -(exponent + 1));
  const fraction = exponent === 0 ? "" : plain.slice(-(exponent + 1));
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",") + fraction;
  const symbol = SYMBOLS[currency];
  const text = symbol === undefined ? `${currency} ${grouped}` : `${symbol}${grouped}`;
  return minor < 0 ? `-${text}` : text;
}

/** The short form of an order id shown in subjects and SMS: its first 8 characters and `…`. */
export function shortRef(id: string): string {
  return id.length <= 9 ? id : `${id.slice(0, 8)}…`;
}

/** The message for `event` on `channel`. Throws `NotificationError` when it cannot be written. */
export function renderNotification(event: NotifiedEvent, channel: NotificationChannel): RenderedNotification {
  const words = wordsOf(event);
  const to = recipientOf(event.payload.customerId);
  if (channel === "sms") return { channel, to, body: fitSms(words.sms) };
  return { channel, to, subject: words.subject, body: words.email };
}

/** The messages for `event`, one per channel, in `NOTIFICATION_CHANNELS` order. */
export function renderNotifications(event: NotifiedEvent): RenderedNotification[] {
  return NOTIFICATION_CHANNELS.map((channel) => renderNotification(event, channel));
}

/** The words of one event on every channel. */
interface Words {
  subject: string;
  email: string;
  sms: string;
}

const CANCEL_REASON_TEXT: Record<PayloadOf<"order.cancelled">["reason"], string> = {
  payment_failed: "your payment did not go through",
  payment_timeout: "we did not receive your payment in time",
  customer_request: "you asked us to cancel it",
  admin_request: "our team had to cancel it",
};

function wordsOf(event: NotifiedEvent): Words {
  switch (event.type) {
    case "order.created": {
      const { orderId, items, total, paymentDueAt } = event.payload;
      const ref = shortRef(orderId);
      const count = itemCount(items.reduce((n, line) => n + line.quantity, 0));
      const amount = formatAmount(total);
      const lines = items.map(
        (line) => `  ${line.quantity} × ${line.sku} at ${formatAmount(line.unitPrice)} each`,
      );
      return {
        subject: `Order ${ref} confirmed: ${amount}`,
        email: [
          `Thank you for your order ${orderId}.`,
          "",
          ...lines,
          "",
          `Total: ${amount} (${count}).`,
          "",
          `We are waiting for your payment. Orders not paid by ${dueText(paymentDueAt)} are cancelled.`,
        ].join("\n"),
        sms: `Order ${ref} confirmed: ${count}, total ${amount}. We are waiting for your payment.`,
      };
    }
    case "order.paid": {
      const { orderId, total } = event.payload;
      const ref = shortRef(orderId);
      const amount = formatAmount(total);
      return {
        subject: `Order ${ref} paid`,
        email: [
          `We received your payment of ${amount} for order ${orderId}.`,
          "",
          "Your order is being prepared. Thank you for shopping with us.",
        ].join("\n"),
        sms: `Order ${ref} paid: we received ${amount}. Thank you!`,
      };
    }
    case "order.cancelled": {
      const { orderId, reason, previousStatus, total } = event.payload;
      const ref = shortRef(orderId);
      const amount = formatAmount(total);
      const why = CANCEL_REASON_TEXT[reason];
      const money =
        previousStatus === "PAID"
          ? `Your payment of ${amount} will be refunded.`
          : "You have not been charged.";
      return {
        subject: `Order ${ref} cancelled`,
        email: [`Your order ${orderId} (${amount}) was cancelled: ${why}.`, "", money].join("\n"),
        sms: `Order ${ref} cancelled: ${why}. ${money}`,
      };
    }
    case "payment.refunded": {
      const { orderId, amount: refunded, refundId } = event.payload;
      const ref = shortRef(orderId);
      const amount = formatAmount(refunded);
      return {
        subject: `Refund of ${amount} for order ${ref}`,
        email: [
          `We refunded ${amount} for order ${orderId} (refund ${refundId}).`,
          "",
          "It may take a few days to appear on your statement.",
        ].join("\n"),
        sms: `Order ${ref} refunded: ${amount} is on its way back to you.`,
      };
    }
  }
}

function itemCount(n: number): string {
  return n === 1 ? "1 item" : `${n} items`;
}

/** `2030-01-01 00:15 UTC` from an ISO timestamp; the text as given when it does not parse. */
function dueText(iso: string): string {
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return iso;
  return `${at.toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

/** Cut an SMS to `SMS_MAX_LENGTH` code points, marking the cut with `…`. */
function fitSms(text: string): string {
  const points = Array.from(text);
  if (points.length <= SMS_MAX_LENGTH) return text;
  return `${points.slice(0, SMS_MAX_LENGTH - 1).join("")}…`;
}
