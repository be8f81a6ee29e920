import { randomUUID } from "node:crypto";
import type { DatabasePool } from "slonik";
import { q, sql } from "../../store/queries/db.ts";
import {
  changeTrafficIncident, claimUptimeRound, openTrafficIncidents, pruneUptime, recordUptimeRound, sumTraffic, type UptimeCheckRecord, type UptimeClaim,
} from "../../store/queries/uptime.ts";
import { probeApp } from "./http-probe.ts";
import { stepProbeState, type CheckResult } from "./probe-state.ts";
import { judgeTraffic } from "./traffic.ts";

/**
 * Active uptime probes. Every interval, each app with a live release that is not stopped and not in
 * maintenance gets a GET of its health check path through deck's router with `Host: APP.DOMAIN`, the
 * way its users reach it. Two failed checks in a row open an incident, two good ones end it; each check
 * counts toward the app's uptime for its UTC day (`uptime APP`).
 *
 * Deck servers sharing a database take turns: a round claims the apps that are due (store/queries/
 * uptime.ts), so each app is checked once per interval, by whichever server's round comes first. A
 * router node probes every app through itself as a location of its own, with its own incidents.
 *
 * Deck's servers also judge the apps' real traffic each round (traffic.ts): most requests failing opens
 * a 'traffic' incident.
 */

/** An app went down (an incident opened) or came back up (it ended). */
export interface UptimeChange {
  app: string;
  appId: number;
  orgId: number;
  down: boolean;
  /** The failure: "HTTP 502", "timed out after 5 s", "connection refused". Coming back up: what it was down with. */
  cause: string;
  /** When it went down (the first failed check), or came back (the first good check, or when probing stopped). */
  since: string;
  /** Health checks ('probe') or the app's real requests ('traffic'). */
  source: "probe" | "traffic";
  /** Where the checks came from: '' deck's servers, 'HOST:PORT' a router node. */
  location: string;
}

export interface UptimeProberOptions {
  db: DatabasePool;
  /** The router's HTTP port (DECK_HTTP_PORT). */
  httpPort: number;
  /** Apps are probed as APP.DOMAIN (DECK_DOMAIN). */
  domain: string;
  /** Address the router is reached at; default 127.0.0.1. */
  host?: string;
  /** Time between rounds; default 30 s. */
  intervalMs?: number;
  /** How long one check may take; default 5 s. */
  timeoutMs?: number;
  /** Checks under way at once; default 16. */
  concurrency?: number;
  log: (line: string) => void;
  onChange?: (event: UptimeChange) => void | Promise<void>;
  /** The router's secret for deck's own checks (router/request-recorder.ts): they are not metered as the app's traffic. */
  probeToken?: string;
  /** '' (default) for deck's servers, which take turns and also judge real traffic; 'HOST:PORT' for a router node. */
  location?: string;
}

export const UPTIME_INTERVAL_MS = 30_000;
export const UPTIME_TIMEOUT_MS = 5_000;
const PRUNE_EVERY_MS = 3_600_000;
/** The advisory lock one server at a time judges real traffic under. */
const TRAFFIC_LOCK_KEY = 4_711_027;

type ProberState = { kind: "idle" } | { kind: "running"; timer: NodeJS.Timeout | null; round: Promise<void> | null; abort: AbortController } | { kind: "stopped" };

export class UptimeProber {
  private readonly intervalMs: number;
  private readonly timeoutMs: number;
  private readonly concurrency: number;
  private state: ProberState = { kind: "idle" };
  private failing = false;
  private prunedAt = 0;

  constructor(private readonly o: UptimeProberOptions) {
    this.intervalMs = o.intervalMs ?? UPTIME_INTERVAL_MS;
    this.timeoutMs = o.timeoutMs ?? UPTIME_TIMEOUT_MS;
    this.concurrency = o.concurrency ?? 16;
  }

  start(): void {
    if (this.state.kind !== "idle") return;
    this.state = { kind: "running", timer: null, round: null, abort: new AbortController() };
    this.schedule(0);
  }

  /** Ends the round under way (its unfinished checks count for nothing) and probes no more. */
  async stop(): Promise<void> {
    const s = this.state;
    this.state = { kind: "stopped" };
    if (s.kind !== "running") return;
    if (s.timer) clearTimeout(s.timer);
    s.abort.abort();
    await s.round;
  }

  private schedule(delayMs: number): void {
    const s = this.state;
    if (s.kind !== "running") return;
    s.timer = setTimeout(() => {
      s.timer = null;
      const started = Date.now();
      s.round = this.round(s.abort.signal).finally(() => {
        s.round = null;
        this.schedule(Math.max(0, this.intervalMs - (Date.now() - started)));
      });
    }, delayMs);
    s.timer.unref();
  }

  private async round(signal: AbortSignal): Promise<void> {
    try {
      await this.probeDueApps(signal);
      if (this.failing) this.o.log("uptime: probing again");
      this.failing = false;
    } catch (e) {
      if (!this.failing) this.o.log(`uptime: a probe round failed (retrying every ${this.intervalMs / 1000} s): ${(e as Error).message}`);
      this.failing = true;
    }
  }

  private get location(): string {
    return this.o.location ?? "";
  }

