import { Breaker, type BreakerStateChange } from "../../../lib/breaker";

class Declined extends Error {
  readonly status = 402;
}

describe("breaker", () => {
  const breakers: Breaker[] = [];
  // time moves only when a test moves it: the reset and call timeouts are opossum's timers
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => {
    breakers.splice(0).forEach((b) => b.shutdown());
    jest.useRealTimers();
  });

  function aBreaker(changes: BreakerStateChange[] = []): Breaker {
    const breaker = new Breaker({
      name: "provider",
      timeoutMs: 50,
      volumeThreshold: 4,
      errorThresholdPercentage: 50,
      resetTimeoutMs: 100,
      isFailure: (err) => !(err instanceof Declined),
      onStateChange: (change) => changes.push(change),
    });
    breakers.push(breaker);
    return breaker;
  }

  const failing = () => Promise.reject(new Error("502 from upstream"));
  const declining = () => Promise.reject(new Declined("card declined"));

  it("passes results and errors through while closed", async () => {
    const breaker = aBreaker();
    await expect(breaker.fire(() => Promise.resolve(42))).resolves.toBe(42);
    await expect(breaker.fire(failing)).rejects.toThrow("502 from upstream");
    expect(breaker.state).toBe("closed");
  });

  it("never opens on errors that do not count (declines)", async () => {
    const breaker = aBreaker();
    for (let i = 0; i < 20; i++) await expect(breaker.fire(declining)).rejects.toBeInstanceOf(Declined);
    expect(breaker.state).toBe("closed");
    expect(breaker.stats()).toMatchObject({ ignored: 20, failures: 0 });
  });

  it("opens past the threshold, fails fast, probes half-open and closes again", async () => {
    const changes: BreakerStateChange[] = [];
    const breaker = aBreaker(changes);
    for (let i = 0; i < 4; i++) await breaker.fire(failing).catch(() => undefined);
    expect(breaker.state).toBe("open");

    let called = false;
    await expect(
      breaker.fire(async () => {
        called = true;
      }),
    ).rejects.toMatchObject({ code: "BREAKER_OPEN", retryable: true });
    expect(called).toBe(false);

    await jest.advanceTimersByTimeAsync(99);
    expect(breaker.state).toBe("open");
    await jest.advanceTimersByTimeAsync(1);
    expect(breaker.state).toBe("halfOpen");
    await expect(breaker.fire(() => Promise.resolve("ok"))).resolves.toBe("ok");
    expect(breaker.state).toBe("closed");
    expect(changes.map((c) => `${c.from}>${c.to}`)).toEqual([
      "closed>open",
      "open>halfOpen",
      "halfOpen>closed",
    ]);
    expect(breaker.stats().transitions).toEqual({ closed: 1, open: 1, halfOpen: 1 });
  });

  it("reopens when the half-open probe fails", async () => {
    const breaker = aBreaker();
    for (let i = 0; i < 4; i++) await breaker.fire(failing).catch(() => undefined);
    await jest.advanceTimersByTimeAsync(100);
    expect(breaker.state).toBe("halfOpen");
    await breaker.fire(failing).catch(() => undefined);
    expect(breaker.state).toBe("open");
  });

  it("times out a slow call with CALL_TIMEOUT", async () => {
    const breaker = aBreaker();
    const slow = breaker.fire(() => new Promise((resolve) => setTimeout(resolve, 500)));
    const outcome = expect(slow).rejects.toMatchObject({ code: "CALL_TIMEOUT", retryable: true });
    await jest.advanceTimersByTimeAsync(50);
    await outcome;
  });
});
