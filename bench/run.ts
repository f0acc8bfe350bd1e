/**
 * `npm run bench [-- <name>…]`: runs the named benchmarks (default: all) one after another and
 * prints each report. Figures are recorded in docs/benchmarks.md.
 */
import { cpus } from "node:os";
import { run as busBenchmark } from "./bus.bench";
import { run as ordersBenchmark } from "./orders.bench";
import { run as outboxBenchmark } from "./outbox.bench";
import { run as storeBenchmark } from "./store.bench";

const BENCHMARKS: Record<string, () => Promise<void>> = {
  store: storeBenchmark,
  bus: busBenchmark,
  outbox: outboxBenchmark,
  orders: ordersBenchmark,
};

async function main(names: string[]): Promise<void> {
  const selected = names.length > 0 ? names : Object.keys(BENCHMARKS);
  const unknown = selected.filter((n) => !(n in BENCHMARKS));
  if (unknown.length > 0) {
    console.error(`unknown benchmark ${unknown.join(", ")}; known: ${Object.keys(BENCHMARKS).join(", ")}`);
    process.exit(64);
  }
  console.log(`ordermesh benchmarks on Node ${process.version}, ${cpus().length} cores`);
  for (const name of selected) await BENCHMARKS[name]?.();
}

main(process.argv.slice(2)).then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
