/**
 * A moleculer-web gateway that stops the way a load balancer expects (docs/operations.md, "Shutdown
 * and probes"), and a startup probe.
 *
 * `drainHttp(drainMs)`, called by bin/ordermesh.ts on SIGTERM:
 * 1. `accepting` turns false, so /readyz answers 503, while every request is still served for
 *    `drainMs` (the load balancer takes that long to notice); each response from then on carries
 *    `Connection: close`, so keep-alive clients open their next connection elsewhere;
 * 2. the server stops accepting connections and closes the idle ones;
 * 3. the requests in flight are answered to completion; then the remaining connections close.
 * The broker stops afterwards, so the services behind the gateway still answer those requests.
 *
 * `GET /startupz` (the `startupz` action) answers 503 `starting` until the broker has started every
 * local service, then 200 `started` for good, whatever readiness does later.
 */
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { Context, Service, ServiceSchema } from "moleculer";
import { defineMixin } from "./schema";

/** What the mixin adds to `this`. */
export interface GracefulHttpThis {
  /** False from the start of a drain: /readyz reports not ready. */
  accepting: boolean;
  /** Drain and stop the HTTP server; resolves once every request in flight is answered. */
  drainHttp(drainMs: number): Promise<void>;
}

interface GracefulHttpVars extends GracefulHttpThis {
  /** moleculer-web's HTTP server; none with `server: false`. */
  server: Server | undefined;
  /** Latched by `$broker.started`. */
  startupComplete: boolean;
  /** Responses not finished (or aborted) yet. */
  inFlight: Set<ServerResponse>;
  /** Called whenever a response in flight ends. */
  onResponseEnded: (() => void) | undefined;
  draining: Promise<void> | undefined;
  drain(drainMs: number): Promise<void>;
  trackRequest(res: ServerResponse): void;
}

export interface StartupReport {
  status: "started" | "starting";
}

/** Mixin for a service that also mixes in moleculer-web: `mixins: [ApiGateway, GracefulHttpMixin()]`. */
export function GracefulHttpMixin(): Partial<ServiceSchema> {
  return defineMixin<GracefulHttpVars>({
    // ── actions ──────────────────────────────────────────────────────────
    actions: {
      startupz: {
        visibility: "published",
        handler(ctx: Context<unknown, { $statusCode?: number }>): StartupReport {
          if (this.startupComplete) return { status: "started" };
          ctx.meta.$statusCode = 503;
          return { status: "starting" };
        },
      },
    },

    // ── events ───────────────────────────────────────────────────────────
    events: {
      // broadcast locally once the `started` handler of every local service has returned
      "$broker.started"() {
        this.startupComplete = true;
      },
    },

    // ── methods ──────────────────────────────────────────────────────────
    methods: {
      drainHttp(drainMs: number): Promise<void> {
        this.draining ??= this.drain(drainMs);
        return this.draining;
      },

      async drain(drainMs: number): Promise<void> {
        this.accepting = false;
        for (const res of this.inFlight) closeAfterResponse(res);
        const server = this.server;
        if (server === undefined || !server.listening) return;
        // never reported ready (still starting): no load balancer to wait for
        if (this.startupComplete && drainMs > 0) {
          this.logger.info(`draining: not ready, still serving for ${drainMs} ms`);
          await sleep(drainMs);
        }
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        this.logger.info(
          `stopped accepting connections; waiting for ${this.inFlight.size} in-flight request(s)`,
        );
        while (this.inFlight.size > 0) {
          await new Promise<void>((resolve) => (this.onResponseEnded = resolve));
        }
        // what is left has no request in flight: a keep-alive socket, or one still sending headers
        server.closeAllConnections();
        await closed;
        this.logger.info("every in-flight request answered; HTTP server closed");
      },

      trackRequest(res: ServerResponse): void {
        this.inFlight.add(res);
        if (!this.accepting) closeAfterResponse(res);
        res.once("close", () => {
          this.inFlight.delete(res);
          const ended = this.onResponseEnded;
          this.onResponseEnded = undefined;
          ended?.();
        });
      },
    },

    // ── lifecycle ────────────────────────────────────────────────────────
    created() {
      this.accepting = true;
      this.startupComplete = false;
      this.inFlight = new Set();
      this.onResponseEnded = undefined;
      this.draining = undefined;
    },

    started() {
      // moleculer-web created the server in its own `created`; ours sees every request first
      this.server?.prependListener("request", (_req: IncomingMessage, res: ServerResponse) =>
        this.trackRequest(res),
      );
    },
  });
}

/** A gateway built with this mixin, among a broker's local services. */
export function isGracefulHttp(service: Service): service is Service & GracefulHttpThis {
  return typeof (service as Partial<GracefulHttpThis>).drainHttp === "function";
}

/** Once answered, the connection closes: the client's next request opens a new one (elsewhere). */
function closeAfterResponse(res: ServerResponse): void {
  if (!res.headersSent) res.setHeader("Connection", "close");
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
