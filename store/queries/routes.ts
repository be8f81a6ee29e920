/**
 * The route table router nodes serve (`routes`) and the nodes themselves (`router_nodes`); see
 * migrations/013_router_nodes.sql.
 *
 * Writers call `lockRouteWrites` first in their transaction, so route versions become visible in the
 * order they were given and `listRouteChangesSince(v)` never skips a version that commits late.
 */
import type { Route } from "../../core/index.ts";
import { q, sql, toIso, type Db } from "./db.ts";

/** The LISTEN/NOTIFY channel a route change is announced on; the payload is the new version. */
export const ROUTES_CHANNEL = "deck_routes";

/** Key of the transaction-scoped advisory lock route writers take turns on. */
const ROUTE_WRITE_LOCK = 4_711_2024_0013;

/** One app's row: its route, or null once the app was removed, and the version of that change. */
export interface RouteChange {
  app: string;
  route: Route | null;
  version: number;
}

export interface RouterNodeRow {
  id: string;
  label: string;
  startedAt: string;
  lastSeen: string;
  routeVersion: number;
  /** Requests and tunnels in flight per upstream; upstreams with none are left out. */
  inflight: Record<string, number>;
}

const json = <T>(v: unknown): T => (typeof v === "string" ? JSON.parse(v) : v) as T;

/** Makes the calling transaction the only route writer until it ends. */
export async function lockRouteWrites(tx: Db): Promise<void> {
  await tx.query(q`SELECT pg_advisory_xact_lock(${ROUTE_WRITE_LOCK})`);
}

/**
 * Stores an app's route (null = removed) under a new version, unless it is already stored as is.
 * Returns the new version, or null when nothing changed.
 */
export async function saveRoute(tx: Db, app: string, route: Route | null): Promise<number | null> {
  if (route === null) {
    const v = await tx.maybeOneFirst(q`UPDATE routes SET route = NULL, version = nextval('route_version'), updated_at = now()
      WHERE app = ${app} AND route IS NOT NULL RETURNING version`);
    return v == null ? null : Number(v);
  }
  const v = await tx.maybeOneFirst(q`INSERT INTO routes (app, route, version) VALUES (${app}, ${sql.jsonb(route as never)}, nextval('route_version'))
    ON CONFLICT (app) DO UPDATE SET route = EXCLUDED.route, version = EXCLUDED.version, updated_at = now()
    WHERE routes.route IS DISTINCT FROM EXCLUDED.route
    RETURNING version`);
  return v == null ? null : Number(v);
}

/** Stores exactly `routes`: apps not among them are marked removed. Returns how many rows changed. */
export async function saveAllRoutes(tx: Db, routes: readonly Route[]): Promise<number> {
  let changed = 0;
  const keep = routes.map((r) => r.app);
  const removed = await tx.anyFirst(q`UPDATE routes SET route = NULL, version = nextval('route_version'), updated_at = now()
    WHERE route IS NOT NULL AND NOT (app = ANY(${sql.array(keep, "text")})) RETURNING app`);
  changed += removed.length;
  for (const route of routes) if ((await saveRoute(tx, route.app, route)) !== null) changed++;
  return changed;
}

/** The highest version any route row carries (0 before the first route). */
export async function currentRouteVersion(db: Db): Promise<number> {
  return Number(await db.oneFirst(q`SELECT coalesce(max(version), 0) FROM routes`));
}

/** Announces `version` on ROUTES_CHANNEL; PostgreSQL delivers it when the transaction commits. */
export async function notifyRouteChange(tx: Db, version: number): Promise<void> {
  await tx.query(q`SELECT pg_notify(${ROUTES_CHANNEL}, ${String(version)})`);
}

/** Every row changed after `version`, oldest first (removals included). `0` lists the whole table. */
export async function listRouteChangesSince(db: Db, version: number): Promise<RouteChange[]> {
  const rows = await db.any(q`SELECT app, route, version FROM routes WHERE version > ${version} ORDER BY version`);
  return rows.map((r) => ({ app: String(r.app), route: r.route == null ? null : json<Route>(r.route), version: Number(r.version) }));
}

// ---- router nodes ----

function toNode(r: Record<string, unknown>): RouterNodeRow {
  return {
    id: String(r.id),
    label: String(r.label),
    startedAt: toIso(r.started_at),
    lastSeen: toIso(r.last_seen),
    routeVersion: Number(r.route_version),
    inflight: json<Record<string, number>>(r.inflight ?? {}),
  };
}

/** Records that a node is alive, which route version it serves and what it has in flight. */
export async function saveRouterNodeHeartbeat(db: Db, n: { id: string; label: string; routeVersion: number; inflight: Record<string, number> }): Promise<void> {
  await db.query(q`INSERT INTO router_nodes (id, label, route_version, inflight) VALUES (${n.id}, ${n.label}, ${n.routeVersion}, ${sql.jsonb(n.inflight)})
    ON CONFLICT (id) DO UPDATE SET last_seen = now(), route_version = EXCLUDED.route_version, inflight = EXCLUDED.inflight`);
}

export async function removeRouterNode(db: Db, id: string): Promise<void> {
  await db.query(q`DELETE FROM router_nodes WHERE id = ${id}`);
}

/** Forgets nodes that stopped without saying so, once they have been silent for `seconds`. */
export async function pruneRouterNodes(db: Db, seconds: number): Promise<void> {
  await db.query(q`DELETE FROM router_nodes WHERE last_seen < now() - make_interval(secs => ${seconds})`);
}

/** Nodes heard from within the last `seconds` (by the database's clock, so node clocks do not matter). */
export async function listLiveRouterNodes(db: Db, seconds: number): Promise<RouterNodeRow[]> {
  const rows = await db.any(q`SELECT * FROM router_nodes WHERE last_seen >= now() - make_interval(secs => ${seconds}) ORDER BY label, id`);
  return rows.map(toNode);
}
