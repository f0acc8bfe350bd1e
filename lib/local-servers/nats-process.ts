/**
 * A `nats-server` child process with JetStream on a free port and its own store dir, for tests,
 * benchmarks and the local cluster launcher. Pure Node (no test framework).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, mkdtempSync, rmSync, type WriteStream } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "nats";
import { freePort } from "./ports";

export interface NatsProcessOptions {
  /** Path of the binary; default `$ORDERMESH_NATS_SERVER_BIN` or `nats-server` from PATH. */
  binary?: string;
  /** Listen address (default 127.0.0.1). */
  host?: string;
  /** Client port; a free one when omitted. */
  port?: number;
  /** JetStream store dir; a temp dir when omitted (removed by `stop()`). */
  storeDir?: string;
  /** Append the server's output to this file (otherwise only the last lines are kept for errors). */
  logFile?: string;
  /** How long to wait for the server to accept connections with JetStream ready (default 15 s). */
  startTimeoutMs?: number;
  /** Extra command-line arguments. */
  args?: string[];
}

export interface NatsProcess {
  /** `nats://host:port`. */
  readonly url: string;
  readonly port: number;
  readonly storeDir: string;
  /** Pid of the current server process, undefined while it is down. */
  readonly pid: number | undefined;
  /** True while the server process is alive. */
  readonly running: boolean;
  /** SIGTERM and wait for exit; removes the store dir when it was a temp dir. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILL and wait for exit; keeps the store dir so `restart()` recovers it. */
  kill(): Promise<void>;
  /** Start again on the same port with the same store dir (stopping it first when running). */
  restart(): Promise<void>;
  /** The last lines the server printed (for error messages). */
  output(): string;
}

const OUTPUT_KEEP_CHARS = 16_384;
const STOP_GRACE_MS = 10_000;
const START_ATTEMPTS = 3;

/** Start a JetStream-enabled `nats-server`; resolves once it accepts clients and JetStream answers. */
export async function startNatsProcess(options: NatsProcessOptions = {}): Promise<NatsProcess> {
  const host = options.host ?? "127.0.0.1";
  const binary = options.binary ?? process.env.ORDERMESH_NATS_SERVER_BIN ?? "nats-server";
  const ownsStoreDir = options.storeDir === undefined;
  const storeDir = options.storeDir ?? mkdtempSync(join(tmpdir(), "ordermesh-nats-"));
  let lastError: unknown;
  // a free port can be taken between probing and binding: retry with another one
  const attempts = options.port === undefined ? START_ATTEMPTS : 1;
  for (let attempt = 0; attempt < attempts; attempt++) {
    const port = options.port ?? (await freePort(host));
    const server = new NatsServerProcess({ ...options, binary, host, port, storeDir, ownsStoreDir });
    try {
      await server.start();
      return server;
    } catch (err) {
      lastError = err;
      await server.abandon();
      // only a port taken in the meantime is worth another try
      if (!/address already in use/i.test(errorText(err))) break;
    }
  }
  if (ownsStoreDir) rmSync(storeDir, { recursive: true, force: true });
  throw lastError;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

interface ResolvedOptions extends NatsProcessOptions {
  binary: string;
  host: string;
  port: number;
  storeDir: string;
  ownsStoreDir: boolean;
}

class NatsServerProcess implements NatsProcess {
  readonly url: string;
  readonly port: number;
  readonly storeDir: string;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private tail = "";
  private log: WriteStream | undefined;
  private stopped = false;
  private exitHooked = false;
  private readonly onProcessExit = (): void => {
    // the parent is exiting: never leave an orphan server behind
    this.child?.kill("SIGKILL");
    if (this.options.ownsStoreDir) rmSync(this.storeDir, { recursive: true, force: true });
  };

  constructor(private readonly options: ResolvedOptions) {
    this.port = options.port;
    this.storeDir = options.storeDir;
    this.url = `nats://${options.host}:${options.port}`;
  }

  get pid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  output(): string {
    return this.tail;
  }

  async start(): Promise<void> {
    if (this.running) return;
    if (this.log === undefined && this.options.logFile !== undefined) {
      this.log = createWriteStream(this.options.logFile, { flags: "a" });
    }
    const args = ["-a", this.options.host, "-p", String(this.port), "-js", "-sd", this.storeDir];
    const child = spawn(this.options.binary, [...args, ...(this.options.args ?? [])], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child = child;
    if (!this.exitHooked) {
      process.on("exit", this.onProcessExit);
      this.exitHooked = true;
    }
    const record = (chunk: Buffer): void => {
      this.tail = (this.tail + chunk.toString("utf8")).slice(-OUTPUT_KEEP_CHARS);
      this.log?.write(chunk);
    };
    child.stdout?.on("data", record);
    child.stderr?.on("data", record);
    this.exited = new Promise<void>((resolve) => {
      child.once("exit", () => resolve());
      child.once("error", (err) => {
        record(Buffer.from(`spawn ${this.options.binary}: ${err.message}\n`));
        resolve();
      });
    });
    await this.waitReady(child);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.terminate();
    this.unhookExit();
    await new Promise<void>((resolve) => (this.log === undefined ? resolve() : this.log.end(resolve)));
    this.log = undefined;
    if (this.options.ownsStoreDir) rmSync(this.storeDir, { recursive: true, force: true });
  }

  async kill(): Promise<void> {
    const child = this.child;
    if (child === undefined || !this.running) return;
    child.kill("SIGKILL");
    await this.exited;
  }

  /** Kill a server that failed to start, keeping the store dir for the caller to clean. */
  async abandon(): Promise<void> {
    this.stopped = true;
    await this.kill();
    this.unhookExit();
    this.log?.end();
    this.log = undefined;
  }

  private unhookExit(): void {
    if (!this.exitHooked) return;
    process.removeListener("exit", this.onProcessExit);
    this.exitHooked = false;
  }

  async restart(): Promise<void> {
    if (this.stopped) throw new Error(`nats-server on ${this.url} was stopped; start a new one`);
    await this.terminate();
    await this.start();
  }

  /** SIGTERM, then SIGKILL when it does not exit in time. */
  private async terminate(): Promise<void> {
    const child = this.child;
    if (child === undefined || !this.running) return;
    child.kill("SIGTERM");
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      this.exited.then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), STOP_GRACE_MS);
      }),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      child.kill("SIGKILL");
      await this.exited;
    }
  }

  /** Poll with a client until JetStream answers; fail early when the process exits. */
  private async waitReady(child: ChildProcess): Promise<void> {
    const deadline = Date.now() + (this.options.startTimeoutMs ?? 15_000);
    let exited = false;
    void this.exited.then(() => {
      exited = true;
    });
    let lastError: unknown;
    while (Date.now() < deadline) {
      if (exited || child.exitCode !== null) {
        throw new Error(`nats-server on ${this.url} exited during start:\n${this.tail}`);
      }
      try {
        const nc = await connect({ servers: this.url, reconnect: false, timeout: 1000 });
        try {
          const jsm = await nc.jetstreamManager({ timeout: 1000 });
          await jsm.getAccountInfo();
          return;
        } finally {
          await nc.close();
        }
      } catch (err) {
        lastError = err;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    throw new Error(
      `nats-server on ${this.url} not ready after ${this.options.startTimeoutMs ?? 15_000} ms ` +
        `(${String(lastError)}):\n${this.tail}`,
    );
  }
}
