import { randomUUID } from "node:crypto";
import type { DatabasePool } from "slonik";
import {
  claimUptimeRound, pruneUptime, recordUptimeRound, type UptimeCheckRecord, type UptimeClaim,
} from "../../store/queries/uptime.ts";
import { probeApp } from "./http-probe.ts";
import { stepProbeState, type CheckResult } from "./probe-state.ts";

/**
 * Active uptime probes. Every interval, each app with a live release that is not stopped and not in
 * maintenance gets a GET of its health check path through deck's router with `Host: APP.DOMAIN`, the
 * way its users reach it. Two failed checks in a row open an incident, two good ones end it; each check
 * counts toward the app's uptime for its UTC day (`uptime APP`).
 *
 * Deck servers sharing a database take turns: a round claims the apps that are due (store/queries/
 * uptime.ts), so each app is checked once per interval, by whichever server's round comes first.
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
}

export const UPTIME_INTERVAL_MS = 30_000;
export const UPTIME_TIMEOUT_MS = 5_000;
const PRUNE_EVERY_MS = 3_600_000;

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

  private async probeDueApps(signal: AbortSignal): Promise<void> {
    const round = randomUUID();
    const at = new Date().toISOString();
    const claim = await claimUptimeRound(this.o.db, {
      round,
      dueMs: this.intervalMs * 0.8,
      // A server that stopped mid-round leaves its claim; another takes the apps over after this.
      staleMs: 2 * this.intervalMs + this.timeoutMs + 5_000,
    });
    if (claim === null) return;
    for (const r of claim.released) {
      if (!r.incident) continue;
      this.o.log(`uptime: the incident of ${r.app} ended: it is no longer probed (stopped, in maintenance or without a live release)`);
      await this.tell({ app: r.app, appId: r.appId, orgId: r.orgId, down: false, cause: r.incident.cause, since: r.incident.endedAt });
    }
    const results = await this.checkAll(claim.claimed, signal);
    if (signal.aborted) return;
    const records: UptimeCheckRecord[] = claim.claimed.map((c, i) => {
      const check = results[i] as CheckResult;
      return { appId: c.appId, ok: check.ok, ...stepProbeState(c.probe, check, at) };
    });
    const written = await recordUptimeRound(this.o.db, round, at.slice(0, 10), records);
    for (const [i, r] of records.entries()) {
      if (!r.incident || !written.has(r.appId)) continue;
      const c = claim.claimed[i]!;
      const base = { app: c.app, appId: c.appId, orgId: c.orgId };
      if (r.incident.kind === "open") {
        this.o.log(`uptime: ${c.app} is down since ${r.incident.startedAt}: ${r.incident.cause}`);
        await this.tell({ ...base, down: true, cause: r.incident.cause, since: r.incident.startedAt });
      } else {
        this.o.log(`uptime: ${c.app} is up again since ${r.incident.endedAt}`);
        await this.tell({ ...base, down: false, cause: c.probe.cause ?? "", since: r.incident.endedAt });
      }
    }
    if (Date.now() - this.prunedAt >= PRUNE_EVERY_MS) {
      await pruneUptime(this.o.db);
      this.prunedAt = Date.now();
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
