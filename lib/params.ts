/**
 * Parameter schemas (fastest-validator, as Moleculer's `params`) shared by the gateway and the
 * services, so that the door and the room check a request the same way. The gateway's routes are
 * documented from them too (/openapi.json, lib/http/openapi/).
 */
import { INVENTORY_LIMITS, SKU_PATTERN } from "../models/inventory";
import { ORDER_LIMITS, ORDER_STATUSES } from "../models/order";

/** An id: of an order, a customer (a token's `sub`), a notification. */
export const ID_PARAM = { type: "string", min: 1, max: 128 } as const;

/** A customer id to filter a list by (an admin's choice; a customer sees their own anyway). */
export const CUSTOMER_FILTER_PARAM = { ...ID_PARAM, optional: true } as const;

/** An order status to filter a list by. */
export const ORDER_STATUS_FILTER_PARAM = {
  type: "enum",
  values: [...ORDER_STATUSES],
  optional: true,
} as const;

/** How many items a page of a newest-first list holds (the list's default when absent). */
export const LIST_LIMIT_PARAM = {
  type: "number",
  integer: true,
  min: 1,
  max: 100,
  optional: true,
  // a query string value arrives as text
  convert: true,
} as const;

/** Where a newest-first list goes on: the `nextCursor` of the page before (lib/newest-first.ts). */
export const CURSOR_PARAM = { type: "string", min: 1, max: 512, optional: true } as const;

/** A product's SKU. */
export const SKU_PARAM = { type: "string", pattern: SKU_PATTERN } as const;

/** A product's name. */
export const PRODUCT_NAME_PARAM = { type: "string", min: 1, max: 200 } as const;

/** A price: Money's wire form `{ minor, currency }` (integer minor units, ISO 4217 code), nothing else. */
export const PRICE_PARAM = {
  type: "object",
  strict: true,
  props: {
    minor: { type: "number", integer: true, min: 0, max: Number.MAX_SAFE_INTEGER },
    currency: { type: "string", pattern: /^[A-Z]{3}$/ },
  },
} as const;

/** Units received in one restock. */
export const RESTOCK_QUANTITY_PARAM = {
  type: "number",
  integer: true,
  min: 1,
  max: INVENTORY_LIMITS.maxRestock,
} as const;

/** A page of the catalog, from 1. */
export const PAGE_PARAM = {
  type: "number",
  integer: true,
  min: 1,
  max: 10_000,
  optional: true,
  convert: true,
} as const;

/** Products on a page of the catalog. */
export const PAGE_SIZE_PARAM = {
  type: "number",
  integer: true,
  min: 1,
  max: 100,
  optional: true,
  convert: true,
} as const;

/** `items` of a new order: 1..100 lines of `{ sku, quantity }`, nothing else. */
export const ORDER_ITEMS_PARAM = {
  type: "array",
  min: 1,
  max: ORDER_LIMITS.maxLines,
  items: {
    type: "object",
    strict: true,
    props: {
      sku: SKU_PARAM,
      quantity: { type: "number", integer: true, min: 1, max: ORDER_LIMITS.maxQuantity },
    },
  },
} as const;

/** A payment method id, e.g. `pm_card_visa`. */
export const PAYMENT_METHOD_PARAM = { type: "string", min: 1, max: 64, optional: true } as const;

// ── whole actions' params: the gateway's action and the service action it calls ──

/** Place an order: gateway.placeOrder, orders.place. */
export const PLACE_ORDER_PARAMS = {
  $$strict: true,
  items: ORDER_ITEMS_PARAM,
  paymentMethod: PAYMENT_METHOD_PARAM,
} as const;

/** One order by id: gateway.getOrder and cancelOrder; orders.getOrder and cancel. */
export const ORDER_PARAMS = { $$strict: true, id: ID_PARAM } as const;

/** A page of orders, newest first: gateway.listOrders, orders.listOrders. */
export const ORDER_LIST_PARAMS = {
  $$strict: true,
  status: ORDER_STATUS_FILTER_PARAM,
  limit: LIST_LIMIT_PARAM,
  cursor: CURSOR_PARAM,
  customerId: CUSTOMER_FILTER_PARAM,
} as const;

/** A page of the catalog: gateway.listProducts (inventory.listProducts takes more: sort, search). */
export const CATALOG_PAGE_PARAMS = { $$strict: true, page: PAGE_PARAM, pageSize: PAGE_SIZE_PARAM } as const;

/** One product by SKU: gateway.getProduct, inventory.getProduct. */
export const PRODUCT_PARAMS = { $$strict: true, sku: SKU_PARAM } as const;

/** Create a product or change its name and price: gateway.upsertProduct, inventory.upsert. */
export const PRODUCT_UPSERT_PARAMS = {
  $$strict: true,
  sku: SKU_PARAM,
  name: PRODUCT_NAME_PARAM,
  price: PRICE_PARAM,
} as const;

/** Goods received: gateway.restockProduct, inventory.restock. */
export const RESTOCK_PARAMS = { $$strict: true, sku: SKU_PARAM, quantity: RESTOCK_QUANTITY_PARAM } as const;

/** The payments of an order: gateway.listPayments, payments.list. */
export const PAYMENT_LIST_PARAMS = { $$strict: true, orderId: ID_PARAM } as const;

/**
 * A page of notifications, newest first: gateway.listNotifications (a customer's own);
 * notifications.list takes `customerId: CUSTOMER_FILTER_PARAM` too.
 */
export const NOTIFICATION_LIST_PARAMS = {
  $$strict: true,
  limit: LIST_LIMIT_PARAM,
  cursor: CURSOR_PARAM,
} as const;
