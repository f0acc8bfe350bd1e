/**
 * What moleculer-web hands the gateway: the context of an API action, with what the HTTP layer
 * leaves in `ctx.meta` (the principal, request headers it reads, and the `$` fields that shape the
 * answer), and the request as its hooks see it.
 */
import type { IncomingMessage } from "node:http";
import type { Context } from "moleculer";
import type { Principal } from "../principal";

/** `ctx.meta` of a call that came in over HTTP. */
export interface ApiMeta {
  /** The authenticated caller; null for an anonymous one. */
  user?: Principal | null;
  /** The request's Idempotency-Key, unchecked. */
  idempotencyKey?: string;
  /** The webhook's Psp-Signature ("" when absent). */
  pspSignature?: string;
  /** moleculer-web: the answer's status, Location, content type and extra headers. */
  $statusCode?: number;
  $location?: string;
  $responseType?: string;
  $responseHeaders?: Record<string, string>;
}

/** The context of a gateway action. */
export type ApiContext<P = Record<string, never>> = Context<P, ApiMeta>;

/** A request after moleculer-web's body and query parsing. */
export type ApiRequest = IncomingMessage & { body?: unknown; query?: unknown };

/** The part of moleculer-web's alias the gateway reads. */
export interface ApiAlias {
  method: string;
  fullPath: string;
}
