/**
 * The compiled command line on the production path:
 * - what each service needs is checked before anything starts (exit 78 naming the variable), weak
 *   secrets included; a start that fails anyway says why;
 * - `ordermesh token` prints a token a running gateway accepts;
 * - the admin listener answers the probes of a process without the gateway, and `ordermesh probe`
 *   turns them into an exit code;
 * - JETSTREAM_REPLICAS reaches the stream, and a stream with another count does not stop a start.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "nats";
import { nats, startNatsServer, type NatsServerHandle } from "../support/nats-server";
import {
  ORDERMESH_BIN,
  runOrdermesh,
  waitForHttp,
  type OrdermeshProcess,
} from "../support/ordermesh-process";
import { freePort } from "../support/ports";
import { waitFor } from "../support/wait";

jest.setTimeout(120_000);

/** Random-looking secrets, as `openssl rand -base64 32` prints them. */
const JWT_SECRET = "q3V9xZ2mLr8TbK0wYf5NhC7uJd4PsA1eGi6OtW+Ry/E=";
const WEBHOOK_SECRET = "whsec_T7q2LmX9vRk4ZpN8wYc3Hd6Fb1";
/** Nothing listens here: the configuration is refused before anything connects. */
const NOWHERE_NATS = "nats://127.0.0.1:1";

/** Variables of this test process's environment that must not leak into a child. */
const OURS = [
  "NATS_URL",
  "TRANSPORTER",
  "REDIS_URL",
  "MONGO_URL",
  "SERVICES",
  "PORT",
  "ADMIN_PORT",
  "DATA_DIR",
  "JWT_SECRET",
  "JWT_ISSUER",
  "JWT_AUDIENCE",
  "PSP_URL",
  "PSP_WEBHOOK_SECRET",
  "JETSTREAM_REPLICAS",
];

interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run `node <script> <args>` to its end (at most 20 s), with `env` added to a clean environment. */
function runToEnd(args: string[], env: Record<string, string>, script = ORDERMESH_BIN): Promise<Finished> {
  const base = { ...process.env };
  for (const name of OURS) delete base[name];
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [script, ...args],
      { env: { ...base, LOG_LEVEL: "warn", ...env }, timeout: 20_000 },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === "number" ? err.code : null;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** The claims of a JWT, unverified. */
function claimsOf(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString("utf8")) as Record<
    string,
    unknown
  >;
}

