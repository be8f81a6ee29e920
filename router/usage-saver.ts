/**
 * Saves the bandwidth a router counted (requests, bytes in and out per app and clock hour) into
 * `bandwidth_usage` every DECK_METERING_INTERVAL seconds, and once more when deck stops. Used by the
 * deck server for its router (over the control socket) and by router nodes for their own counts.
 *
 * Exactly once: the router hands out a named batch and keeps handing out the same one until it is
 * acknowledged, and a batch's id is saved with it, so a save whose answer was lost, or a deck server
 * restarted between saving and acknowledging, adds nothing twice. While the database is down the
 * counts stay with the router (which outlives deck server restarts, and writes them to a file when
 * it stops).
 */
import type { DatabasePool } from "slonik";
import type { UsageBatch } from "../core/index.ts";
import { saveUsageBatch } from "../store/queries/index.ts";

export interface UsageSource {
  takeBatch(): Promise<UsageBatch> | UsageBatch;
  acknowledge(id: string): Promise<unknown> | unknown;
}

export class UsageSaver {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private failing = false;
  /**
   * A batch without an id (from a router started by an older deck, which hands its counts over only
   * once) whose save failed: kept here and tried again first.
   */
  private carried: UsageBatch | null = null;
  private toldLegacy = false;

  constructor(
    private readonly db: () => DatabasePool | null,
    private readonly source: UsageSource,
    private readonly log: (line: string) => void,
  ) {}

  start(intervalMs: number): void {
    this.timer = setInterval(() => void this.save(), intervalMs);
    this.timer.unref();
  }

  /** Saves what the router holds; concurrent calls share one run. */
  save(): Promise<void> {
    this.running ??= this.doSave().finally(() => { this.running = null; });
    return this.running;
  }

  /**
   * Saves everything counted until now: after a save already under way, and after a batch handed
   * out earlier (which holds only older counts), one more.
   */
  async saveAll(): Promise<void> {
    await this.running;
    await this.save();
    await this.save();
  }

  private trouble(what: string, e: unknown, kept = "the router keeps the counts for the next try"): void {
    if (!this.failing) this.log(`metering: ${what} (${kept}): ${(e as Error).message}`);
    this.failing = true;
  }

  private async doSave(): Promise<void> {
    const db = this.db();
    if (db === null) return;
    let batch: UsageBatch;
    try {
      batch = this.carried ?? (await this.source.takeBatch());
    } catch (e) {
      return this.trouble("could not read the router's counts", e);
    }
    if (batch.usage.length === 0) return;
    if (batch.id === null && !this.toldLegacy) {
      this.toldLegacy = true;
      this.log("metering: the running router was started by an older deck; restart it (`deck down`, then `deck server`) so its counts survive router restarts and SIGUSR1 reopens its access log");
    }
    try {
      await saveUsageBatch(db, batch);
      this.carried = null;
    } catch (e) {
      if (batch.id === null) {
        this.carried = batch;
        return this.trouble("could not save usage", e, "kept in memory for the next try");
      }
      return this.trouble("could not save usage", e);
    }
    try {
      // Unacknowledged, the router hands the batch out again and its second save adds nothing.
      if (batch.id !== null) await this.source.acknowledge(batch.id);
      if (this.failing) this.log("metering: usage saved again");
      this.failing = false;
    } catch (e) {
      this.trouble("could not tell the router its counts are saved", e);
    }
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.save();
  }
}
