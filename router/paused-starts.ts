/**
 * Requests held for a starting app. When an app has nothing serving yet (a first deploy, a restart
 * after its processes died), the deploy marks its route *paused*: its requests wait here until the
 * route gets processes, the pause timeout (`DECK_PAUSE_TIMEOUT`) passes, the client leaves, or the
 * router shuts down. Woken requests are decided again with the route as it is then.
 */
import type { ProxyResponse } from "./client-messages.ts";
import type { RouteSnapshot } from "./route-table.ts";

/** What happens to a held request; exactly one of these is called. */
export interface HeldRequest {
  /** The route changed (or the router is closing): decide again. */
  wake(): void;
  /** The pause timeout passed. */
  timedOut(): void;
  /** The client left while it waited. */
  gone(): void;
}

export class PausedStarts {
  /** Held requests by app. */
  private readonly held = new Map<string, Set<() => void>>();

  constructor(private readonly timeoutMs: number) {}

  /** Holds a request for `app` until one of `handlers` is called. */
  hold(app: string, res: ProxyResponse, handlers: HeldRequest): void {
    let waiters = this.held.get(app);
    if (waiters === undefined) {
      waiters = new Set();
      this.held.set(app, waiters);
    }
    const set = waiters;
    const release = () => {
      clearTimeout(timer);
      set.delete(wake);
      if (set.size === 0 && this.held.get(app) === set) this.held.delete(app);
    };
    const wake = () => {
      release();
      handlers.wake();
    };
    const timer = setTimeout(() => {
      release();
      handlers.timedOut();
    }, this.timeoutMs);
    set.add(wake);
    res.once("close", () => {
      if (!set.has(wake)) return;
      release();
      handlers.gone();
    });
  }

  /** After a route change: wakes the requests of apps that are no longer paused without processes. */
  wakeReady(snapshot: RouteSnapshot): void {
    if (this.held.size === 0) return;
    const byApp = snapshot.byApp;
    for (const [app, waiters] of this.held) {
      const entry = byApp.get(app);
      if (entry !== undefined && entry.settings.paused === true && entry.upstreams.length === 0) continue;
      for (const wake of [...waiters]) wake();
    }
  }

  /** Wakes every held request (the router is closing: they get their 503 now). */
  wakeAll(): void {
    for (const waiters of this.held.values()) for (const wake of [...waiters]) wake();
  }
}
