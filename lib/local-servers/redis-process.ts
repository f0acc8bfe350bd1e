/**
 * A throwaway `redis-server` on a free local port, in its own temp dir, with no persistence.
 * Used by the test harness and by the local cluster launcher; plain Node, no test framework.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./ports";

export interface RedisProcessOptions {
  /** Path or name of the binary; default `redis-server` (looked up on PATH). */
  binary?: string;
  /** Port to listen on; default a free one. */
  port?: number;
  /** How long to wait for the first PONG; default 10 s. */
  startTimeoutMs?: number;
}

const HOST = "127.0.0.1";

/** The server exited while starting, e.g. because another process took the port first. */
class ExitedWhileStarting extends Error {}
const OUTPUT_TAIL_CHARS = 4000;
const STOP_GRACE_MS = 5000;

/**
 * PING then `INFO server` over a raw socket: the server's process id once it answers PONG,
 * null when nothing (or nothing sensible) answered in time.
 */
function probe(port: number, timeoutMs: number): Promise<number | null> {
  return new Promise((resolve) => {
    const socket = connect({ host: HOST, port });
    let reply = "";
    const finish = (pid: number | null): void => {
      socket.destroy();
      resolve(pid);
    };
    socket.setTimeout(timeoutMs, () => finish(null));
    socket.once("error", () => finish(null));
    socket.once("close", () => finish(null));
    socket.once("connect", () => socket.write("PING\r\nINFO server\r\n"));
    socket.on("data", (chunk: Buffer) => {
      reply += chunk.toString("utf8");
      if (!reply.startsWith("+PONG\r\n")) {
        if (reply.includes("\r\n")) finish(null);
        return;
      }
      const match = /process_id:(\d+)\r\n/.exec(reply);
      if (match?.[1] !== undefined) finish(Number(match[1]));
    });
  });
}

// Children still alive when this process exits are killed, so a crashed test run leaves no server behind.
const live = new Map<ChildProcess, string>();
let exitHookInstalled = false;
function track(child: ChildProcess, dir: string): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once("exit", () => {
      for (const [orphan, orphanDir] of live) {
        orphan.kill("SIGKILL");
        rmSync(orphanDir, { recursive: true, force: true });
      }
    });
  }
  live.set(child, dir);
  child.once("exit", () => live.delete(child));
}

/** A `redis-server` this process started; `restart()` brings it back on the same port. */
export interface RedisProcess {
  readonly port: number;
  /** `redis://127.0.0.1:<port>` */
  readonly url: string;
  /** Its working dir (a fresh temp dir). */
  readonly dir: string;
  /** Process id while running, else undefined. */
  readonly pid: number | undefined;
  readonly running: boolean;
  /** Graceful shutdown (SIGTERM, SIGKILL after a grace period), then the temp dir is removed. */
  stop(): Promise<void>;
  /** `kill -9`: the server dies without a word; the dir stays for `restart()`. */
  kill(): Promise<void>;
  /** Stops the server if it runs, then starts it again on the same port (empty: nothing is persisted). */
  restart(): Promise<void>;
  pause(): void;
  /** SIGCONT after `pause()`. */
  resume(): void;
  /** The last few KB the server printed. */
  output(): string;
}

/**
 * Spawns `redis-server --port <free> --bind 127.0.0.1 --save "" --appendonly no --dir <tmp>` and
 * resolves once it answers PING. Without a given port it retries on a fresh one if it loses a bind race.
 */
export async function startRedisProcess(options: RedisProcessOptions = {}): Promise<RedisProcess> {
  const binary = options.binary ?? "redis-server";
  const startTimeoutMs = options.startTimeoutMs ?? 10_000;
  const attempts = options.port === undefined ? 3 : 1;
  let lastError: unknown;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    const port = options.port ?? (await freePort());
    const dir = await mkdtemp(join(tmpdir(), "ordermesh-redis-"));
    const server = new RedisServerProcess(binary, port, dir, startTimeoutMs);
    try {
      await server.start();
      return server;
    } catch (error) {
      lastError = error;
      await server.stop();
      if (!(error instanceof ExitedWhileStarting)) break;
    }
  }
  throw lastError;
}

class RedisServerProcess implements RedisProcess {
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  private tail = "";

  constructor(
    private readonly binary: string,
    readonly port: number,
    readonly dir: string,
    private readonly startTimeoutMs: number,
  ) {}

  get url(): string {
    return `redis://${HOST}:${this.port}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== null;
  }

  async stop(): Promise<void> {
    await this.terminate();
    await rm(this.dir, { recursive: true, force: true });
  }

  async kill(): Promise<void> {
    const child = this.child;
    if (child === null) return;
    child.kill("SIGKILL");
    await this.exited;
  }

  async restart(): Promise<void> {
    await this.terminate();
    await this.start();
  }

  pause(): void {
    this.child?.kill("SIGSTOP");
  }

  resume(): void {
    this.child?.kill("SIGCONT");
  }

  output(): string {
    return this.tail;
  }

  private async terminate(): Promise<void> {
    const child = this.child;
    if (child === null) return;
    // A paused server would hold SIGTERM pending forever.
    child.kill("SIGCONT");
    child.kill("SIGTERM");
    const grace = setTimeout(() => child.kill("SIGKILL"), STOP_GRACE_MS);
    try {
      await this.exited;
    } finally {
      clearTimeout(grace);
    }
  }

  /** Spawns the server and waits until it, and not some other process, answers on the port. */
  async start(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    this.tail = "";
    const args = [
      "--port",
      String(this.port),
      "--bind",
      HOST,
      "--save",
      "",
      "--appendonly",
      "no",
      "--dir",
      this.dir,
    ];
    const child = spawn(this.binary, args, { cwd: this.dir, stdio: ["ignore", "pipe", "pipe"] });
    this.child = child;
    track(child, this.dir);
    const keepTail = (chunk: Buffer): void => {
      this.tail = (this.tail + chunk.toString("utf8")).slice(-OUTPUT_TAIL_CHARS);
    };
    child.stdout?.on("data", keepTail);
    child.stderr?.on("data", keepTail);
    const ended: { early: { description: string; spawnFailed: boolean } | null } = { early: null };
    this.exited = new Promise((resolve) => {
      const onGone = (description: string, spawnFailed: boolean): void => {
        ended.early = { description, spawnFailed };
        if (this.child === child) this.child = null;
        resolve();
      };
      child.once("exit", (code, signal) => onGone(`exited (code ${code}, signal ${signal})`, false));
      // spawn failures (ENOENT) emit "error" and no "exit"
      child.once("error", (error) => onGone(`failed to start: ${error.message}`, true));
    });

    const deadline = Date.now() + this.startTimeoutMs;
    while (Date.now() < deadline) {
      const early = ended.early;
      if (early !== null) {
        const message = `redis-server on port ${this.port} ${early.description}:\n${this.tail}`;
        throw early.spawnFailed ? new Error(message) : new ExitedWhileStarting(message);
      }
      // Whoever answers must be our child, not another server that won the port.
      const pid = await probe(this.port, 500);
      if (pid !== null && pid === child.pid) return;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    throw new Error(
      `redis-server on port ${this.port} did not answer PING within ${this.startTimeoutMs} ms:\n${this.tail}`,
    );
  }
}
