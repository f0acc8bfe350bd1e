/**
 * The waiting and waking of a claim loop (the outbox relay, the notification sender): the loop
 * parks until there may be work (a wake, a poll timeout, a retry falling due) or until a slot frees
 * up; wakes that arrive while it is busy are remembered in `requested`, so none is lost.
 */
export type WaitReason = "work" | "room";

export class LoopSignals {
  /** A wake arrived since the loop last looked; the loop clears it when it looks. */
  requested = false;
  private waiter: { reason: WaitReason; resolve: () => void } | undefined;
  private retryTimer: { at: number; timer: NodeJS.Timeout } | undefined;

  constructor(
    private readonly isRunning: () => boolean,
    private readonly now: () => number = Date.now,
  ) {}

  /** There may be work now. Many calls coalesce. */
  wake(): void {
    if (!this.isRunning()) return;
    this.requested = true;
    this.signal("work");
  }

  /** Park until signalled for `reason` (or stopped), or `timeoutMs` passes. */
  wait(reason: WaitReason, timeoutMs?: number): Promise<void> {
    if (!this.isRunning()) return Promise.resolve();
    if (reason === "work" && this.requested) return Promise.resolve();
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (): void => {
        clearTimeout(timer);
        if (this.waiter?.resolve === done) this.waiter = undefined;
        resolve();
      };
      this.waiter = { reason, resolve: done };
      if (timeoutMs !== undefined) {
        timer = setTimeout(done, timeoutMs);
        timer.unref();
      }
    });
  }

  /** Wake a loop parked for `reason`; once stopped, any waiter. */
  signal(reason: WaitReason): void {
    const waiter = this.waiter;
    if (waiter === undefined) return;
    if (waiter.reason === reason || !this.isRunning()) waiter.resolve();
  }

  /** Wake the loop when the earliest retry falls due (earlier than the poll would). */
  wakeAt(at: number): void {
    if (!this.isRunning()) return;
    if (this.retryTimer !== undefined && this.retryTimer.at <= at) return;
    this.clearTimer();
    const timer = setTimeout(
      () => {
        this.retryTimer = undefined;
        this.wake();
      },
      Math.max(0, at - this.now()),
    );
    timer.unref();
    this.retryTimer = { at, timer };
  }

  /** On stop: no more timed wakes, and a parked loop goes on. */
  release(): void {
    this.clearTimer();
    this.waiter?.resolve();
  }

  private clearTimer(): void {
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer.timer);
    this.retryTimer = undefined;
  }
}
