/**
 * Prometheus metrics for the gateway (moleculer-web): every HTTP request the gateway answers is
 * timed and counted under its route template, and the `metrics` action renders, in the Prometheus
 * text format, those HTTP metrics, the gateway process's own metrics, and the outbox, inbox and
 * breaker statistics of every service instance in the cluster, gathered at scrape time
 * (lib/metrics/cluster-collector.ts). Alias it as `"GET /metrics": "gateway.metrics"`. Metric
 * names, labels and what to alert on: docs/operations.md ("Metrics").
 */
import type { IncomingMessage, Server } from "node:http";
import type { Context, ServiceSchema } from "moleculer";
import { Registry } from "prom-client";
import { defineMixin } from "./schema";
import { brokerStatsSource, collectClusterStats } from "../lib/metrics/cluster-collector";
import { clusterRegistry } from "../lib/metrics/cluster-metrics";
import { PROMETHEUS_CONTENT_TYPE, processMetrics, renderMetrics } from "../lib/metrics/exposition";
import { HttpMetrics, instrumentServer } from "../lib/metrics/http-metrics";

export interface HttpMetricsOptions {
  /** Deadline of each instance's statistics call during a scrape (default 1 s). */
  statsTimeoutMs?: number;
}

/** The moleculer-web alias that matched a request: its template is `fullPath` (route path + alias path). */
interface MatchedAlias {
  alias: { fullPath: string };
}

/** What moleculer-web leaves on a request it routed. */
type RoutedRequest = IncomingMessage & {
  $alias?: { fullPath?: string };
  /** The URL without query string and trailing slash, as moleculer-web matches it. */
  parsedUrl?: string;
};

/** What the mixin needs from moleculer-web and keeps on `this`. */
interface HttpMetricsVars {
  server: Server | undefined;
  resolveAlias(url: string, method: string): MatchedAlias | false;
  httpRegistry: Registry;
  httpMetrics: HttpMetrics;
  stopHttpMetrics: (() => void) | undefined;
}

/** Mixin factory, after moleculer-web: `mixins: [ApiGateway, HttpMetricsMixin()]`. */
export function HttpMetricsMixin(options: HttpMetricsOptions = {}): Partial<ServiceSchema> {
  return defineMixin<HttpMetricsVars>({
    // ── actions ──────────────────────────────────────────────────────────
    actions: {
      metrics: {
        visibility: "published",
        async handler(ctx: Context<unknown, { $responseType?: string }>): Promise<string> {
          const instances = await collectClusterStats(brokerStatsSource(this.broker), {
            ...(options.statsTimeoutMs === undefined ? {} : { timeoutMs: options.statsTimeoutMs }),
          });
          for (const { service, nodeID, failures } of instances) {
            for (const failure of failures)
              this.logger.warn(`metrics: ${service}.${failure.action} on ${nodeID}: ${failure.error}`);
          }
          const text = await renderMetrics([processMetrics(), this.httpRegistry, clusterRegistry(instances)]);
          ctx.meta.$responseType = PROMETHEUS_CONTENT_TYPE;
          return text;
        },
      },
    },

    // ── lifecycle ────────────────────────────────────────────────────────
    created() {
      // one registry per gateway: several gateways may run in one process (tests)
      this.httpRegistry = new Registry();
      this.httpMetrics = new HttpMetrics(this.httpRegistry);
      this.stopHttpMetrics = undefined;
      // the process metrics count from here (CPU time, GC), not from the first scrape
      processMetrics();
    },

    started() {
      const server = this.server;
      // moleculer-web without its own server (`server: false`) has nothing to time
      if (server === undefined) return;
      this.stopHttpMetrics = instrumentServer(server, this.httpMetrics, (req) =>
        routeTemplateOf(req, (url, method) => this.resolveAlias(url, method)),
      );
    },

    stopped() {
      this.stopHttpMetrics?.();
      this.stopHttpMetrics = undefined;
    },
  });
}

/**
 * The route template a finished request matched, undefined for none. Throws when moleculer-web
 * cannot decode a parameter of the URL (`%G1`); instrumentServer counts it as unmatched.
 */
function routeTemplateOf(
  req: RoutedRequest,
  resolveAlias: HttpMetricsVars["resolveAlias"],
): string | undefined {
  if (typeof req.$alias?.fullPath === "string") return req.$alias.fullPath;
  // the body parsers run before moleculer-web records the alias (a 413, a bad JSON body): match
  // the URL the way it does
  if (typeof req.parsedUrl !== "string") return undefined;
  const found = resolveAlias(req.parsedUrl, req.method ?? "GET");
  return found === false ? undefined : found.alias.fullPath;
}
