/**
 * Keeps a router node's in-memory RouteTable equal to the `routes` table in PostgreSQL.
 *
 * Every row carries the version of its last change (removals stay as rows with no route), and
 * versions become visible in the order they were given (see store/queries/routes.ts). So a node that
 * has applied everything up to version N only ever needs the rows above N: a notification or a periodic
 * check reads those and swaps in the new table at once. After a lost connection, notifications may have
 * been missed, so the whole table is read again; the last table keeps serving meanwhile.
 */
import type { Route } from "../core/index.ts";
import type { RouteChange } from "../store/queries/index.ts";
import { buildSnapshot, validateRoute, type RouteSnapshot, type RouteTable } from "./route-table.ts";

export interface RouteSyncOptions {
  table: RouteTable;
  /** Rows changed after `version`, oldest first (store/queries/routes.ts listRouteChangesSince). */
  fetchSince(version: number): Promise<RouteChange[]>;
  /** Called after each change of the table with the version it now serves. */
  onApplied?(version: number): void;
  log?: (line: string) => void;
}

export interface MergeResult {
  snapshot: RouteSnapshot;
  /** The highest version among the rows read (unchanged when there were none). */
  version: number;
  /** Apps whose route is kept out, with why (a route that does not validate or takes another app's host). */
  rejected: { app: string; message: string }[];
  /** One word per changed app for the log: `APP` set, `-APP` removed. */
  summary: string[];
}

/**
 * The table after applying `changes` (oldest first) to `current`, or, when `full`, the table made of
 * `changes` alone. Pure. When two routes claim one host the newer change wins and the older route is
 * left out, so one bad row cannot keep every other change from being served.
 */
export function mergeRouteChanges(current: ReadonlyMap<string, { route: Route; version: number }>, changes: readonly RouteChange[], full: boolean, version: number): {
  routes: Map<string, { route: Route; version: number }>;
  result: MergeResult;
} {
  const routes = full ? new Map<string, { route: Route; version: number }>() : new Map(current);
  const rejected: MergeResult["rejected"] = [];
  const summary: string[] = [];
  let top = full ? 0 : version;
  for (const change of changes) {
    if (change.version > top) top = change.version;
    if (change.route === null) {
      if (routes.delete(change.app)) summary.push(`-${change.app}`);
      continue;
    }
    const checked = validateRoute(change.route);
    if (!checked.ok || checked.route.app !== change.app) {
      rejected.push({ app: change.app, message: checked.ok ? `route names app "${checked.route.app}"` : checked.message });
      routes.delete(change.app);
      continue;
    }
    routes.set(change.app, { route: checked.route, version: change.version });
    summary.push(change.app);
  }
  let snapshot: RouteSnapshot;
  try {
    snapshot = buildSnapshot([...routes.values()].map((r) => r.route));
  } catch {
    // Newest first, each kept only if it still fits next to those already kept.
    const kept: Route[] = [];
    for (const [app, r] of [...routes].sort((a, b) => b[1].version - a[1].version)) {
      try {
        buildSnapshot([...kept, r.route]);
        kept.push(r.route);
      } catch (e) {
        rejected.push({ app, message: (e as Error).message });
        routes.delete(app);
      }
    }
    snapshot = buildSnapshot(kept);
  }
  return { routes, result: { snapshot, version: top, rejected, summary } };
}

export class RouteSync {
  private readonly options: RouteSyncOptions;
  private readonly log: (line: string) => void;
  private routes = new Map<string, { route: Route; version: number }>();
  private applied = 0;
  private loaded = false;
  private pending: { full: boolean } | null = null;
  private running: Promise<void> | null = null;

  constructor(options: RouteSyncOptions) {
    this.options = options;
    this.log = options.log ?? (() => {});
    for (const route of options.table.routes()) this.routes.set(route.app, { route, version: 0 });
  }

  /** The highest route version the table serves (0 until the database was read). */
  get version(): number {
    return this.applied;
  }

  /** Reads the whole table (after a (re)connect, when notifications may have been missed). */
  reloadAll(): Promise<void> {
    return this.request(true);
  }

  /** Reads the rows changed since the version served. */
  catchUp(): Promise<void> {
    return this.request(false);
  }

  /** A `deck_routes` notification: its payload is the version it announces. */
  notified(payload: string): void {
    const announced = Number(payload);
    if (Number.isSafeInteger(announced) && announced <= this.applied) return;
    this.catchUp().catch(() => undefined);
  }

  /** Runs one read at a time; requests arriving meanwhile are folded into one more read after it. */
  private request(full: boolean): Promise<void> {
    this.pending = { full: full || (this.pending?.full ?? false) };
    if (this.running === null) {
      this.running = this.drain().finally(() => {
        this.running = null;
      });
    }
    return this.running;
  }

  private async drain(): Promise<void> {
    try {
      while (this.pending !== null) {
        const { full } = this.pending;
        this.pending = null;
        await this.readOnce(full);
      }
    } catch (e) {
      this.pending = null;
      throw e;
    }
  }

  private async readOnce(requestedFull: boolean): Promise<void> {
    // Until the database was read once, the table holds the node's saved copy: replace it whole.
    const full = requestedFull || !this.loaded;
    const changes = await this.options.fetchSince(full ? 0 : this.applied);
    if (!full && changes.length === 0) return;
    const { routes, result } = mergeRouteChanges(this.routes, changes, full, this.applied);
    for (const r of result.rejected) this.log(`routes: not serving app "${r.app}": ${r.message}`);
    this.routes = routes;
    this.applied = result.version;
    this.loaded = true;
    this.options.table.swap(result.snapshot);
    if (full) this.log(`routes: loaded ${routes.size} app(s) from the database (version ${result.version})`);
    else this.log(`routes: version ${result.version}: ${result.summary.join(" ") || "no change"}`);
    this.options.onApplied?.(result.version);
  }
}
