/**
 * Custom REPL commands for operators (`npm run repl`, or `npm start -- --repl`). Each is backed
 * by actions the gateway and monitoring can call too.
 */
import type { ReplOptions } from "moleculer";
import { SERVICE_NAMES } from "./config";

/** A moleculer-repl custom command. */
export type ReplCommand = NonNullable<ReplOptions["customCommands"]>[number];

/** The ordermesh commands, for `replOptions.customCommands`. */
export function replCommands(): ReplCommand[] {
  return [
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
                { nodeID, timeout: 2000 },
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
