/**
 * The embedded store under `kill -9`: a child commits two-collection transactions in a loop and is
 * killed at random moments; after each kill the file is reopened and must hold every transaction the
 * child reported as committed, and every transaction entirely or not at all.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EmbeddedDocumentStore } from "../../lib/store/embedded/embedded.adapter";

const CHILD = join(__dirname, "..", "..", "dist", "test", "children", "store-crash.child.js");

interface Run {
  /** Numbers the child printed after `committed`. */
  committed: number[];
  /** Numbers the child printed after `writing` (large mode). */
  writing: number[];
  /** Resolves when the child has printed at least `n` `committed` lines (rejects if it dies first). */
  committedAtLeast(n: number): Promise<void>;
  /** Resolves when the child has printed a `writing` line for a batch after `batch`. */
  writingAfter(batch: number): Promise<number>;
  /** SIGKILLs the child and resolves once it is gone and its output is drained. */
  kill(): Promise<void>;
}

function start(file: string, mode: "small" | "large", synchronous: "full" | "normal"): Run {
  const child = spawn(process.execPath, [CHILD, file, mode, synchronous], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const committed: number[] = [];
  const writing: number[] = [];
  let stderr = "";
  let buffered = "";
  let killed = false;
  const waiters = new Set<() => void>();
  const exited = new Promise<void>((resolve) => child.on("close", () => resolve()));
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    buffered += chunk;
    const lines = buffered.split("\n");
    buffered = lines.pop() ?? "";
    for (const line of lines) {
      const [word, value] = line.split(" ");
      if (word === "committed") committed.push(Number(value));
      if (word === "writing") writing.push(Number(value));
    }
    for (const wake of [...waiters]) wake();
  });
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  const until = <T>(check: () => T | undefined, what: string): Promise<T> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => fail(new Error(`timed out waiting for ${what}; stderr: ${stderr}`)),
        20_000,
      );
      const onExit = (): void => fail(new Error(`child exited while waiting for ${what}; stderr: ${stderr}`));
      const fail = (error: Error): void => {
        cleanup();
        reject(error);
      };
      const wake = (): void => {
        const value = check();
        if (value === undefined) return;
        cleanup();
        resolve(value);
      };
      const cleanup = (): void => {
        clearTimeout(timer);
        waiters.delete(wake);
        child.off("exit", onExit);
      };
      if (!killed) child.on("exit", onExit);
      waiters.add(wake);
      wake();
    });
  return {
    committed,
    writing,
    committedAtLeast: (n) =>
      until(() => (committed.length >= n ? true : undefined), `${n} commits`).then(() => {}),
    writingAfter: (batch) =>
      until(() => writing.find((b) => b > batch), `a batch after ${batch} to start being written`),
    kill: async () => {
      killed = true;
      child.kill("SIGKILL");
      await exited;
    },
  };
}

interface Contents {
  a: Map<number, number>;
  b: Map<number, number>;
  /** Documents whose fields do not match their id (a torn write would show here). */
  malformed: string[];
}

/** Reopens the file and counts documents per sequence number in each collection. */
async function inspect(file: string): Promise<Contents> {
  const store = new EmbeddedDocumentStore({ file });
  await store.open();
  try {
    const contents: Contents = { a: new Map(), b: new Map(), malformed: [] };
    for (const name of ["a", "b"] as const) {
      for (const doc of await store.collection(name).find({})) {
        const seq = doc.seq;
        const wellFormed =
          typeof seq === "number" &&
          (doc._id === `s${seq}` || (doc._id === `b${seq}-${String(doc.i)}` && doc.pad === "x".repeat(200)));
        if (!wellFormed) contents.malformed.push(`${name}/${doc._id}`);
        if (typeof seq === "number") contents[name].set(seq, (contents[name].get(seq) ?? 0) + 1);
      }
    }
    return contents;
  } finally {
    await store.close();
  }
}

function randomInt(min: number, max: number): number {
  return min + Math.floor(Math.random() * (max - min + 1));
}

describe("embedded store under kill -9", () => {
  let dir: string;

  beforeAll(() => {
    if (!existsSync(CHILD)) throw new Error(`${CHILD} is missing: run \`npm run build\` first`);
    dir = mkdtempSync(join(tmpdir(), "ordermesh-store-crash-"));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it.each(["full", "normal"] as const)(
    "keeps every reported commit and every transaction whole across 4 kills (synchronous=%s)",
    async (synchronous) => {
      const file = join(dir, `small-${synchronous}.db`);
      const everCommitted = new Set<number>();
      for (let round = 0; round < 4; round++) {
        const run = start(file, "small", synchronous);
        await run.committedAtLeast(randomInt(20, 400));
        await run.kill();
        for (const seq of run.committed) everCommitted.add(seq);

        const { a, b, malformed } = await inspect(file);
        expect(malformed).toEqual([]);
        const missing = [...everCommitted].filter((seq) => !a.has(seq) || !b.has(seq));
        expect({ round, missing }).toEqual({ round, missing: [] });
        // All-or-nothing: the same sequences in both collections, once each.
        expect([...a.keys()].sort((x, y) => x - y)).toEqual([...b.keys()].sort((x, y) => x - y));
        expect([...a.values(), ...b.values()].every((n) => n === 1)).toBe(true);
      }
      expect(everCommitted.size).toBeGreaterThanOrEqual(80);
    },
  );

  it("keeps large transactions (6,000 documents each) whole when killed while writing them", async () => {
    const file = join(dir, "large.db");
    const everCommitted = new Set<number>();
    for (let round = 0; round < 3; round++) {
      const run = start(file, "large", "full");
      // Let one batch commit, then kill at a random moment while a later one is being built or written.
      await run.committedAtLeast(1);
      const batch = await run.writingAfter(Math.max(...run.committed));
      await new Promise((resolve) => setTimeout(resolve, randomInt(0, 40)));
      await run.kill();
      for (const seq of run.committed) everCommitted.add(seq);

      const { a, b, malformed } = await inspect(file);
      expect(malformed).toEqual([]);
      for (const seq of everCommitted)
        expect({ seq, a: a.get(seq), b: b.get(seq) }).toEqual({ seq, a: 3000, b: 3000 });
      // The batch in flight at the kill: entirely there or entirely absent, in both collections.
      expect([0, 3000]).toContain(a.get(batch) ?? 0);
      expect(b.get(batch) ?? 0).toBe(a.get(batch) ?? 0);
      for (const [seq, n] of a) expect({ seq, n, b: b.get(seq) }).toEqual({ seq, n: 3000, b: 3000 });
    }
    expect(everCommitted.size).toBeGreaterThanOrEqual(3);
  });
});
