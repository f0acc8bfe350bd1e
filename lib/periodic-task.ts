/**
 * A job that runs every `intervalMs` in the background and never overlaps itself: a tick that
 * finds the previous run still going is skipped. Failures are logged and left to the next tick.
 * `stop()` clears the timer and waits for a run in progress. Used by the services' sweepers.
 */
export class PeriodicTask {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly options: {
      /** For the log line, e.g. "sweeping unpaid orders". */
      what: string;
      intervalMs: number;
      run: () => Promise<unknown>;
      logger: { warn(...args: unknown[]): void };
    },
  ) {}

  start(): void {
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => this.tick(), this.options.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  private tick(): void {
    if (this.running !== undefined) return;
    this.running = this.options
      .run()
      .then(() => undefined)
      .catch((err: unknown) =>
        this.options.logger.warn(`${this.options.what} failed; the next run retries`, err),
      )
      .finally(() => {
        this.running = undefined;
      });
  }
}
