/** Runs the compiled ordermesh command line as a child process, for end-to-end tests. */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";

export const ORDERMESH_BIN = join(__dirname, "..", "..", "dist", "bin", "ordermesh.js");

export interface OrdermeshProcess {
  child: ChildProcess;
  /** Everything written to stdout and stderr so far. */
  output(): string;
  /** Resolves with the exit code (or signal) once the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves on exit. */
  stop(graceMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Spawn `node dist/bin/ordermesh.js <args>` with `env` added to a clean copy of this environment. */
export function runOrdermesh(args: string[], env: Record<string, string>): OrdermeshProcess {
  if (!existsSync(ORDERMESH_BIN)) throw new Error(`${ORDERMESH_BIN} is missing: run \`npm run build\` first`);
  const base = { ...process.env };
  for (const name of ["NATS_URL", "TRANSPORTER", "REDIS_URL", "MONGO_URL", "SERVICES", "PORT", "DATA_DIR"])
    delete base[name];
  const child = spawn(process.execPath, [ORDERMESH_BIN, ...args], {
    env: { ...base, LOG_LEVEL: "warn", ...env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true, // own process group, so a stop reaches grandchildren (cluster mode)
  });
  let out = "";
  child.stdout?.on("data", (chunk: Buffer) => (out += chunk.toString()));
  child.stderr?.on("data", (chunk: Buffer) => (out += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    output: () => out,
    exited,
    async stop(graceMs = 15_000) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => {
          if (child.pid !== undefined) {
            try {
              process.kill(-child.pid, "SIGKILL");
            } catch {
              /* already gone */
            }
          }
        }, graceMs);
        const result = await exited;
        clearTimeout(timer);
        return result;
      }
      return exited;
    },
  };
}

/** Poll `url` until `accept(status)` or the deadline; returns the last status and body. */
export async function waitForHttp(
  url: string,
  accept: (status: number) => boolean,
  timeoutMs: number,
  alive?: () => boolean,
): Promise<{ status: number; body: string }> {
  const deadline = Date.now() + timeoutMs;
  let last: { status: number; body: string } = { status: 0, body: "" };
  while (Date.now() < deadline) {
    if (alive !== undefined && !alive()) throw new Error(`process exited while waiting for ${url}`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(3000) });
      last = { status: res.status, body: await res.text() };
      if (accept(res.status)) return last;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${url}; last answer ${last.status} ${last.body}`);
}
