/**
 * Time as a dependency. Services, workers, sweepers and pollers read the time from a `Clock`
 * handed to them (the process's infrastructure holds one), never from `Date.now()` in a rule, so
 * tests move time forward instead of writing fields into stores or sleeping.
 */

/** A source of the current time. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /**
   * Call `listener` after each jump of the clock; returns the unsubscribe function. Only a
   * manual clock jumps: loops that sleep until a due time listen, so that a test moving time
   * past that due time wakes them at once.
   */
  onAdvance?(listener: () => void): () => void;
}

/** The real time. */
export const systemClock: Clock = { now: () => Date.now() };

/** The clock's time as a Date. */
export function dateOf(clock: Clock): Date {
  return new Date(clock.now());
}

/** A clock that moves only when told to: for tests, and for replaying a scenario at a given time. */
export class ManualClock implements Clock {
  private current: number;
  private readonly listeners = new Set<() => void>();

  constructor(start: number | Date = Date.now()) {
    this.current = typeof start === "number" ? start : start.getTime();
  }

  now(): number {
    return this.current;
  }

  /** Move forward by `ms` (≥ 0) and tell the listeners. */
  advance(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`a clock moves forward only (got ${ms} ms)`);
    this.current += ms;
    for (const listener of [...this.listeners]) listener();
  }

  /** Move to `at`, which must not be earlier than now, and tell the listeners. */
  set(at: number | Date): void {
    const target = typeof at === "number" ? at : at.getTime();
    this.advance(target - this.current);
  }

  onAdvance(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
