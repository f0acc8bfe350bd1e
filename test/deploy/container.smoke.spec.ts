/**
 * The production path for real: the image built from the real Dockerfile, the real compose file
 * (MongoDB swapped for the embedded store where no MongoDB image exists), an order through the
 * gateway container, a crash of the payments container mid-flow, and a clean stop.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Api, type OrderBody } from "../support/api";
import { APP_SERVICES, REPO_ROOT, resolvedComposeFile } from "../support/compose-stack";
import { openEngine, planEngine, runCommand, type DockerEngine } from "../support/docker-engine";
import { freePort } from "../support/ports";
import { waitFor } from "../support/wait";

const plan = planEngine();
const describeWithDocker: jest.Describe = (() => {
  if (plan.kind !== "none") return describe;
  const message = `container smoke test: ${plan.reason}`;
  if (process.env.CI === "true") {
    // under CI a missing engine is a failure, never a silent skip
    return ((title: string) =>
      describe(title, () => {
        it("needs a Docker engine", () => {
          throw new Error(`CI=true and ${message}`);
        });
      })) as unknown as jest.Describe;
  }
  process.stderr.write(`\n!!! SKIPPING the container smoke test: ${message}\n\n`);
  return describe.skip;
})();

const log = (line: string): void => void process.stderr.write(`smoke: ${line}\n`);

interface NotificationBody {
  orderId: string;
  type: string;
  channel: string;
  status: string;
}

interface PaymentBody {
  id: string;
  status: string;
}

interface ContainerState {
  User: string;
  ReadonlyRootfs: boolean;
  CapDrop: string[] | null;
  SecurityOpt: string[] | null;
  RestartCount: number;
  Running: boolean;
  ExitCode: number;
  Pid: number;
}

/** SIGKILL of a container's process from the host, as root or through sudo (a CI runner). */
async function crash(pid: number): Promise<void> {
  try {
    process.kill(pid, "SIGKILL");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EPERM") throw err;
    await runCommand(["sudo", "-n", "kill", "-9", String(pid)], process.env);
  }
}