describe("ordermesh command line", () => {
  const cleanup: (() => Promise<unknown> | void)[] = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  function tempDir(): string {
    const dir = mkdtempSync(join(tmpdir(), "ordermesh-cli-"));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    return dir;
  }

  function track(proc: OrdermeshProcess): OrdermeshProcess {
    cleanup.push(() => proc.stop());
    return proc;
  }

  describe("configuration checked before anything starts", () => {
    it.each([
      [
        "payments without PSP_URL",
        ["start"],
        { SERVICES: "payments", NATS_URL: NOWHERE_NATS, PSP_WEBHOOK_SECRET: WEBHOOK_SECRET },
        "PSP_URL",
      ],
      [
        "payments without PSP_WEBHOOK_SECRET",
        ["start"],
        { SERVICES: "payments", NATS_URL: NOWHERE_NATS, PSP_URL: "http://127.0.0.1:1" },
        "PSP_WEBHOOK_SECRET",
      ],
      [
        "a placeholder JWT_SECRET",
        ["start"],
        { NATS_URL: NOWHERE_NATS, JWT_SECRET: "change-me-to-a-long-random-secret" },
        "JWT_SECRET",
      ],
      [
        "a low-entropy JWT_SECRET in the local mode too",
        ["start"],
        { JWT_SECRET: "aaaaaaaabbbbbbbbcccc" },
        "JWT_SECRET",
      ],
      [
        "a placeholder PSP_WEBHOOK_SECRET",
        ["start"],
        { SERVICES: "payments", PSP_WEBHOOK_SECRET: "whsec_your-secret-here" },
        "PSP_WEBHOOK_SECRET",
      ],
      [
        "the gateway without JWT_SECRET",
        ["start"],
        { SERVICES: "gateway", NATS_URL: NOWHERE_NATS },
        "JWT_SECRET",
      ],
      ["JETSTREAM_REPLICAS out of range", ["start"], { JETSTREAM_REPLICAS: "7" }, "JETSTREAM_REPLICAS"],
      ["ADMIN_PORT not a port", ["start"], { ADMIN_PORT: "admin" }, "ADMIN_PORT"],
      ["one ADMIN_PORT for a whole cluster", ["cluster"], { ADMIN_PORT: "9000" }, "ADMIN_PORT"],
    ])("refuses %s: exit 78 naming the variable", async (_what, args, env, variable) => {
      const result = await runToEnd(args, { DATA_DIR: tempDir(), ...env });
      expect(result.code).toBe(78);
      expect(result.stderr).toContain(`ordermesh: invalid configuration: ${variable}:`);
      // the message never repeats a secret
      expect(result.stderr).not.toContain("long-random");
    });

    it.each([
      ["ADMIN_PORT", "start failed: Error: listen EADDRINUSE"],
      ["PORT", "Port \\d+ is already in use!: Error: listen EADDRINUSE"],
    ])(
      "says why a start failed (%s taken): the error and its stack, in the log and on stderr",
      async (variable, cause) => {
        // on every interface, as both listeners listen
        const busy: Server = createServer();
        await new Promise<void>((resolve) => busy.listen(0, resolve));
        cleanup.push(() => new Promise<void>((resolve) => busy.close(() => resolve())));
        const port = String((busy.address() as { port: number }).port);
        const result = await runToEnd(["start"], {
          DATA_DIR: tempDir(),
          SERVICES: "gateway",
          PORT: variable === "PORT" ? port : String(await freePort()),
          ...(variable === "ADMIN_PORT" ? { ADMIN_PORT: port } : {}),
          LOG_LEVEL: "fatal",
        });
        expect(result.code).toBe(1);
        expect(result.stderr).toMatch(new RegExp(`^ordermesh: ${cause}`, "m"));
        expect(result.stderr).toMatch(/\n\s+at /);
        // the JSON log line carries it as well
        expect(result.stdout).toMatch(new RegExp(`"msg":"${cause}.*\\\\n\\s+at `));
      },
    );
  });

  describe("ordermesh token", () => {
    it("prints a token that a gateway with the same JWT_SECRET, issuer and audience accepts", async () => {
      const port = await freePort();
      const issuer = "https://id.ordermesh.test";
      const audience = "ordermesh-api";
      const signing = { JWT_SECRET, JWT_ISSUER: issuer, JWT_AUDIENCE: audience };
      const gateway = track(
        runOrdermesh(["start"], {
          ...signing,
          PORT: String(port),
          DATA_DIR: tempDir(),
          AUTH_DEV_TOKENS: "false",
        }),
      );
      const alive = (): boolean => gateway.child.exitCode === null;
      await waitForHttp(`http://127.0.0.1:${port}/readyz`, (s) => s === 200, 60_000, alive);

      const customer = await runToEnd(["token", "--sub", "alice"], signing);
      expect(customer.code).toBe(0);
      expect(customer.stdout).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+\n$/);
      const token = customer.stdout.trim();
      const claims = claimsOf(token);
      expect(claims).toMatchObject({ sub: "alice", roles: ["customer"], iss: issuer, aud: audience });
      expect(Number(claims.exp) - Number(claims.iat)).toBe(3600);

      const orders = await fetch(`http://127.0.0.1:${port}/api/v1/orders`, {
        headers: { authorization: `Bearer ${token}` },
      });
      expect(orders.status).toBe(200);

      const admin = await runToEnd(
        ["token", "--sub=ops", "--role", "admin", "--role=customer", "--ttl", "15m"],
        signing,
      );
      expect(admin.code).toBe(0);
      const adminClaims = claimsOf(admin.stdout.trim());
      expect(adminClaims.roles).toEqual(["admin", "customer"]);
      expect(Number(adminClaims.exp) - Number(adminClaims.iat)).toBe(900);
      const all = await fetch(`http://127.0.0.1:${port}/api/v1/orders`, {
        headers: { authorization: `Bearer ${admin.stdout.trim()}` },
      });
      expect(all.status).toBe(200);

      // signed without the issuer and audience the gateway requires: refused
      const bare = await runToEnd(["token", "--sub", "alice"], { JWT_SECRET });
      const refused = await fetch(`http://127.0.0.1:${port}/api/v1/orders`, {
        headers: { authorization: `Bearer ${bare.stdout.trim()}` },
      });
      expect(refused.status).toBe(401);
    });

    it("needs JWT_SECRET: exit 78 naming it", async () => {
      const missing = await runToEnd(["token", "--sub", "alice"], {});
      expect(missing.code).toBe(78);
      expect(missing.stderr).toContain("invalid configuration: JWT_SECRET:");
      expect(missing.stdout).toBe("");
      const weak = await runToEnd(["token", "--sub", "alice"], {
        JWT_SECRET: "change-me-to-a-long-random-secret",
      });
      expect(weak.code).toBe(78);
      expect(weak.stderr).toContain("invalid configuration: JWT_SECRET: contains the placeholder");
    });

    it.each([
      [[]],
      [["--sub"]],
      [["--sub", "alice", "--role", "root"]],
      [["--sub", "alice", "--ttl", "soon"]],
      [["--sub", "alice", "--ttl", "500ms"]],
      [["--sub", "not a subject"]],
      [["--sub", "alice", "--sub", "bob"]],
      [["--sub", "alice", "extra"]],
    ])("refuses %j: exit 64 with the usage", async (args) => {
      const result = await runToEnd(["token", ...args], { JWT_SECRET });
      expect(result.code).toBe(64);
      expect(result.stderr).toContain("usage: ordermesh token --sub <id>");
      expect(result.stdout).toBe("");
    });
  });

  describe("admin listener and ordermesh probe", () => {
    it("answers the probes of a process without the gateway; readiness turns 503 on SIGTERM", async () => {
      const adminPort = await freePort();
      const proc = track(
        runOrdermesh(["start"], {
          SERVICES: "orders,inventory,payments,notifications",
          ADMIN_PORT: String(adminPort),
          PORT: String(await freePort()),
          DATA_DIR: tempDir(),
        }),
      );
      const alive = (): boolean => proc.child.exitCode === null;
      const base = `http://127.0.0.1:${adminPort}`;

      await waitForHttp(`${base}/startupz`, (s) => s === 200, 60_000, alive);
      const ready = await waitForHttp(`${base}/readyz`, (s) => s === 200, 30_000, alive);
      const body = JSON.parse(ready.body) as { status: string; checks: Record<string, { ok: boolean }> };
      expect(body.status).toBe("ready");
      expect(Object.keys(body.checks).sort()).toEqual(
        ["broker", "inventory", "notifications", "orders", "payments"].sort(),
      );
      expect(Object.values(body.checks).every((c) => c.ok)).toBe(true);
      const live = await fetch(`${base}/livez`);
      expect(live.status).toBe(200);
      expect(await live.json()).toEqual({ status: "ok" });
      expect((await fetch(`${base}/startupz`)).status).toBe(200);
      expect((await fetch(`${base}/metrics`)).status).toBe(404);
      expect((await fetch(`${base}/readyz`, { method: "POST" })).status).toBe(405);

      const env = { ADMIN_PORT: String(adminPort), SERVICES: "orders" };
      const readyz = await runToEnd(["probe", "readyz"], env);
      expect(readyz.code).toBe(0);
      expect(readyz.stdout).toMatch(/^readyz: 200 \{"status":"ready"/);
      expect(readyz.stdout.trim().split("\n")).toHaveLength(1);
      const livez = await runToEnd(["probe"], env);
      expect(livez.code).toBe(0);
      expect(livez.stdout).toBe('livez: 200 {"status":"ok"}\n');

      // SIGTERM: readiness turns 503 (or the listener is gone with the process), then exit 0
      proc.child.kill("SIGTERM");
      let seen = "";
      await waitFor(
        "/readyz to say 503 or the process to exit",
        async () => {
          try {
            const res = await fetch(`${base}/readyz`);
            seen = `${res.status} ${await res.text()}`;
            return res.status === 503;
          } catch {
            return !alive();
          }
        },
        20_000,
      );
      if (seen.startsWith("503")) expect(seen).toContain('"shutting down"');
      expect((await proc.exited).code).toBe(0);
    });

    it("exits 1 with one line when nothing answers, 64 on a bad probe, 78 with no port to ask", async () => {
      const closed = await freePort();
      const result = await runToEnd(["probe", "readyz"], { ADMIN_PORT: String(closed), SERVICES: "orders" });
      expect(result.code).toBe(1);
      expect(result.stderr).toBe(
        `readyz: no answer from http://127.0.0.1:${closed}/readyz (connect ECONNREFUSED 127.0.0.1:${closed})\n`,
      );
      // a process that runs the gateway is asked on its PORT, ADMIN_PORT or not
      const viaGateway = await runToEnd(["probe"], {
        PORT: String(closed),
        ADMIN_PORT: String(await freePort()),
      });
      expect(viaGateway.code).toBe(1);
      expect(viaGateway.stderr).toContain(`http://127.0.0.1:${closed}/livez`);

      const bad = await runToEnd(["probe", "healthz"], { ADMIN_PORT: String(closed), SERVICES: "orders" });
      expect(bad.code).toBe(64);
      expect(bad.stderr).toContain("usage: ordermesh probe");
      const nowhere = await runToEnd(["probe"], { SERVICES: "orders" });
      expect(nowhere.code).toBe(78);
      expect(nowhere.stderr).toContain("invalid configuration: ADMIN_PORT:");
    });

    it("exits 1 on a probe that answers 503", async () => {
      const server = createServer((_req, res) => {
        res.writeHead(503, { "content-type": "application/json" });
        res.end('{"status":"not_ready","checks":{"broker":{"ok":false,"error":"starting"}}}');
      });
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      cleanup.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
      const port = (server.address() as { port: number }).port;
      const result = await runToEnd(["probe", "readyz"], { ADMIN_PORT: String(port), SERVICES: "orders" });
      expect(result.code).toBe(1);
      expect(result.stderr).toBe(
        'readyz: 503 {"status":"not_ready","checks":{"broker":{"ok":false,"error":"starting"}}}\n',
      );
    });
  });

  describe("bin/psp-simulator", () => {
    const SIMULATOR_BIN = join(ORDERMESH_BIN, "..", "psp-simulator.js");

    it.each([
      [{ PSP_WEBHOOK_SECRET: "change-me-to-a-long-random-secret" }, "PSP_WEBHOOK_SECRET"],
      [{}, "PSP_WEBHOOK_SECRET"],
      [{ PSP_WEBHOOK_SECRET: WEBHOOK_SECRET, PORT: "99999" }, "PORT"],
    ])("refuses %j: exit 78 naming %s", async (env, variable) => {
      const result = await runToEnd([], { DATA_DIR: tempDir(), ...env }, SIMULATOR_BIN);
      expect(result.code).toBe(78);
      expect(result.stderr).toContain(`psp-simulator: invalid configuration: ${variable}:`);
    });

    it("refuses a DATA_DIR it cannot use, naming it", async () => {
      const file = join(tempDir(), "not-a-directory");
      writeFileSync(file, "");
      const result = await runToEnd(
        [],
        { DATA_DIR: join(file, "psp"), PSP_WEBHOOK_SECRET: WEBHOOK_SECRET },
        SIMULATOR_BIN,
      );
      expect(result.code).toBe(78);
      expect(result.stderr).toContain(
        `psp-simulator: invalid configuration: DATA_DIR: cannot use ${file}/psp: ENOTDIR`,
      );
    });

    it("says why a start failed", async () => {
      const busy: Server = createServer();
      await new Promise<void>((resolve) => busy.listen(0, "127.0.0.1", resolve));
      cleanup.push(() => new Promise<void>((resolve) => busy.close(() => resolve())));
      const port = (busy.address() as { port: number }).port;
      const result = await runToEnd(
        [],
        { DATA_DIR: tempDir(), PSP_WEBHOOK_SECRET: WEBHOOK_SECRET, PORT: String(port), HOST: "127.0.0.1" },
        SIMULATOR_BIN,
      );
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/psp-simulator: start failed: .*EADDRINUSE/);
    });
  });

  nats.describe("over NATS", () => {
    let server: NatsServerHandle;
    beforeAll(async () => {
      server = await startNatsServer();
    });
    afterAll(async () => {
      await server.stop();
    });

    /** Replicas of the EVENTS stream, as the server has them. */
    async function streamReplicas(): Promise<number> {
      const nc = await connect({ servers: server.url });
      try {
        const jsm = await nc.jetstreamManager();
        return (await jsm.streams.info("EVENTS")).config.num_replicas;
      } finally {
        await nc.close();
      }
    }

    it("creates the stream with JETSTREAM_REPLICAS; another count on an existing stream does not stop a start", async () => {
      const dataDir = tempDir();
      const adminPort = await freePort();
      const env = {
        SERVICES: "orders",
        NATS_URL: server.url,
        ADMIN_PORT: String(adminPort),
        DATA_DIR: dataDir,
        LOG_LEVEL: "info",
      };
      const first = track(runOrdermesh(["start"], { ...env, JETSTREAM_REPLICAS: "1" }));

      const ready = await waitForHttp(
        `http://127.0.0.1:${adminPort}/readyz`,
        (s) => s === 200,
        60_000,
        () => first.child.exitCode === null,
      );
      expect(JSON.parse(ready.body)).toMatchObject({
        checks: { transporter: { ok: true }, orders: { ok: true } },
      });
      expect(await streamReplicas()).toBe(1);
      expect((await first.stop()).code).toBe(0);

      // a single server cannot hold 3 replicas: it either takes the count (older servers) or refuses
      // it (newer ones); both are logged and the process runs on
      const second = track(runOrdermesh(["start"], { ...env, JETSTREAM_REPLICAS: "3" }));
      await waitForHttp(
        `http://127.0.0.1:${adminPort}/readyz`,
        (s) => s === 200,
        60_000,
        () => second.child.exitCode === null,
      );
      expect(second.output()).toMatch(
        /stream EVENTS: replicas changed from 1 to 3|stream EVENTS keeps 1 replica\(s\): changing them to 3/,
      );

      // NATS gone: not ready, with the failing checks named
      await server.kill();
      const notReady = await waitForHttp(
        `http://127.0.0.1:${adminPort}/readyz`,
        (s) => s === 503,
        30_000,
        () => second.child.exitCode === null,
      );
      const checks = (JSON.parse(notReady.body) as { checks: Record<string, { ok: boolean }> }).checks;
      expect(Object.entries(checks).filter(([, c]) => !c.ok).length).toBeGreaterThan(0);
      await server.restart();
    });
  });
});
