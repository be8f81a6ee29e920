import { EventEmitter } from "node:events";
import type { DatabasePool } from "slonik";
import { claimBuildSlot, dropBuildSlotsOf, enqueueBuild, finishBuildSlot, refreshBuildSlots } from "../store/queries/index.ts";

export interface BuildSlotsOptions {
  db: DatabasePool;
  /** This server's name in the line and the prefix its earlier runs on this host share (see holderName). */
  holder: { prefix: string; holder: string };
  /** How many builds may run at once across every deck server on the database (DECK_BUILD_CONCURRENCY). */
  limit: number;
  log?: (line: string) => void;
  pollMs?: number;
}

/**
 * The build slots, kept in PostgreSQL (`build_queue`): at most `limit` builds run at once across every
 * deck server on the database, the rest wait in arrival order and hear their position.
 */
export class BuildSlots {
  private readonly wakeups = new EventEmitter();
  private heartbeat: NodeJS.Timeout | undefined;
  private readonly held = new Set<number>();
  private readonly log: (line: string) => void;

  constructor(private readonly options: BuildSlotsOptions) {
    this.log = options.log ?? (() => {});
    this.wakeups.setMaxListeners(0);
  }

  start(): void {
    if (this.heartbeat) return;
    this.heartbeat = setInterval(() => {
      if (this.held.size === 0) return;
      refreshBuildSlots(this.options.db, [...this.held]).catch((e) => this.log(`build slots: refreshing this server's entries failed: ${(e as Error).message}`));
    }, 5_000);
    this.heartbeat.unref();
  }

  stop(): void {
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
  }

  wake(): void {
    this.wakeups.emit("wake");
  }

  /** Drops what an earlier run of this server left in the line: its builds died with it. */
  async dropAbandoned(): Promise<void> {
    if (await dropBuildSlotsOf(this.options.db, { prefix: this.options.holder.prefix, except: this.options.holder.holder })) this.wake();
  }

  /**
   * Waits for a slot unless `signal` aborts first. Returns the slot's release (call it once the build
   * is over), or null when aborted; `onWait` hears the position whenever it changes.
   */
  async acquire(deploymentId: number | null, onWait: (position: number) => void, signal: AbortSignal): Promise<(() => Promise<void>) | null> {
    if (signal.aborted) return null;
    const db = this.options.db;
    const entry = await enqueueBuild(db, { deploymentId, holder: this.options.holder.holder });
    this.held.add(entry.id);
    let released = false;
    const release = async () => {
      if (released) return;
      released = true;
      this.held.delete(entry.id);
      await finishBuildSlot(db, entry.id).catch((e) => this.log(`build slots: freeing slot ${entry.id} failed (it is dropped once stale): ${(e as Error).message}`));
      this.wake();
    };
    try {
      let told = 0;
      for (;;) {
        if (signal.aborted) {
          await release();
          return null;
        }
        const claim = await claimBuildSlot(db, entry.id, this.options.limit);
        if (claim === null) {
          // Dropped as stale (this server was taken for stopped): take a new place rather than build unlimited.
          await release();
          return this.acquire(deploymentId, onWait, signal);
        }
        if (claim.claimed) return release;
        if (claim.position !== told) {
          told = claim.position;
          onWait(claim.position);
        }
        await this.nextWake(signal);
      }
    } catch (e) {
      await release();
      throw e;
    }
  }

  private nextWake(signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wakeups.off("wake", done);
        signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, this.options.pollMs ?? 500);
      this.wakeups.once("wake", done);
      signal.addEventListener("abort", done, { once: true });
    });
  }
}
