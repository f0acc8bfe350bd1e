/**
 * Parameter schemas (fastest-validator, as Moleculer's `params`) shared by the gateway and the
 * services, so that the door and the room check a request the same way.
 */
import { SKU_PATTERN } from "../models/inventory";
import { ORDER_LIMITS } from "../models/order";

/** `items` of a new order: 1..100 lines of `{ sku, quantity }`, nothing else. */
export const ORDER_ITEMS_PARAM = {
  type: "array",
  min: 1,
  max: ORDER_LIMITS.maxLines,
  items: {
    type: "object",
    strict: true,
    props: {
      sku: { type: "string", pattern: SKU_PATTERN },
      quantity: { type: "number", integer: true, min: 1, max: ORDER_LIMITS.maxQuantity },
    },
  },
} as const;

/** A payment method id, e.g. `pm_card_visa`. */
export const PAYMENT_METHOD_PARAM = { type: "string", min: 1, max: 64, optional: true } as const;
