import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { requireBinary } from "../support/infra";
import { runOrdermesh, waitForHttp, type OrdermeshProcess } from "../support/ordermesh-process";
import { freePort } from "../support/ports";

jest.setTimeout(120_000);

const nats = requireBinary("nats-server", "apt-get install nats-server");

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "ordermesh-e2e-"));
}

describe("runtime modes", () => {
  const cleanup: (() => Promise<unknown> | void)[] = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  function track(proc: OrdermeshProcess, dir: string): OrdermeshProcess {
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    cleanup.push(() => proc.stop());
    return proc;
  }

  describe("embedded (ordermesh start)", () => {
    it("answers /livez and /readyz with every service healthy, stops on SIGTERM, and starts again on the same data", async () => {
      const dir = tempDir();
      const port = await freePort();
      const env = { PORT: String(port), DATA_DIR: dir };
      const first = track(runOrdermesh(["start"], env), dir);
      const alive = (): boolean => first.child.exitCode === null;

      const ready = await waitForHttp(`http://127.0.0.1:${port}/readyz`, (s) => s === 200, 60_000, alive);
      const body = JSON.parse(ready.body) as { status: string; checks: Record<string, { ok: boolean }> };
      expect(body.status).toBe("ready");
      expect(Object.keys(body.checks).sort()).toEqual(
        ["broker", "bus", "inventory", "kv", "notifications", "orders", "payments"].sort(),
      );
      expect(Object.values(body.checks).every((c) => c.ok)).toBe(true);

      const live = await fetch(`http://127.0.0.1:${port}/livez`);
      expect(live.status).toBe(200);
      const unknown = await fetch(`http://127.0.0.1:${port}/nope`);
      expect(unknown.status).toBe(404);
      expect(((await unknown.json()) as { error: { code: string } }).error.code).toBe("NOT_FOUND");

      // One store file per service under DATA_DIR.
      for (const service of ["orders", "inventory", "payments", "notifications"]) {
        expect(existsSync(join(dir, `${service}.db`))).toBe(true);
      }

      const stopped = await first.stop();
      expect(stopped.code).toBe(0);

      const second = track(runOrdermesh(["start"], env), dir);
      await waitForHttp(
        `http://127.0.0.1:${port}/readyz`,
        (s) => s === 200,
        60_000,
        () => second.child.exitCode === null,
      );
      expect((await second.stop()).code).toBe(0);
    });

    it.each([
      [{ PORT: "abc" }, "PORT"],
      [{ NATS_URL: "nope" }, "NATS_URL"],
      [{ SERVICES: "orders,billing" }, "SERVICES"],
    ])("refuses to start with %j and names %s", async (env, variable) => {
      const dir = tempDir();
      const proc = track(runOrdermesh(["start"], { DATA_DIR: dir, ...env }), dir);
      const result = await proc.exited;
      expect(result.code).toBe(78);
      expect(proc.output()).toContain(`invalid configuration: ${variable}:`);
    });
  });

  nats.describe("local cluster (ordermesh cluster)", () => {
    it("starts nats-server and one process per service; /readyz is 200 once all have joined; SIGTERM stops all", async () => {
      const dir = tempDir();
      const port = await freePort();
      const cluster = track(runOrdermesh(["cluster"], { PORT: String(port), DATA_DIR: dir }), dir);
      const alive = (): boolean => cluster.child.exitCode === null;

      const ready = await waitForHttp(`http://127.0.0.1:${port}/readyz`, (s) => s === 200, 90_000, alive);
      const body = JSON.parse(ready.body) as { checks: Record<string, { ok: boolean; nodeID?: string }> };
      // Each domain service answered from its own process (node id = <service>-<supervisor pid>).
      for (const service of ["orders", "inventory", "payments", "notifications"]) {
        expect(body.checks[service]?.ok).toBe(true);
        expect(body.checks[service]?.nodeID).toMatch(new RegExp(`^${service}-\\d+$`));
      }
      const state = JSON.parse(readFileSync(join(dir, "cluster.json"), "utf8")) as { natsServers: string[] };
      expect(state.natsServers[0]).toMatch(/^nats:\/\/127\.0\.0\.1:\d+$/);
      for (const service of ["orders", "inventory", "payments", "notifications"]) {
        expect(existsSync(join(dir, `${service}.db`))).toBe(true);
      }

      const result = await cluster.stop(30_000);
      expect(result.code).toBe(0);
      expect(existsSync(join(dir, "cluster.json"))).toBe(false);
      await expect(fetch(`http://127.0.0.1:${port}/livez`)).rejects.toThrow();
    });
  });
});
