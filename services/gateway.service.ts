/**
 * API gateway (moleculer-web). Today it serves the probes: `GET /livez` (the process answers)
 * and `GET /readyz` (broker started, the gateway's own adapters reachable, every required
 * service healthy). The HTTP API of DESIGN §6 is mounted here.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Context, ServiceSchema } from "moleculer";
import ApiGateway, { type ApiSettingsSchema } from "moleculer-web";
import type { Config } from "../lib/config";
import { infrastructureOf } from "../lib/infrastructure";
import {
  InfrastructureMixin,
  type HealthReport,
  type InfrastructureThis,
} from "../mixins/infrastructure.mixin";

interface GatewayVars extends InfrastructureThis {
  accepting: boolean;
  config: Config;
}

interface ReadinessCheck {
  ok: boolean;
  error?: string;
  nodeID?: string;
}

const HEALTH_TIMEOUT_MS = 2000;

const GatewayService: ServiceSchema<ApiSettingsSchema, Record<string, never>, GatewayVars> = {
  name: "gateway",
  mixins: [ApiGateway, InfrastructureMixin({ bus: true, kv: true })],

  // ── settings ───────────────────────────────────────────────────────────
  settings: {
    port: 3000,
    ip: "0.0.0.0",
    routes: [
      {
        path: "/",
        mappingPolicy: "restrict",
        aliases: {
          "GET /livez": "gateway.livez",
          "GET /readyz": "gateway.readyz",
        },
        bodyParsers: { json: false, urlencoded: false },
      },
    ],
    // Errors never carry stack traces out of the process.
    log4XXResponses: false,
    onError(
      this: unknown,
      req: IncomingMessage,
      res: ServerResponse,
      err: Error & { code?: number; type?: string },
    ) {
      const status = typeof err.code === "number" && err.code >= 400 && err.code < 600 ? err.code : 500;
      const requestId = (req as IncomingMessage & { $ctx?: { requestID?: string } }).$ctx?.requestID ?? "";
      res.setHeader("Content-Type", "application/json; charset=utf-8");
      res.writeHead(status);
      res.end(
        JSON.stringify({
          error: {
            code: err.type ?? (status === 404 ? "NOT_FOUND" : "INTERNAL"),
            message: status >= 500 ? "internal error" : err.message,
            requestId,
          },
        }),
      );
    },
  },

  // ── actions ────────────────────────────────────────────────────────────
  actions: {
    livez: {
      visibility: "published",
      handler(): { status: "ok" } {
        return { status: "ok" };
      },
    },

    readyz: {
      visibility: "published",
      async handler(ctx: Context<unknown, { $statusCode?: number }>) {
        const checks: Record<string, ReadinessCheck> = {};
        checks.broker = { ok: this.broker.started && this.accepting === true };
        const ping = async (name: string, target: { ping(): Promise<void> } | undefined) => {
          try {
            if (target === undefined) throw new Error("not open");
            await target.ping();
            checks[name] = { ok: true };
          } catch (err) {
            checks[name] = { ok: false, error: message(err) };
          }
        };
        const available = new Set(
          (this.broker.registry.getServiceList({ onlyAvailable: true }) as { name: string }[]).map(
            (svc) => svc.name,
          ),
        );
        await Promise.all([
          ping("bus", this.bus),
          ping("kv", this.kv),
          ...this.config.requiredServices.map(async (service) => {
            if (!available.has(service)) {
              checks[service] = { ok: false, error: "no instance has joined" };
              return;
            }
            try {
              const report = await ctx.call<HealthReport, Record<string, never>>(
                `${service}.health`,
                {},
                { timeout: HEALTH_TIMEOUT_MS },
              );
              checks[service] = { ok: report.healthy, nodeID: report.nodeID };
            } catch (err) {
              checks[service] = { ok: false, error: message(err) };
            }
          }),
        ]);
        const ready = Object.values(checks).every((c) => c.ok);
        if (!ready) ctx.meta.$statusCode = 503;
        return { status: ready ? "ready" : "not_ready", checks };
      },
    },
  },

  // ── lifecycle ──────────────────────────────────────────────────────────
  created() {
    this.config = infrastructureOf(this.broker).config;
    this.settings.port = this.config.port;
    this.accepting = true;
  },

  async stopped() {
    this.accepting = false;
  },
};

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export default GatewayService;
