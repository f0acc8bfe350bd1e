/**
 * Payment states (docs/payments.md): `pending` (not sent yet) → `processing` (accepted by the
 * provider, awaiting confirmation) → `captured` | `failed`; `captured` → `refunding` → `refunded`;
 * `cancelled` (the order was cancelled before any charge).
 */
export const PAYMENT_STATUSES = [
  "pending",
  "processing",
  "captured",
  "failed",
  "refunding",
  "refunded",
  "cancelled",
] as const;
export type PaymentStatus = (typeof PAYMENT_STATUSES)[number];
