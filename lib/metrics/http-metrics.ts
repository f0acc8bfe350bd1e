/**
 * Request counts and latencies of an HTTP server, labelled by route TEMPLATE
 * (`/api/v1/orders/:id`), never by raw URL: one series per route the server declares, whatever
 * ids clients send. A request that matches no template is counted under `route="unmatched"`.
 */
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { Counter, Histogram, type Registry } from "prom-client";
import { LABELS, METRICS, UNMATCHED_ROUTE } from "./metric-names";

/** Latency buckets in seconds: from a cached read to a call that waits on the payment provider. */
export const HTTP_DURATION_BUCKETS: readonly number[] = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/** One answered request. */
export interface HttpObservation {
  method: string;
  /** The matched route template; undefined when no route matched. */
  route: string | undefined;
  status: number;
  seconds: number;
}

type RequestLabel = typeof LABELS.method | typeof LABELS.route | typeof LABELS.status;
type DurationLabel = typeof LABELS.method | typeof LABELS.route;

/** The request counter and latency histogram of one server, registered in `registry`. */
export class HttpMetrics {
  private readonly requests: Counter<RequestLabel>;
  private readonly duration: Histogram<DurationLabel>;

  constructor(registry: Registry, buckets: readonly number[] = HTTP_DURATION_BUCKETS) {
    this.requests = new Counter({
      name: METRICS.httpRequests,
      help: "HTTP requests answered, by method, route template and status code.",
      labelNames: [LABELS.method, LABELS.route, LABELS.status],
      registers: [registry],
    });
    this.duration = new Histogram({
      name: METRICS.httpRequestDuration,
      help: "Time from receiving an HTTP request to the end of its response, by method and route template.",
      labelNames: [LABELS.method, LABELS.route],
      buckets: [...buckets],
      registers: [registry],
    });
  }

  /** Count one answered request and record how long it took. */
  observe(observation: HttpObservation): void {
    const route = observation.route ?? UNMATCHED_ROUTE;
    const method = observation.method.toUpperCase();
    this.requests.inc({ method, route, status: String(observation.status) });
    this.duration.observe({ method, route }, Math.max(0, observation.seconds));
  }
}

/** Which route template a finished request matched; undefined for none. */
export type RouteOf = (req: IncomingMessage) => string | undefined;

/**
 * Time every request `server` receives, from its `request` event to the `finish` of its response,
 * and record it in `metrics` under the template `routeOf` names once the response is written (the
 * router has matched it by then). A response the client abandoned before it was written is not
 * counted. Returns the function that stops recording.
 */
export function instrumentServer(server: Server, metrics: HttpMetrics, routeOf: RouteOf): () => void {
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const started = process.hrtime.bigint();
    res.once("finish", () => {
      metrics.observe({
        method: req.method ?? "GET",
        route: safeRouteOf(routeOf, req),
        status: res.statusCode,
        seconds: Number(process.hrtime.bigint() - started) / 1e9,
      });
    });
  };
  // first in line, so the clock starts before the router's own work
  server.prependListener("request", onRequest);
  return () => {
    server.off("request", onRequest);
  };
}

/**
 * `routeOf(req)`, or undefined when it throws: this runs in an event listener, where an exception
 * would stop the process, and a URL its router cannot even name is unmatched anyway.
 */
function safeRouteOf(routeOf: RouteOf, req: IncomingMessage): string | undefined {
  try {
    return routeOf(req);
  } catch {
    return undefined;
  }
}
