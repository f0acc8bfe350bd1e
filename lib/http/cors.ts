/**
 * CORS at the gateway (CORS_ORIGINS, docs/operations.md "The edge"): browsers on the allowed origins
 * may call the API route, preflights are answered 204 with the allowed origin echoed, and a request
 * from any other origin is refused 403 ORIGIN_NOT_ALLOWED (moleculer-web does the answering from
 * these options). An OPTIONS that is no preflight on a CORS route never reaches an action: 405.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { Errors } from "moleculer";
import { HEADERS } from "../constants";
import { spelled } from "./headers";

const { MoleculerClientError } = Errors;

/** moleculer-web's CORS options of a route. */
export interface CorsOptions {
  origin: string[];
  methods: string[];
  allowedHeaders: string[];
  exposedHeaders: string[];
  credentials: boolean;
  maxAge: number;
}

/** The part of a moleculer-web route that CORS is set on. */
interface CorsRoute {
  opts: { path: string };
  cors?: unknown;
}

/** What a browser on one of `origins` may send and read. */
export function corsOptions(origins: readonly string[]): CorsOptions {
  return {
    origin: [...origins],
    methods: ["GET", "POST", "PUT"],
    allowedHeaders: [
      HEADERS.authorization,
      HEADERS.contentType,
      HEADERS.idempotencyKey,
      HEADERS.requestId,
      HEADERS.traceparent,
    ].map(spelled),
    exposedHeaders: [
      HEADERS.requestId,
      HEADERS.location,
      HEADERS.idempotentReplayed,
      HEADERS.retryAfter,
      HEADERS.rateLimit,
      HEADERS.rateLimitPolicy,
    ].map(spelled),
    credentials: false,
    // seconds a browser may keep a preflight's answer
    maxAge: 600,
  };
}

/**
 * Turn CORS on for the route at `path` of a gateway whose routes moleculer-web has already built
 * (it builds them before the service's own `created`).
 */
export function allowOrigins(routes: readonly CorsRoute[], path: string, origins: readonly string[]): void {
  const route = routes.find((candidate) => candidate.opts.path === path);
  if (route === undefined) throw new Error(`the ${path} route is missing`);
  route.cors = corsOptions(origins);
}

/**
 * Global middleware: a CORS preflight goes on to moleculer-web's CORS handling when the route has
 * CORS; any other OPTIONS is 405, before routing could map it onto an action (moleculer-web would
 * route it as the method it names).
 */
export function refuseOptions(
  req: IncomingMessage & { $route?: { cors?: unknown } },
  _res: ServerResponse,
  next: (err?: unknown) => void,
): void {
  if (req.method !== "OPTIONS") return next();
  // moleculer-web leaves `cors` null on a route without CORS
  const preflight =
    Boolean(req.$route?.cors) && req.headers[HEADERS.accessControlRequestMethod] !== undefined;
  if (preflight) return next();
  next(new MoleculerClientError("OPTIONS is not served here", 405, "METHOD_NOT_ALLOWED"));
}
