/**
 * Keyset pagination over (createdAt desc, _id desc), the order every "list mine" API uses: a
 * cursor names the last row of a page, and the next page is what comes strictly after it. Unlike
 * an offset, a row inserted meanwhile neither repeats nor hides one. A cursor is opaque to clients
 * (base64url of `[createdAt, id]`); one this API did not return is 400 INVALID_CURSOR.
 */
import { Errors } from "moleculer";
import type { Filter } from "./store/store.port";

const { MoleculerClientError } = Errors;

export interface CursorPage<V> {
  items: V[];
  /** null on the last page. */
  nextCursor: string | null;
}

/** Rows sortable newest first: `createdAt` stored as an ISO string or a Date. */
interface Keyed {
  _id: string;
  createdAt: string | Date;
}

/** The sort that goes with the cursor. */
export const NEWEST_FIRST = { createdAt: -1, _id: -1 } as const;

/**
 * The filter for rows after `cursor`, comparing `createdAt` as the collection stores it: `"date"`
 * for Date values, `"string"` for ISO strings.
 */
export function afterCursor(cursor: string, createdAtStoredAs: "string" | "date"): Filter {
  let decoded: unknown;
  try {
    decoded = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
  } catch {
    decoded = undefined;
  }
  const [createdAt, id] = Array.isArray(decoded) && decoded.length === 2 ? decoded : [];
  if (typeof createdAt !== "string" || typeof id !== "string" || Number.isNaN(Date.parse(createdAt)))
    throw new MoleculerClientError("cursor is not one this API returned", 400, "INVALID_CURSOR");
  const at = createdAtStoredAs === "date" ? new Date(createdAt) : createdAt;
  return { $or: [{ createdAt: { $lt: at } }, { createdAt: at, _id: { $lt: id } }] };
}

/** A page of `limit` rows from `rows` (fetched with `limit + 1`, newest first), viewed, with its next cursor. */
export function pageOf<D extends Keyed, V>(rows: D[], limit: number, view: (row: D) => V): CursorPage<V> {
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  return {
    items: page.map(view),
    nextCursor: rows.length > limit && last !== undefined ? cursorOf(last) : null,
  };
}

function cursorOf(row: Keyed): string {
  const createdAt = row.createdAt instanceof Date ? row.createdAt.toISOString() : row.createdAt;
  return Buffer.from(JSON.stringify([createdAt, row._id])).toString("base64url");
}
