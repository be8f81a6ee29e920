/**
 * The deck server's watch over its router. Every second it asks the router's control socket for its
 * health. The router's own supervisor replaces a dead worker; this watch covers the supervisor itself:
 * when no router process runs at all, it starts one. When a router answers again after it did not, or
 * a different worker answers, `onBack` runs (the deck server sends the routes again, in case a change
 * reached the old worker's saved table but not its answer).
 */
import { probeRouter, type RouterHealth } from "./control-client.ts";
import { runningRouterPid } from "./launch.ts";
import { routerPaths } from "./paths.ts";

export interface RouterWatchOptions {
  dataDir: string;
  /** Starts a router (ensureRouter with the deck server's settings); resolves with its pid. */
  start(): Promise<{ pid: number; started: boolean }>;
  onBack?(): Promise<void>;
  log(line: string): void;
  /** Default 1 s. */
  intervalMs?: number;
}

/** What the watch last saw: a worker answering, or nothing answering since `since`. */
type Seen = { state: "answering"; health: RouterHealth } | { state: "silent"; since: number; reported: string };

export class RouterWatch {
  private readonly options: RouterWatchOptions;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private seen: Seen | undefined;
  private stopped = false;
  private toldNoSupervisor = false;

  constructor(options: RouterWatchOptions) {
    this.options = options;
  }

  start(): void {
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  /** One look at the router (every interval; tests call it directly). */
  async check(): Promise<void> {
    const { dataDir, log } = this.options;
    const health = await probeRouter(routerPaths(dataDir).socket, 1_000);
    if (health !== undefined) {
      const before = this.seen;
      this.seen = { state: "answering", health };
      if (health.worker === undefined && !this.toldNoSupervisor) {
        this.toldNoSupervisor = true;
        log("router: the running router was started by an older deck and has no supervisor to restart it if it dies; restart it (`deck down`, then `deck server`)");
      }
      const back = before?.state === "silent" || (before?.state === "answering" && (before.health.worker !== health.worker || before.health.pid !== health.pid));
      if (back) {
        log(`router: answering again (pid ${health.pid}${health.worker === undefined ? "" : `, worker ${health.worker}`})`);
        await this.options.onBack?.().catch((e: unknown) => log(`router: could not send the routes again: ${(e as Error).message}`));
      }
      return;
    }
    const silent = this.seen?.state === "silent" ? this.seen : { state: "silent" as const, since: Date.now(), reported: "" };
    this.seen = silent;
    const supervisor = await runningRouterPid(dataDir);
    if (supervisor !== undefined) {
      const note = `router: not answering; its supervisor (pid ${supervisor}) is restarting it`;
      if (silent.reported !== note) log(note);
      silent.reported = note;
      return;
    }
    log("router: not running; starting it");
    try {
      const r = await this.options.start();
      log(`router: ${r.started ? "started" : "found running"} (pid ${r.pid})`);
    } catch (e) {
      log(`router: could not start it: ${(e as Error).message}`);
    }
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.check().catch((e: unknown) => this.options.log(`router: watch failed: ${(e as Error).message}`)).finally(() => {
        this.running = undefined;
        this.schedule();
      });
    }, this.options.intervalMs ?? 1_000);
    this.timer.unref();
  }
}
