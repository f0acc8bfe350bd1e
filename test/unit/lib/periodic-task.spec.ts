import { PeriodicTask } from "../../../lib/periodic-task";
import { waitFor } from "../../support/wait";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("periodic task", () => {
  it("never overlaps a slow run, survives a failing run, and stop() waits for the run in progress", async () => {
    let active = 0;
    let maxActive = 0;
    let runs = 0;
    let finished = 0;
    const warnings: unknown[] = [];
    const task = new PeriodicTask({
      what: "probing",
      intervalMs: 10,
      logger: { warn: (...args: unknown[]) => warnings.push(args[0]) },
      run: async () => {
        runs += 1;
        active += 1;
        maxActive = Math.max(maxActive, active);
        await sleep(35);
        active -= 1;
        finished += 1;
        if (runs === 1) throw new Error("first run fails");
      },
    });
    task.start();
    // a condition, not a quiet period: a loaded machine may take longer than any fixed wait
    await waitFor("three runs of the task", () => runs >= 3, 10_000);
    await task.stop();
    expect(maxActive).toBe(1);
    expect(runs).toBeGreaterThanOrEqual(3);
    expect(finished).toBe(runs); // stop() waited for the last run
    expect(warnings).toEqual(["probing failed; the next run retries"]);
    const after = runs;
    await sleep(50);
    expect(runs).toBe(after);
  });
});