describeWithDocker("container image and compose stack", () => {
  jest.setTimeout(20 * 60_000);

  let engine: DockerEngine;
  let workDir: string;
  let project: string;
  let composeFile: string;
  let api: Api;
  let token: string;
  const timings: Record<string, number> = {};

  const compose = (args: readonly string[], allowFailure = false) =>
    engine.composeRun(["-p", project, "-f", composeFile, ...args], allowFailure);

  async function timed<T>(name: string, step: () => Promise<T>): Promise<T> {
    const started = Date.now();
    log(`${name}…`);
    try {
      return await step();
    } finally {
      timings[name] = Date.now() - started;
      log(`${name}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    }
  }

  async function containerOf(service: string): Promise<string> {
    const { stdout } = await compose(["ps", "-q", service]);
    const id = stdout.trim().split("\n")[0] ?? "";
    if (id === "") throw new Error(`no container for ${service}`);
    return id;
  }

  async function stateOf(service: string): Promise<ContainerState> {
    const id = await containerOf(service);
    const { stdout } = await engine.docker([
      "inspect",
      "-f",
      "{{json .Config.User}}|{{json .HostConfig.ReadonlyRootfs}}|{{json .HostConfig.CapDrop}}|" +
        "{{json .HostConfig.SecurityOpt}}|{{.RestartCount}}|{{.State.Running}}|{{.State.ExitCode}}|{{.State.Pid}}",
      id,
    ]);
    const [user, readonly, capDrop, securityOpt, restarts, running, exitCode, pid] = stdout.trim().split("|");
    return {
      User: JSON.parse(user ?? "null") as string,
      ReadonlyRootfs: JSON.parse(readonly ?? "false") as boolean,
      CapDrop: JSON.parse(capDrop ?? "null") as string[] | null,
      SecurityOpt: JSON.parse(securityOpt ?? "null") as string[] | null,
      RestartCount: Number(restarts),
      Running: running === "true",
      ExitCode: Number(exitCode),
      Pid: Number(pid),
    };
  }

  beforeAll(async () => {
    if (plan.kind === "none") return;
    engine = await timed("engine", () => openEngine(plan, log));
    workDir = mkdtempSync(join(tmpdir(), "ordermesh-smoke-"));
    project = `ordermesh-smoke-${process.pid}`;
    const port = await freePort();
    Object.assign(engine.env, {
      JWT_SECRET: randomBytes(32).toString("hex"),
      PSP_WEBHOOK_SECRET: randomBytes(32).toString("hex"),
      SEED_DEMO: "true",
      ORDERMESH_HTTP_PORT: String(port),
      ORDERMESH_TAG: "smoke",
    });
    await timed("base images", () =>
      runCommand(["bash", join(REPO_ROOT, "deploy", "base-images", "build.sh")], engine.env),
    );
    const mongoImage = await engine.docker(["image", "inspect", "mongo:8"], true);
    const resolved = await resolvedComposeFile(engine, workDir, mongoImage.code !== 0);
    composeFile = resolved.path;
    if (mongoImage.code !== 0)
      log("no mongo:8 image here: MongoDB left out, every service on its embedded store");
    await timed("image build", () => compose(["build"]));
    await timed("stack up", () => compose(["up", "-d"]));
    api = new Api(`http://127.0.0.1:${port}`, "");
    await timed("ready", () =>
      waitFor(
        "the gateway's /readyz through the published port",
        async () => (await fetch(`${api.base}/readyz`).catch(() => undefined))?.status === 200,
        180_000,
      ),
    );
  });

  afterAll(async () => {
    if (plan.kind === "none" || engine === undefined) return;
    if (composeFile !== undefined) {
      const logs = await compose(["logs", "--no-color", "--tail", "40"], true);
      if (process.env.ORDERMESH_SMOKE_LOGS === "1") log(logs.stdout);
      await compose(["down", "-v", "--remove-orphans", "-t", "5"], true);
    }
    await engine.close();
    if (workDir !== undefined) rmSync(workDir, { recursive: true, force: true });
    log(`timings (ms): ${JSON.stringify(timings)}`);
  });

  it("runs the image alone, hardened as documented, to ready; SIGTERM stops it with exit 0", async () => {
    const port = await freePort();
    const name = `${project}-alone`;
    const volume = `${project}-alone-data`;
    try {
      await engine.docker([
        "run",
        "-d",
        "--name",
        name,
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--user",
        "1000:1000",
        "-v",
        `${volume}:/data`,
        "-p",
        `127.0.0.1:${port}:3000`,
        `ordermesh:${engine.env.ORDERMESH_TAG ?? ""}`,
      ]);
      await waitFor(
        "/readyz of the image run alone",
        async () => (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined))?.status === 200,
        120_000,
      );
      await engine.docker(["stop", "-t", "35", name]);
      const exit = await engine.docker(["inspect", "-f", "{{.State.ExitCode}}", name]);
      expect(exit.stdout.trim()).toBe("0");
    } finally {
      await engine.docker(["rm", "-f", "-v", name], true);
      await engine.docker(["volume", "rm", "-f", volume], true);
    }
  });

  it("issues a token with `ordermesh token` from the gateway container", async () => {
    const { stdout } = await compose([
      "run",
      "--rm",
      "-T",
      "--no-deps",
      "gateway",
      "token",
      "--sub",
      "alice",
    ]);
    token = stdout.trim().split("\n").pop() ?? "";
    expect(token).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    const res = await api.request("GET", "/api/v1/orders", { token });
    expect(res.status).toBe(200);
  });

  it("places an order through the gateway container: PAID, with its notification", async () => {
    const placed = await api.placeOrder(token, [{ sku: "MUG-BLUE", quantity: 1 }]);
    expect(placed.status).toBe(201);
    const paid = await api.waitForOrder(token, placed.body.id, ["PAID", "CANCELLED"], 90_000);
    expect(paid.status).toBe("PAID");
    await waitFor(
      "the order.paid notification",
      async () => {
        const res = await api.request<{ items: NotificationBody[] }>(
          "GET",
          "/api/v1/notifications?limit=100",
          {
            token,
          },
        );
        return res.body.items.some(
          (n) => n.orderId === paid.id && n.type === "order.paid" && n.status === "sent",
        );
      },
      60_000,
    );
  });

  it("survives a crash of the payments container mid-flow: restarted by its policy, the order paid once", async () => {
    const before = await stateOf("payments");
    // a slow card keeps the charge in flight while the process dies
    const placed = await api.placeOrder(
      token,
      [{ sku: "MUG-BLUE", quantity: 1 }],
      "pm_card_slow",
      randomUUID(),
    );
    expect(placed.status).toBe(201);
    // a crash, not `docker kill`: Docker counts a kill as a manual stop and never restarts it
    await crash(before.Pid);
    await timed("payments restart", () =>
      waitFor(
        "the payments container restarted by its restart policy",
        async () => {
          const now = await stateOf("payments");
          return now.RestartCount > before.RestartCount && now.Running;
        },
        120_000,
      ),
    );
    const order: OrderBody = await api.waitForOrder(token, placed.body.id, ["PAID", "CANCELLED"], 180_000);
    expect(order.status).toBe("PAID");
    expect(order.statusHistory.map((s) => s.status)).toEqual(["PENDING_PAYMENT", "PAID"]);
    const payments = await api.request<{ items: PaymentBody[] }>(
      "GET",
      `/api/v1/payments?orderId=${order.id}`,
      {
        token,
      },
    );
    expect(payments.body.items.map((p) => p.status)).toEqual(["captured"]);
  });

  it("runs every ordermesh container as 1000:1000 on a read-only root, without capabilities", async () => {
    for (const service of APP_SERVICES) {
      const state = await stateOf(service);
      expect({ service, user: state.User, readonly: state.ReadonlyRootfs }).toEqual({
        service,
        user: "1000:1000",
        readonly: true,
      });
      expect(state.CapDrop).toContain("ALL");
      expect(state.SecurityOpt).toEqual(
        expect.arrayContaining([expect.stringMatching(/^no-new-privileges/)]),
      );
      const id = await containerOf(service);
      // the process itself (pid 1), not only a command run beside it
      const status = await engine.docker(["exec", id, "cat", "/proc/1/status"]);
      expect(status.stdout).toMatch(/^Uid:\s+1000\s+1000\s+1000\s+1000$/m);
      expect(status.stdout).toMatch(/^Gid:\s+1000\s+1000\s+1000\s+1000$/m);
      const write = await engine.docker(["exec", id, "touch", "/app/written"], true);
      expect(write.code).not.toBe(0);
      expect(write.stderr).toMatch(/Read-only file system/);
    }
  });

  it("publishes only the gateway, on 127.0.0.1", async () => {
    const { stdout } = await compose(["ps", "--services"]);
    const published: Record<string, string[]> = {};
    for (const service of stdout.trim().split("\n")) {
      const id = await containerOf(service);
      const ports = await engine.docker(["inspect", "-f", "{{json .HostConfig.PortBindings}}", id]);
      const bindings = (JSON.parse(ports.stdout) ?? {}) as Record<string, { HostIp: string }[] | null>;
      const hosts = Object.values(bindings).flatMap((list) => (list ?? []).map((b) => b.HostIp));
      if (hosts.length > 0) published[service] = hosts;
    }
    expect(published).toEqual({ gateway: ["127.0.0.1"] });
  });

  it("refuses to start without its secrets, and a container refuses a placeholder one (exit 78)", async () => {
    const withoutSecret = { ...engine.env };
    delete withoutSecret.JWT_SECRET;
    const unset = await runCommand(
      [...engine.compose, "-f", join(REPO_ROOT, "docker-compose.yml"), "config", "-q"],
      withoutSecret,
      true,
    );
    expect(unset.code).not.toBe(0);
    expect(unset.stderr).toContain("set JWT_SECRET in .env");
    const placeholder = await compose(
      ["run", "--rm", "-T", "--no-deps", "-e", "JWT_SECRET=change-me-to-a-long-random-secret", "orders"],
      true,
    );
    expect(placeholder.code).toBe(78);
    expect(placeholder.stderr).toContain("invalid configuration: JWT_SECRET");
  });

  it("stops every container with exit code 0 within its grace period", async () => {
    const ids = new Map<string, string>();
    const { stdout } = await compose(["ps", "--services"]);
    for (const service of stdout.trim().split("\n")) ids.set(service, await containerOf(service));
    await timed("stop", () => compose(["stop"]));
    const exits: Record<string, number> = {};
    for (const [service, id] of ids) {
      const inspected = await engine.docker(["inspect", "-f", "{{.State.ExitCode}}", id]);
      exits[service] = Number(inspected.stdout.trim());
    }
    // a container still running at the end of its stop_grace_period is SIGKILLed: exit 137
    expect(exits).toEqual(Object.fromEntries([...ids.keys()].map((service) => [service, 0])));
  });
});