  private async probeDueApps(signal: AbortSignal): Promise<void> {
    const round = randomUUID();
    const at = new Date().toISOString();
    if (this.location === "") await this.judgeTraffic(at);
    const claim = await claimUptimeRound(this.o.db, {
      round,
      location: this.location,
      dueMs: this.intervalMs * 0.8,
      // A server that stopped mid-round leaves its claim; another takes the apps over after this.
      staleMs: 2 * this.intervalMs + this.timeoutMs + 5_000,
    });
    if (claim === null) return;
    for (const r of claim.released) {
      if (!r.incident) continue;
      this.o.log(`uptime: the incident of ${r.app} ended: it is no longer probed (stopped, in maintenance or without a live release)`);
      await this.tell({ app: r.app, appId: r.appId, orgId: r.orgId, down: false, cause: r.incident.cause, since: r.incident.endedAt, source: "probe", location: this.location });
    }
    const results = await this.checkAll(claim.claimed, signal);
    if (signal.aborted) return;
    const records: UptimeCheckRecord[] = claim.claimed.map((c, i) => {
      const check = results[i] as CheckResult;
      return { appId: c.appId, ok: check.ok, ...stepProbeState(c.probe, check, at) };
    });
    const written = await recordUptimeRound(this.o.db, round, at.slice(0, 10), records, this.location);
    for (const [i, r] of records.entries()) {
      if (!r.incident || !written.has(r.appId)) continue;
      const c = claim.claimed[i]!;
      const base = { app: c.app, appId: c.appId, orgId: c.orgId, source: "probe" as const, location: this.location };
      if (r.incident.kind === "open") {
        this.o.log(`uptime: ${c.app} is down since ${r.incident.startedAt}: ${r.incident.cause}`);
        await this.tell({ ...base, down: true, cause: r.incident.cause, since: r.incident.startedAt });
      } else {
        this.o.log(`uptime: ${c.app} is up again since ${r.incident.endedAt}`);
        await this.tell({ ...base, down: false, cause: c.probe.cause ?? "", since: r.incident.endedAt });
      }
    }
    if (this.location === "" && Date.now() - this.prunedAt >= PRUNE_EVERY_MS) {
      await pruneUptime(this.o.db);
      this.prunedAt = Date.now();
    }
  }

  /** Opens and ends 'traffic' incidents from the last minutes of samples; one server at a time. */
  private async judgeTraffic(at: string): Promise<void> {
    const now = Date.parse(at);
    const changes = await this.o.db.transaction(async (tx) => {
      if (!(await tx.oneFirst(q`SELECT pg_try_advisory_xact_lock(${TRAFFIC_LOCK_KEY})`))) return [];
      const [minute, recent, open] = await Promise.all([sumTraffic(tx, now - 60_000, now), sumTraffic(tx, now - 300_000, now), openTrafficIncidents(tx)]);
      const out: Array<{ appId: number; change: ReturnType<typeof judgeTraffic> & object }> = [];
      for (const appId of new Set([...minute.keys(), ...open.keys()])) {
        const m = minute.get(appId) ?? { requests: 0, failed: 0 };
        const change = judgeTraffic({ ...m, recentRequests: recent.get(appId)?.requests ?? 0 }, open.has(appId), at);
        if (change && (await changeTrafficIncident(tx, appId, change))) out.push({ appId, change });
      }
      if (out.length === 0) return [];
      const names = await tx.any(q`SELECT id, name, org_id FROM apps WHERE id = ANY(${sql.array(out.map((o) => o.appId), "int8")})`);
      const byId = new Map(names.map((r) => [Number(r.id), { app: String(r.name), orgId: Number(r.org_id) }]));
      return out.flatMap((o) => (byId.has(o.appId) ? [{ ...o, ...byId.get(o.appId)!, openedAt: open.get(o.appId) }] : []));
    });
    for (const c of changes) {
      const base = { app: c.app, appId: c.appId, orgId: c.orgId, source: "traffic" as const, location: "" };
      if (c.change.kind === "open") {
        this.o.log(`uptime: ${c.app} fails its users since ${c.change.startedAt}: ${c.change.cause}`);
        await this.tell({ ...base, down: true, cause: c.change.cause, since: c.change.startedAt });
      } else {
        this.o.log(`uptime: ${c.app} answers its users again since ${c.change.endedAt}`);
        await this.tell({ ...base, down: false, cause: "", since: c.change.endedAt });
      }
    }
  }

  /** Probes every claimed app, `concurrency` at a time; results in the claims' order. */
  private async checkAll(claims: readonly UptimeClaim[], signal: AbortSignal): Promise<Array<CheckResult | "aborted">> {
    const results: Array<CheckResult | "aborted"> = new Array(claims.length);
    let next = 0;
    const worker = async () => {
      while (next < claims.length && !signal.aborted) {
        const i = next++;
        const c = claims[i]!;
        results[i] = await probeApp({
          host: this.o.host ?? "127.0.0.1", port: this.o.httpPort, hostHeader: `${c.app}.${this.o.domain}`,
          path: c.healthCheckPath, timeoutMs: this.timeoutMs, signal, probeToken: this.o.probeToken,
        });
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.concurrency, claims.length) }, worker));
    return results;
  }

  private async tell(event: UptimeChange): Promise<void> {
    try {
      await this.o.onChange?.(event);
    } catch (e) {
      this.o.log(`uptime: handling ${event.app} going ${event.down ? "down" : "up"} failed: ${(e as Error).message}`);
    }
  }
}
