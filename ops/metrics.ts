import { bucketSamples, DeckError, decide, toPoint, type MetricPoint } from "../core/index.ts";
import type { DeployDeps } from "../deploy/index.ts";
import { listSamples } from "../store/queries/index.ts";
import { authorizeApp, type Caller } from "./access.ts";
import { listVisibleApps } from "./apps.ts";

/** `1h`, `30m`, `2d`, `90s` (or plain seconds) → seconds; at most 400 days (what is kept). */
export function parseSince(text: string): number {
  const m = /^(\d{1,6})([smhd]?)$/.exec(text.trim());
  const n = m ? Number(m[1]) * ({ "": 1, s: 1, m: 60, h: 3600, d: 86_400 } as Record<string, number>)[m[2]!]! : NaN;
  if (!Number.isFinite(n) || n < 10 || n > 400 * 86_400) throw new DeckError("bad_argument", `--since takes a duration from 10s to 400d such as 30m, 1h or 7d, got "${text.slice(0, 20)}"`);
  return n;
}

/** The stored resolution a period is read from: 10-second samples for 6 hours, minutes for 14 days, hours beyond. */
export function resolutionFor(sinceSeconds: number): number {
  return sinceSeconds <= 6 * 3600 ? 10 : sinceSeconds <= 14 * 86_400 ? 60 : 3600;
}

export interface AppMetrics {
  app: string;
  /** The period, ending now. */
  since: string;
  until: string;
  /** Seconds each point covers. */
  step: number;
  /** Seconds each stored sample covers (10, 60 or 3600). */
  resolution: number;
  /** The app as a whole (router traffic, all processes together), oldest first; a step without samples is absent. */
  points: MetricPoint[];
  /** Each process of the live release (web.1, worker.1 …): CPU, memory, restarts, connections. */
  processes: Record<string, MetricPoint[]>;
}

/** An app's measurements over the last `sinceSeconds`, in steps of `stepSeconds` (default: about 60 points). */
export async function appMetrics(deps: DeployDeps, caller: Caller, name: string, sinceSeconds: number, stepSeconds?: number, now = Date.now()): Promise<AppMetrics> {
  const app = await authorizeApp(deps.db, caller, "app:read", name);
  const resolution = resolutionFor(sinceSeconds);
  let step = stepSeconds ?? Math.max(resolution, Math.ceil(sinceSeconds / 60 / resolution) * resolution);
  if (step < resolution || step % resolution !== 0) {
    throw new DeckError("bad_argument", `step must be a multiple of ${resolution} s for a period of ${sinceSeconds} s (samples over it are ${resolution} s apart)`);
  }
  if (sinceSeconds / step > 2000) throw new DeckError("bad_argument", `at most 2000 points: use a step of at least ${Math.ceil(sinceSeconds / 2000 / resolution) * resolution} s`);
  const to = now;
  const from = now - sinceSeconds * 1000;
  // Steps line up with the samples' own times, so each falls into one step whole.
  const start = from - (from % (step * 1000));
  const whole = await listSamples(deps.db, app.id, resolution, start, to, "app");
  const each = await listSamples(deps.db, app.id, resolution, start, to, "processes");
  const processes: Record<string, MetricPoint[]> = {};
  for (const proc of [...new Set(each.map((s) => s.process))].sort()) {
    processes[proc] = bucketSamples(each.filter((s) => s.process === proc), start, to, step).map(toPoint);
  }
  step = Math.round(step);
  return {
    app: app.name, since: new Date(from).toISOString(), until: new Date(to).toISOString(), step, resolution,
    points: bucketSamples(whole, start, to, step).map(toPoint), processes,
  };
}

/**
 * The router's Prometheus text cut down to what `caller` administers: every series of an app whose org
 * (or the app itself) they are an admin of. Platform admins get all of it, deck's own included.
 */
export async function prometheusFor(deps: DeployDeps, caller: Caller, text: string): Promise<string> {
  if (caller.actor.isAdmin) return text;
  const mine = new Set((await listVisibleApps(deps, caller)).filter((a) => decide(caller.actor, "alerts:manage", { orgId: a.orgId, appId: a.id }).allow).map((a) => a.name));
  if (mine.size === 0) throw new DeckError("forbidden", "/metrics shows the apps you administer, and you administer none (permission: admin of an org or an app)");
  return text.split("\n").filter((line) => {
    if (line.startsWith("#") || line === "") return true;
    const app = /[{,]app="([^"\\]*)"/.exec(line)?.[1];
    return app !== undefined && mine.has(app);
  }).join("\n");
}
