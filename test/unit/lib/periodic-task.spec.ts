import { PeriodicTask } from "../../../lib/periodic-task";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("periodic task", () => {
  // time moves only when the test moves it
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

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
    expect(runs).toBe(0);
    await jest.advanceTimersByTimeAsync(10);
    expect(runs).toBe(1);
    // ticks at 20, 30 and 40 find the first run (10–45) still going and are skipped
    await jest.advanceTimersByTimeAsync(30);
    expect(runs).toBe(1);
    await jest.advanceTimersByTimeAsync(10);
    expect(runs).toBe(2);
    await jest.advanceTimersByTimeAsync(40);
    expect(runs).toBe(3);

    // stop() waits for the third run, which ends 35 ms after it began
    let stopped = false;
    const stopping = task.stop().then(() => (stopped = true));
    await jest.advanceTimersByTimeAsync(20);
    expect(stopped).toBe(false);
    await jest.advanceTimersByTimeAsync(20);
    await stopping;
    expect(maxActive).toBe(1);
    expect(finished).toBe(3);
    expect(warnings).toEqual(["probing failed; the next run retries"]);

    // no tick after stop()
    await jest.advanceTimersByTimeAsync(1_000);
    expect(runs).toBe(3);
  });
});
