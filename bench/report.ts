/** Small helpers shared by the benchmarks: timing, percentiles and a printed report. */

/** Percentile (0..100) of an unsorted sample, nearest-rank. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] as number;
}

/** High-resolution now in milliseconds. */
export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

export interface Measurement {
  name: string;
  operations: number;
  elapsedMs: number;
  /** Per-operation latencies in ms, when measured. */
  latenciesMs?: number[];
  note?: string;
}

/** Operations per second of a measurement. */
export function throughput(m: Measurement): number {
  return (m.operations / m.elapsedMs) * 1000;
}

/** Print a table of measurements, with ratios against `baseline` (a measurement name) when given. */
export function printReport(title: string, rows: Measurement[], baseline?: string): void {
  const base = baseline === undefined ? undefined : rows.find((r) => r.name === baseline);
  console.log(`\n== ${title}`);
  console.log(
    [
      "case".padEnd(44),
      "ops".padStart(8),
      "ops/s".padStart(10),
      "p50 ms".padStart(8),
      "p99 ms".padStart(8),
      "vs base".padStart(8),
    ].join(" "),
  );
  for (const r of rows) {
    const lat = r.latenciesMs ?? [];
    const ratio = base === undefined ? "" : `${((throughput(r) / throughput(base)) * 100).toFixed(0)}%`;
    console.log(
      [
        r.name.padEnd(44),
        String(r.operations).padStart(8),
        throughput(r).toFixed(0).padStart(10),
        (lat.length > 0 ? percentile(lat, 50).toFixed(2) : "-").padStart(8),
        (lat.length > 0 ? percentile(lat, 99).toFixed(2) : "-").padStart(8),
        ratio.padStart(8),
      ].join(" ") + (r.note === undefined ? "" : `  ${r.note}`),
    );
  }
}

/** A progress line on stderr for long runs (overwritten in place on a TTY). */
export function progress(label: string, done: number, total: number): void {
  if (!process.stderr.isTTY) {
    if (done === total || done % Math.max(1, Math.floor(total / 4)) === 0)
      process.stderr.write(`${label}: ${done}/${total}\n`);
    return;
  }
  process.stderr.write(`\r${label}: ${done}/${total}${done === total ? "\n" : ""}`);
}
