/**
 * Child process for test/fault/store-crash.spec.ts: opens an embedded store and commits
 * two-collection transactions in a loop until it is killed.
 *
 *   node dist/test/children/store-crash.child.js <file> small|large [full|normal]
 *
 * small: 8 concurrent writers; each transaction inserts `{ seq }` into `a` and into `b`, then prints
 *        `committed <seq>` once the commit has resolved.
 * large: one transaction at a time, each inserting 3,000 documents into `a` and 3,000 into `b` tagged
 *        with the batch number; prints `writing <batch>` before and `committed <batch>` after.
 * First line: `ready <next sequence>` (it continues after whatever a previous run left behind).
 */
import { EmbeddedDocumentStore } from "../../lib/store/embedded/embedded.adapter";

const WRITERS = 8;
const LARGE_BATCH = 3000;

function say(line: string): void {
  // Pipes are written synchronously on Linux: a printed line has left this process before the next step.
  process.stdout.write(`${line}\n`);
}

async function main(): Promise<void> {
  const [file, mode = "small", synchronous = "full"] = process.argv.slice(2);
  if (file === undefined || (mode !== "small" && mode !== "large")) {
    throw new Error("usage: store-crash.child <file> small|large [full|normal]");
  }
  const store = new EmbeddedDocumentStore({
    file,
    synchronous: synchronous === "normal" ? "normal" : "full",
  });
  await store.open();
  const last = await store.collection("a").findOne({}, { sort: { seq: -1 } });
  let next = typeof last?.seq === "number" ? last.seq + 1 : 1;
  say(`ready ${next}`);

  if (mode === "large") {
    for (;;) {
      const batch = next++;
      say(`writing ${batch}`);
      await store.transaction(async (tx) => {
        const docs = Array.from({ length: LARGE_BATCH }, (_, i) => ({
          _id: `b${batch}-${i}`,
          seq: batch,
          i,
          pad: "x".repeat(200),
        }));
        await tx.collection("a").insertMany(docs);
        await tx.collection("b").insertMany(docs);
      });
      say(`committed ${batch}`);
    }
  }

  const writer = async (): Promise<never> => {
    for (;;) {
      const seq = next++;
      await store.transaction(async (tx) => {
        await tx.collection("a").insertOne({ _id: `s${seq}`, seq, at: new Date() });
        await tx.collection("b").insertOne({ _id: `s${seq}`, seq });
      });
      say(`committed ${seq}`);
    }
  };
  await Promise.all(Array.from({ length: WRITERS }, writer));
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
