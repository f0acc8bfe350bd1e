/**
 * Decides whether a suite that needs an external binary (nats-server, redis-server) runs.
 * Missing binary: the suite is skipped with a loud notice, except under CI=true, where the
 * suite fails with a message saying what to install.
 */
import { execFileSync } from "node:child_process";

/** Absolute path of `name` on PATH, or null. */
export function findBinary(name: string): string | null {
  try {
    const out = execFileSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" }).trim();
    return out.length > 0 ? out : null;
  } catch {
    return null;
  }
}

export interface Requirement {
  /** Use as `describeIf(...)` — `describe` when available, `describe.skip` otherwise. */
  describe: jest.Describe;
  path: string | null;
}

/**
 * `const nats = requireBinary("nats-server", "apt-get install nats-server")` then
 * `nats.describe("jetstream bus", …)`. Override the lookup with ORDERMESH_<NAME>_BIN.
 */
export function requireBinary(name: string, installHint: string): Requirement {
  const override = process.env[`ORDERMESH_${name.toUpperCase().replace(/-/g, "_")}_BIN`];
  const path = override ?? findBinary(name);
  if (path !== null) return { describe, path };
  const message = `${name} not found on PATH (install: ${installHint})`;
  if (process.env.CI === "true") {
    // Under CI a missing server is a failure, never a silent skip.
    const failing = ((title: string) =>
      describe(title, () => {
        it(`needs ${name}`, () => {
          throw new Error(`CI=true and ${message}`);
        });
      })) as unknown as jest.Describe;
    return { describe: failing, path: null };
  }
  process.stderr.write(`\n!!! SKIPPING suites that need ${name}: ${message}\n\n`);
  return { describe: describe.skip, path: null };
}
