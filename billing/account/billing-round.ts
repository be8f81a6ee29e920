import { Periodic } from "../../core/index.ts";

/** A billing check run every interval (and at start), one round at a time; trouble is logged once per kind. */
export abstract class BillingRound {
  private readonly periodic: Periodic;

  protected constructor(what: string, intervalMs: number, log: (line: string) => void) {
    this.periodic = new Periodic({ intervalMs, run: (now) => this.check(now), onTrouble: (m) => log(`billing: ${what} failed (tried again each round): ${m}`) });
  }

  start(): void {
    this.periodic.start();
  }

  stop(): Promise<void> {
    return this.periodic.stop();
  }

  /** One round now (or the one under way). */
  round(now = new Date()): Promise<void> {
    return this.periodic.tick(now);
  }

  protected abstract check(now: Date): Promise<void>;
}
