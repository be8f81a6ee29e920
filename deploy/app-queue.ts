import { EventEmitter } from "node:events";
import { hostname } from "node:os";
import type { DatabasePool } from "slonik";
import { DeckError, isDeckError } from "../core/index.ts";
import { attachRunningWork, claimWork, countWork, dropStaleWork, dropWorkOf, enqueueWork, finishWork, refreshWork, type QueueEntry } from "../store/queries/index.ts";

export interface RunOptions {
  /** The deployment this work is, so that whoever drops the entry can end it. */
  deploymentId?: number;
  /** Called once the entry is in line (its place is taken). */
  onEnqueued?: () => void;
  /** Wait even in refuse mode (deck's own work, such as restarting an app after a reboot). */
  wait?: boolean;
  /**
   * Asked when the server stops while the entry still waits: true keeps the entry in line for the next
   * start of this server (which finds it as its earlier run's), false takes it out.
   */
  keepPlace?: () => Promise<boolean>;
}

/** What kind of work holds an app's slot; a deploy's kind is also its deployment's. */
export type WorkKind = "push" | "config" | "scale" | "restart" | "rollback" | "stop" | "start" | "maintenance" | "cache-clear" | "reconcile" | "destroy";

export interface AppQueueOptions {
  db: DatabasePool;
  /** This server's name in the queue (its entries, refreshed while it lives) and the prefix earlier runs of it on this host share. See `holderName`. */
  holder: { prefix: string; holder: string };
  mode?: "wait" | "refuse";
  log?: (line: string) => void;
  /** How often a waiting entry looks again when no wake-up came (a notification from another server can be missed). */
  pollMs?: number;
}

/** A holder name unique to this process, starting with a prefix the same installation on this host shares. */
export function holderName(dataDir: string): { prefix: string; holder: string } {
  const prefix = `${hostname()}:${dataDir}:`;
  return { prefix, holder: `${prefix}${process.pid}:${Date.now().toString(36)}` };
}

/**
 * One piece of work per app at a time, in arrival order, across every deck server on the database:
 * the line is kept in PostgreSQL (`app_queue`), so a restart forgets nothing about it and two servers
 * share it. Different apps run in parallel. A caller that has to wait learns its position in line.
 */
export class AppQueue {
  private readonly wakeups = new EventEmitter();
  private readonly mine = new Set<number>();
  private heartbeat: NodeJS.Timeout | undefined;
  private closing = false;
  private readonly mode: "wait" | "refuse";
  private readonly pollMs: number;
  private readonly log: (line: string) => void;

  constructor(private readonly options: AppQueueOptions) {
    this.mode = options.mode ?? "wait";
    this.pollMs = options.pollMs ?? 500;
    this.log = options.log ?? (() => {});
    this.wakeups.setMaxListeners(0);
  }

  get holder(): string {
    return this.options.holder.holder;
  }

  /** True once the server has begun to stop (see close). */
  get stopping(): boolean {
    return this.closing;
  }

  /** Names the deployment the app's running entry of this server does (a redeploy makes its row inside the slot). */
  async attach(appId: number, deploymentId: number): Promise<void> {
    await attachRunningWork(this.options.db, { appId, holder: this.holder, deploymentId });
  }

  /** Keeps this server's entries fresh so that no other server takes them for abandoned. */
  start(): void {
    if (this.heartbeat) return;
    this.heartbeat = setInterval(() => {
      if (this.mine.size === 0) return;
      refreshWork(this.options.db, [...this.mine]).catch((e) => this.log(`app queue: refreshing this server's entries failed: ${(e as Error).message}`));
    }, 5_000);
    this.heartbeat.unref();
  }

  stop(): void {
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
  }

  /**
   * The server is stopping: work still waiting leaves the line at once with DeckError `interrupted`
   * (a waiting push that kept its commit is deployed by the next start); running work goes on.
   */
  close(): void {
    this.closing = true;
    this.wake();
  }

  /** Another server finished work (a notification): waiting entries look again at once. */
  wake(): void {
    this.wakeups.emit("wake");
  }

  /**
   * Removes what an earlier run of this server on this host left in the line (it cannot be waiting
   * any more) and entries whose holder stopped refreshing them; returns them for reconciling.
   */
  async dropAbandoned(): Promise<QueueEntry[]> {
    const dropped = [...(await dropWorkOf(this.options.db, { prefix: this.options.holder.prefix, except: this.holder })), ...(await dropStaleWork(this.options.db))];
    if (dropped.length) this.wake();
    return dropped;
  }

  async busy(appId: number): Promise<boolean> {
    return (await countWork(this.options.db, { appId })) > 0;
  }

  /** Resolves once none of this server's work is running or waiting (for a clean shutdown), or after `deadlineMs`. */
  async idle(deadlineMs: number): Promise<boolean> {
    const end = Date.now() + deadlineMs;
    while (this.mine.size > 0) {
      if (Date.now() >= end) return false;
      await new Promise((r) => setTimeout(r, 50));
    }
    return true;
  }

  /**
   * Runs `work` once it is the app's turn. `onWait` hears the position in line whenever it changes
   * (1 = next). Aborting `signal` while waiting leaves the line and rejects with its reason.
   */
  async run<T>(app: { id: number; name: string }, kind: WorkKind, onWait: (position: number) => void, work: (entry: QueueEntry) => Promise<T>, signal?: AbortSignal, options: RunOptions = {}): Promise<T> {
    const db = this.options.db;
    if (this.mode === "refuse" && !options.wait && (await this.busy(app.id))) {
      throw new DeckError("deploy_in_progress", `another deploy of ${app.name} is in progress; push again when it has finished`);
    }
    const entry = await enqueueWork(db, { appId: app.id, kind, holder: this.holder, deploymentId: options.deploymentId });
    this.mine.add(entry.id);
    options.onEnqueued?.();
    let keepInLine = false;
    try {
      try {
        await this.waitTurn(entry, onWait, signal);
        return await work(entry);
      } catch (e) {
        // Stopped while waiting: in this line, or inside its turn for a build slot (deploy/build-slots.ts).
        if (this.closing && options.keepPlace && isDeckError(e) && e.code === "interrupted") keepInLine = await options.keepPlace();
        throw e;
      }
    } finally {
      this.mine.delete(entry.id);
      if (!keepInLine) {
        await finishWork(db, entry.id).catch((e) => this.log(`app queue: removing entry ${entry.id} of ${app.name} failed (it is dropped once stale): ${(e as Error).message}`));
        this.wake();
      }
    }
  }

  private async waitTurn(entry: QueueEntry, onWait: (position: number) => void, signal?: AbortSignal): Promise<void> {
    let told = 0;
    for (;;) {
      if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new DeckError("cancelled", "cancelled while waiting in line");
      if (this.closing) throw new DeckError("interrupted", "the deck server is restarting; run it again once it is back");
      const claim = await claimWork(this.options.db, entry);
      if (claim === null) throw new DeckError("interrupted", "this work was removed from the app's line (the server holding it was taken for stopped); try again");
      if (claim.claimed) return;
      if (claim.position !== told) {
        told = claim.position;
        onWait(claim.position);
      }
      await this.nextWake(signal);
    }
  }

  private nextWake(signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wakeups.off("wake", done);
        signal?.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, this.pollMs);
      this.wakeups.once("wake", done);
      signal?.addEventListener("abort", done, { once: true });
    });
  }
}
