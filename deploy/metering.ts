/**
 * Saves what the router counted (requests, bytes in and out per app) into `bandwidth_usage`, per app
 * per clock hour, every DECK_METERING_INTERVAL seconds and once more when deck stops. Counts that
 * could not be saved (database down) are kept and added to the next save.
 */
import type { DatabasePool } from "slonik";
import { accumulateUsage } from "../core/index.ts";
import { addBandwidthUsage, bandwidthOf, type BandwidthHour, type UsageDelta } from "../store/queries/index.ts";
import { authorizeApp, type Caller } from "./access.ts";
import type { DeployDeps } from "./deps.ts";

export interface UsageSource {
  drain(): Promise<UsageDelta[]>;
}

export class MeteringFlusher {
  private pending = new Map<string, UsageDelta>();
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private failing = false;

  constructor(
    private readonly db: DatabasePool,
    private readonly source: UsageSource,
    private readonly log: (line: string) => void,
  ) {}

  start(intervalMs: number): void {
    this.timer = setInterval(() => void this.flush(), intervalMs);
    this.timer.unref();
  }

  private add(deltas: readonly UsageDelta[]): void {
    for (const d of deltas) accumulateUsage(this.pending, d);
  }

  /** Drains the router and saves everything pending; concurrent calls share one run. */
  flush(): Promise<void> {
    this.running ??= this.doFlush().finally(() => { this.running = null; });
    return this.running;
  }

  private async doFlush(): Promise<void> {
    try {
      this.add(await this.source.drain());
    } catch (e) {
      // The router is restarting or gone: nothing was drained, so nothing is lost here.
      if (!this.failing) this.log(`metering: could not read the router's counts: ${(e as Error).message}`);
      this.failing = true;
      return;
    }
    if (this.pending.size === 0) return;
    const batch = [...this.pending.values()];
    this.pending = new Map();
    try {
      await addBandwidthUsage(this.db, batch);
      this.failing = false;
    } catch (e) {
      this.add(batch);
      if (!this.failing) this.log(`metering: could not save usage (kept for the next try): ${(e as Error).message}`);
      this.failing = true;
    }
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.flush();
  }
}

/** An app's metered traffic per hour over the last `hours` hours (newest first). */
export async function bandwidthReport(deps: DeployDeps, caller: Caller, appName: string, hours: number): Promise<BandwidthHour[]> {
  const app = await authorizeApp(deps.db, caller, "app:read", appName);
  return bandwidthOf(deps.db, app.id, new Date(Date.now() - hours * 3_600_000));
}
