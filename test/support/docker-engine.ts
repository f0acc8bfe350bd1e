/**
 * A Docker engine for the container smoke test: the one the environment points at (DOCKER_HOST,
 * or the default socket) when it answers, else a dockerd of the test's own (root and Debian's
 * docker.io needed), with a persistent data root so built images stay cached between runs.
 * Without either the suite skips with a loud notice, and fails under CI=true.
 */
import { execFile, execFileSync, spawn } from "node:child_process";
import { mkdirSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { findBinary } from "./infra";

/** Where the test's own dockerd keeps its images (kept between runs) and its socket. */
const OWN_ROOT = process.env.ORDERMESH_TEST_DOCKER_ROOT ?? "/var/lib/ordermesh-test-docker";
const OWN_RUN = "/run/ordermesh-test-docker";
const OWN_HOST = `unix://${OWN_RUN}/docker.sock`;

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface DockerEngine {
  /** The environment every docker and compose command runs with (DOCKER_HOST set). */
  env: NodeJS.ProcessEnv;
  /** The compose command: `docker compose` (v2) or `docker-compose` (v1). */
  compose: readonly string[];
  /** `docker <args>`; rejects on a non-zero exit unless `allowFailure`. */
  docker(args: readonly string[], allowFailure?: boolean): Promise<CommandResult>;
  /** The compose command with `args`. */
  composeRun(args: readonly string[], allowFailure?: boolean): Promise<CommandResult>;
  /** Stops the dockerd this module started (no-op for an engine that was already running). */
  close(): Promise<void>;
}

export type EnginePlan =
  | { kind: "existing"; env: NodeJS.ProcessEnv; compose: readonly string[] }
  | { kind: "own"; env: NodeJS.ProcessEnv; compose: readonly string[]; dockerd: string }
  | { kind: "none"; reason: string };

/** Decides, synchronously (suites are chosen at load time), which engine the suite will use. */
export function planEngine(): EnginePlan {
  if (findBinary("docker") === null)
    return { kind: "none", reason: "no docker client (apt-get install docker.io)" };
  const compose = composeCommand();
  if (compose === null)
    return {
      kind: "none",
      reason: "neither `docker compose` nor docker-compose (apt-get install docker-compose)",
    };
  if (answers(process.env)) return { kind: "existing", env: { ...process.env }, compose };
  const ownEnv = { ...process.env, DOCKER_HOST: OWN_HOST };
  if (answers(ownEnv)) return { kind: "existing", env: ownEnv, compose };
  const dockerd = findBinary("dockerd");
  if (dockerd === null || process.getuid?.() !== 0)
    return {
      kind: "none",
      reason:
        "no Docker engine answers, and none can be started here (needs root and dockerd: apt-get install docker.io)",
    };
  return { kind: "own", env: ownEnv, compose, dockerd };
}

/** Opens the planned engine, starting the test's own dockerd when needed. */
export async function openEngine(
  plan: Exclude<EnginePlan, { kind: "none" }>,
  log: (line: string) => void,
): Promise<DockerEngine> {
  let daemon: ReturnType<typeof spawn> | undefined;
  if (plan.kind === "own") {
    mkdirSync(join(OWN_ROOT, "data"), { recursive: true });
    mkdirSync(OWN_RUN, { recursive: true });
    const logFile = join(OWN_ROOT, "dockerd.log");
    log(`starting dockerd (data root ${OWN_ROOT}/data, log ${logFile})`);
    const out = openSync(logFile, "a");
    daemon = spawn(
      plan.dockerd,
      [
        "--data-root",
        join(OWN_ROOT, "data"),
        "--exec-root",
        join(OWN_RUN, "exec"),
        "--pidfile",
        join(OWN_RUN, "dockerd.pid"),
        "-H",
        OWN_HOST,
      ],
      { stdio: ["ignore", out, out], detached: true },
    );
    const deadline = Date.now() + 60_000;
    while (!answers(plan.env)) {
      if (daemon.exitCode !== null || Date.now() > deadline) {
        const tail = readFileSync(logFile, "utf8").split("\n").slice(-15).join("\n");
        throw new Error(`dockerd did not come up:\n${tail}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
  const run = (command: readonly string[], allowFailure = false): Promise<CommandResult> =>
    runCommand(command, plan.env, allowFailure);
  return {
    env: plan.env,
    compose: plan.compose,
    docker: (args, allowFailure) => run(["docker", ...args], allowFailure),
    composeRun: (args, allowFailure) => run([...plan.compose, ...args], allowFailure),
    async close() {
      if (daemon === undefined || daemon.exitCode !== null) return;
      const exited = new Promise<void>((resolve) => daemon?.once("exit", () => resolve()));
      daemon.kill("SIGTERM");
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 30_000))]);
      if (daemon.exitCode === null) daemon.kill("SIGKILL");
      log("dockerd stopped");
    },
  };
}

/** Runs `command` (argv) to its end; long outputs are kept whole. */
export function runCommand(
  command: readonly string[],
  env: NodeJS.ProcessEnv,
  allowFailure = false,
  cwd?: string,
): Promise<CommandResult> {
  const [file, ...args] = command;
  if (file === undefined) throw new Error("empty command");
  return new Promise((resolve, reject) => {
    execFile(file, args, { env, cwd, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === "number" ? err.code : 1;
      const result = { code, stdout, stderr };
      if (code !== 0 && !allowFailure) {
        reject(
          new Error(`${command.join(" ")} exited ${code}:\n${stderr.slice(-4000)}${stdout.slice(-2000)}`),
        );
      } else resolve(result);
    });
  });
}

/** True when the engine at `env`'s DOCKER_HOST (or the default socket) answers within 10 s. */
function answers(env: NodeJS.ProcessEnv): boolean {
  try {
    execFileSync("docker", ["version", "--format", "{{.Server.Version}}"], {
      env,
      stdio: "pipe",
      timeout: 10_000,
    });
    return true;
  } catch {
    return false;
  }
}

function composeCommand(): readonly string[] | null {
  try {
    execFileSync("docker", ["compose", "version"], { stdio: "pipe", timeout: 10_000 });
    return ["docker", "compose"];
  } catch {
    return findBinary("docker-compose") === null ? null : ["docker-compose"];
  }
}
