/**
 * Custom REPL commands for operators (`npm run repl`, or `npm start -- --repl`). Each is backed
 * by actions the gateway and monitoring can call too.
 */
import type { ReplOptions, ServiceBroker } from "moleculer";
import { SERVICE_NAMES } from "./config";

/** A moleculer-repl custom command. */
export type ReplCommand = NonNullable<ReplOptions["customCommands"]>[number];

/** What moleculer-repl hands a custom command: its positional arguments by name, and the options. */
interface ReplParams {
  options?: Record<string, unknown>;
  [positional: string]: unknown;
}

/** The ordermesh commands, for `replOptions.customCommands`. */
export function replCommands(): ReplCommand[] {
  return [
    {
      command: "outbox [action] [service] [id]",
      description:
        "Outbox of every service: pending, oldest pending age, dead, published in the last minute. " +
        "`outbox dead <service>` lists dead rows; `outbox replay <service> <id>` makes a dead row pending again",
      async action(broker, rawArgs) {
        const args = rawArgs as unknown as ReplParams;
        const action = typeof args.action === "string" ? args.action : "stats";
        if (action === "replay" || action === "dead") {
          const service = requireArg(args.service, "service");
          if (service === undefined) return;
          if (action === "dead") {
            const rows = await broker.call<OutboxDeadRow[], { limit: number }>(`${service}.outboxDead`, {
              limit: 50,
            });
            printTable([
              ["id", "type", "attempts", "dead at", "last error"],
              ...rows.map((r) => [r._id, r.type, String(r.attempts), isoOf(r.deadAt), r.lastError ?? ""]),
            ]);
            return;
          }
          const id = requireArg(args.id, "id");
          if (id === undefined) return;
          const replayed = await broker.call<boolean, { id: string }>(`${service}.outboxReplay`, { id });
          console.log(
            replayed ? `${service}: ${id} is pending again` : `${service}: ${id} is not a dead row`,
          );
          return;
        }
        const rows: string[][] = [
          ["service", "node", "pending", "oldest pending", "dead", "published/min", "failures"],
        ];
        for (const { service, nodeID } of instancesWith(broker, "outboxStats")) {
          try {
            const stats = await broker.call<OutboxStatsLike, Record<string, never>>(
              `${service}.outboxStats`,
              {},
              { nodeID },
            );
            rows.push([
              service,
              nodeID,
              String(stats.pending),
              stats.oldestPendingAgeMs == null ? "-" : `${Math.round(stats.oldestPendingAgeMs)} ms`,
              String(stats.dead),
              String(stats.publishedLastMinute),
              String(stats.counters?.publishFailures ?? 0),
            ]);
          } catch (err) {
            rows.push([
              service,
              nodeID,
              `error: ${err instanceof Error ? err.message : String(err)}`,
              "",
              "",
              "",
              "",
            ]);
          }
        }
        if (rows.length === 1) console.log("no service with an outbox is running");
        else printTable(rows);
      },
    },
    {
      command: "dlq [action] [service] [id]",
      description:
        "Dead letters of every consumer. `dlq` lists them; `dlq replay <service> <id>` runs the handler again " +
        "(once, under the same idempotency claim); `dlq discard <service> <id>` drops one",
      async action(broker, rawArgs) {
        const args = rawArgs as unknown as ReplParams;
        const action = typeof args.action === "string" ? args.action : "list";
        if (action === "replay" || action === "discard") {
          const service = requireArg(args.service, "service");
          const id = service === undefined ? undefined : requireArg(args.id, "id");
          if (service === undefined || id === undefined) return;
          const name = action === "replay" ? "replayDeadLetter" : "discardDeadLetter";
          const result = await broker.call<unknown, { id: string }>(`${service}.${name}`, { id });
          console.log(`${service}: ${action} ${id} →`, result);
          return;
        }
        const rows: string[][] = [["service", "id", "type", "deliveries", "status", "dead at", "error"]];
        const seen = new Set<string>();
        for (const { service } of instancesWith(broker, "deadLetters")) {
          if (seen.has(service)) continue; // one store per service: any instance lists them all
          seen.add(service);
          const letters = await broker.call<DeadLetterLike[], { limit: number }>(`${service}.deadLetters`, {
            limit: 50,
          });
          for (const l of letters) {
            rows.push([
              service,
              l._id,
              l.subscription ?? l.envelope?.type ?? "?",
              String(l.deliveryCount ?? ""),
              l.status ?? "",
              isoOf(l.deadAt),
              l.error?.message ?? "",
            ]);
          }
        }
        if (rows.length === 1) console.log("no dead letters");
        else printTable(rows);
      },
    },
    {
      command: "health",
      description: "Health of every ordermesh service instance reachable from here (store, bus, key-value)",
      async action(broker) {
        const rows: string[][] = [["service", "node", "healthy", "checks"]];
        for (const service of SERVICE_NAMES) {
          if (service === "gateway") continue;
          const nodes = (
            broker.registry.getServiceList({ onlyAvailable: true, skipInternal: true }) as {
              name: string;
              nodeID: string;
            }[]
          )
            .filter((s) => s.name === service)
            .map((s) => s.nodeID);
          if (nodes.length === 0) {
            rows.push([service, "-", "no instance", ""]);
            continue;
          }
          for (const nodeID of nodes) {
            try {
              const report = await broker.call<HealthLike, Record<string, never>>(
                `${service}.health`,
                {},
                { nodeID, timeout: 2000, tracking: false },
              );
              rows.push([service, nodeID, String(report.healthy), describeChecks(report.checks)]);
            } catch (err) {
              const data = (err as { data?: { checks?: Record<string, { ok: boolean; error?: string }> } })
                .data;
              rows.push([
                service,
                nodeID,
                "false",
                data?.checks !== undefined ? describeChecks(data.checks) : String(err),
              ]);
            }
          }
        }
        printTable(rows);
      },
    },
  ];
}

