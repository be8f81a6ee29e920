import { statfs } from "node:fs/promises";
import { cpus, loadavg, freemem, totalmem } from "node:os";
import { z } from "zod/v4";
import { DeckError, mergeSources, toPoint, type MetricSample } from "../../core/index.ts";
import { listAppSamplesBetween } from "../../store/queries/metrics.ts";
import type { DeployDeps } from "../../ops/index.ts";
import { probeRouter } from "../../router/control-client.ts";
import { q, toIso } from "../../store/queries/db.ts";
import { defineRoute } from "../registry.ts";

/**
 * The whole platform at a glance for platform admins (the admin dashboard's first screen): this
 * machine, the database, the router and its nodes, the builders, the build queue and firing alerts.
 * `GET /health` stays the public "is it up" probe; this one names hosts and nodes, so it is for admins.
 */

const node = z.object({ name: z.string(), lastSeen: z.string(), heartbeatAgeSeconds: z.number() });

export const platformHealth = z.object({
  host: z.object({ cpus: z.number(), load1: z.number(), memTotal: z.number(), memFree: z.number(), diskTotal: z.number().nullable(), diskFree: z.number().nullable() }),
  services: z.tuple([
    z.object({ name: z.literal("api"), up: z.literal(true) }),
    z.object({ name: z.literal("database"), up: z.boolean(), latencyMs: z.number().nullable() }),
    z.object({ name: z.literal("router"), up: z.boolean(), routerNodes: z.array(node.extend({ routeVersion: z.number() })) }),
    z.object({ name: z.literal("builders"), builderNodes: z.array(node.extend({ capacity: z.number(), running: z.number() })) }),
  ]),
  buildQueue: z.object({ waiting: z.number(), running: z.number() }),
  alertsFiring: z.number(),
  /** Every app's traffic through the router, added up per 10 seconds over the last 10 minutes, oldest first. */
  traffic: z.array(z.object({ at: z.string(), requestsPerSecond: z.number(), p95Ms: z.number().nullable() })),
});

/** How far back the platform's traffic series reaches. */
const TRAFFIC_WINDOW_MS = 10 * 60_000;

/** The apps' whole-app 10-second rows as one series: each period's rows (every app, every machine) added together. */
export function platformTraffic(rows: readonly MetricSample[]): { at: string; requestsPerSecond: number; p95Ms: number | null }[] {
  const periods = new Map<number, MetricSample[]>();
  for (const r of rows) {
    if (r.process !== "") continue;
    const list = periods.get(r.at);
    if (list) list.push(r);
    else periods.set(r.at, [r]);
  }
  return [...periods.entries()].sort((a, b) => a[0] - b[0]).map(([, list]) => {
    const p = toPoint(mergeSources(list));
    return { at: p.at, requestsPerSecond: p.requestsPerSecond, p95Ms: p.p95Ms };
  });
}

export type PlatformHealth = z.infer<typeof platformHealth>;

/** How long the router is given to answer before it counts as down. */
const ROUTER_PROBE_MS = 500;

async function readDisk(dir: string): Promise<{ diskTotal: number | null; diskFree: number | null }> {
  try {
    const s = await statfs(dir);
    return { diskTotal: s.blocks * s.bsize, diskFree: s.bavail * s.bsize };
  } catch {
    // A data dir that cannot be read is reported as unknown, not as a full disk.
    return { diskTotal: null, diskFree: null };
  }
}

/** Reads every figure of the platform health; a database that does not answer shows as down, the rest as empty. */
export async function readPlatformHealth(deps: DeployDeps): Promise<PlatformHealth> {
  const started = performance.now();
  const dbUp = await deps.db.oneFirst(q`SELECT 1`).then(() => true, (e: Error) => {
    deps.log(`platform health: the database did not answer: ${e.message}`);
    return false;
  });
  const latencyMs = dbUp ? Math.round((performance.now() - started) * 10) / 10 : null;
  const now = Date.now();
  const [disk, router, routerRows, builderRows, queue, firing, samples] = await Promise.all([
    readDisk(deps.config.dataDir),
    probeRouter(deps.paths.routerSocket, ROUTER_PROBE_MS),
    dbUp ? deps.db.any(q`SELECT id, label, last_seen, route_version, extract(epoch FROM now() - last_seen) AS age FROM router_nodes ORDER BY label, id`) : [],
    dbUp ? deps.db.any(q`SELECT b.name, b.capacity, b.last_seen, extract(epoch FROM now() - b.last_seen) AS age,
        (SELECT count(*) FROM build_queue w WHERE w.builder = b.name AND w.running) AS running
      FROM builder_nodes b ORDER BY b.name`) : [],
    dbUp ? deps.db.one(q`SELECT count(*) FILTER (WHERE NOT running) AS waiting, count(*) FILTER (WHERE running) AS running FROM build_queue`) : { waiting: 0, running: 0 },
    dbUp ? deps.db.oneFirst(q`SELECT count(*) FROM alert_states WHERE status = 'firing'`) : 0,
    dbUp ? listAppSamplesBetween(deps.db, 10, now - TRAFFIC_WINDOW_MS, now) : [],
  ]);
  const age = (v: unknown) => Math.max(0, Math.round(Number(v)));
  return {
    host: { cpus: cpus().length, load1: loadavg()[0], memTotal: totalmem(), memFree: freemem(), ...disk },
    services: [
      { name: "api", up: true },
      { name: "database", up: dbUp, latencyMs },
      {
        name: "router",
        up: router !== undefined,
        routerNodes: routerRows.map((r) => ({ name: String(r.label || r.id), lastSeen: toIso(r.last_seen), heartbeatAgeSeconds: age(r.age), routeVersion: Number(r.route_version) })),
      },
      {
        name: "builders",
        builderNodes: builderRows.map((r) => ({ name: String(r.name), capacity: Number(r.capacity), running: Number(r.running), lastSeen: toIso(r.last_seen), heartbeatAgeSeconds: age(r.age) })),
      },
    ],
    buildQueue: { waiting: Number(queue.waiting), running: Number(queue.running) },
    alertsFiring: Number(firing),
    traffic: platformTraffic(samples),
  };
}

defineRoute({
  method: "get", path: "/health/platform", scope: "admin", tag: "meta", summary: "Host, database, router, builders, build queue and firing alerts (platform admins)",
  response: platformHealth,
  handler: async ({ deps, caller }) => {
    if (!caller.actor.isAdmin) throw new DeckError("forbidden", "permission denied: only platform admins see the platform's health");
    return readPlatformHealth(deps);
  },
});
