/**
 * Work done every `intervalMs` (and once at start), one run at a time; a failing run is reported once
 * per kind of failure (a database away for an hour says so once, not every round) and its recovery once.
 */
export interface PeriodicOptions {
  intervalMs: number;
  run(now: Date): Promise<void>;
  /** A run failed with a message not reported since the last good run. */
  onTrouble(message: string): void;
  /** The first good run after trouble. */
  onRecovered?(): void;
}

export class Periodic {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | null = null;
  private trouble = "";

  constructor(private readonly o: PeriodicOptions) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.tick(), this.o.intervalMs);
    this.timer.unref();
    void this.tick();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** One run now (or the one under way). */
  tick(now = new Date()): Promise<void> {
    this.running ??= this.o.run(now).then(
      () => {
        if (this.trouble) this.o.onRecovered?.();
        this.trouble = "";
      },
      (e: Error) => {
        if (e.message !== this.trouble) this.o.onTrouble(e.message);
        this.trouble = e.message;
      },
    ).finally(() => (this.running = null));
    return this.running;
  }
}