interface HealthLike {
  healthy: boolean;
  checks: Record<string, { ok: boolean; error?: string }>;
}

interface OutboxStatsLike {
  pending: number;
  oldestPendingAgeMs: number | null;
  dead: number;
  publishedLastMinute: number;
  counters?: { publishFailures?: number };
}

interface OutboxDeadRow {
  _id: string;
  type: string;
  attempts: number;
  deadAt?: string | Date;
  lastError?: string;
}

interface DeadLetterLike {
  _id: string;
  subscription?: string;
  envelope?: { type?: string };
  deliveryCount?: number;
  status?: string;
  deadAt?: string | Date;
  error?: { code?: string; message?: string };
}

/** Every available (service, node) of an ordermesh service that has `action`. */
function instancesWith(broker: ServiceBroker, action: string): { service: string; nodeID: string }[] {
  const list = broker.registry.getActionList({ onlyAvailable: true, withEndpoints: true }) as {
    name: string;
    endpoints?: { nodeID: string }[];
  }[];
  return list
    .filter((a) => a.name.endsWith(`.${action}`))
    .flatMap((a) =>
      (a.endpoints ?? []).map((e) => ({ service: a.name.slice(0, -action.length - 1), nodeID: e.nodeID })),
    );
}

function requireArg(value: unknown, name: string): string | undefined {
  if (typeof value === "string" && value.length > 0) return value;
  console.log(`missing <${name}>`);
  return undefined;
}

function isoOf(value: string | Date | undefined): string {
  if (value === undefined) return "";
  return value instanceof Date ? value.toISOString() : value;
}

function describeChecks(checks: Record<string, { ok: boolean; error?: string }>): string {
  return Object.entries(checks)
    .map(([name, c]) => (c.ok ? `${name}:ok` : `${name}:FAIL(${c.error ?? "?"})`))
    .join(" ");
}

/** Plain aligned columns on stdout. */
export function printTable(rows: string[][]): void {
  const widths = rows[0]?.map((_, col) => Math.max(...rows.map((r) => (r[col] ?? "").length))) ?? [];
  for (const row of rows) console.log(row.map((cell, col) => cell.padEnd(widths[col] ?? 0)).join("  "));
}
