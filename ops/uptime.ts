/**
 * What deck reports of an app's uptime (monitor/uptime): per day, the health checks deck's servers and
 * router nodes made and how many failed, and how many of the app's real requests were answered without
 * a 5xx (passive availability); and the incidents, from the checks or from the traffic.
 */
import { DeckError } from "../core/index.ts";
import type { DeployDeps } from "../deploy/index.ts";
import { trafficDaysOf, uptimeDaysOf, uptimeIncidentsOf, type UptimeDayRow, type UptimeIncidentRow } from "../store/queries/uptime.ts";
import { authorizeApp, type Caller } from "./access.ts";

export const UPTIME_DEFAULT_DAYS = 90;
export const UPTIME_MAX_DAYS = 400;
/** Incidents listed at most; the daily figures count every one. */
export const UPTIME_MAX_INCIDENTS = 500;

export interface UptimeDay {
  /** UTC day, YYYY-MM-DD. */
  day: string;
  checks: number;
  failures: number;
  /** Percent of good checks, cut (not rounded) to 3 decimals, so 100 means no failed check; null without checks. */
  uptimePercent: number | null;
  /** The app's requests through the router that day, and how many were answered 5xx. */
  requests: number;
  failedRequests: number;
  /** Percent of requests answered without a 5xx, cut like uptimePercent; null without requests. */
  availabilityPercent: number | null;
}

export interface UptimeIncident {
  startedAt: string;
  /** Null while it lasts. */
  endedAt: string | null;
  /** Until it ended, or until now. */
  durationSeconds: number;
  cause: string;
  source: "probe" | "traffic";
  /** Where failing checks came from: '' deck's servers, 'HOST:PORT' a router node. */
  location: string;
}

export interface UptimeReport {
  app: string;
  /** The days asked for; days before the app existed are left out of `daily`. */
  days: number;
  checks: number;
  failures: number;
  uptimePercent: number | null;
  requests: number;
  failedRequests: number;
  availabilityPercent: number | null;
  /** Newest first. */
  daily: UptimeDay[];
  /** Newest first: those still open or ended within the period. */
  incidents: UptimeIncident[];
}

/** An app's uptime over the last `days` UTC days, today included (needs app:read). */
export async function uptimeReport(deps: DeployDeps, caller: Caller, appName: string, days: number = UPTIME_DEFAULT_DAYS): Promise<UptimeReport> {
  if (!Number.isInteger(days) || days < 1 || days > UPTIME_MAX_DAYS) {
    throw new DeckError("bad_argument", `days must be a whole number from 1 to ${UPTIME_MAX_DAYS}`);
  }
  const app = await authorizeApp(deps.db, caller, "app:read", appName);
  const now = new Date();
  const period = uptimePeriod(now, days, app.createdAt);
  const first = period[period.length - 1]!;
  const [rows, traffic, incidents] = await Promise.all([
    uptimeDaysOf(deps.db, app.id, first),
    trafficDaysOf(deps.db, app.id, first),
    uptimeIncidentsOf(deps.db, app.id, `${first}T00:00:00Z`, UPTIME_MAX_INCIDENTS),
  ]);
  return buildUptimeReport({ app: app.name, days, period, rows, traffic, incidents, now });
}

/** The UTC days shown, newest first: the last `days` days, none before the app was created. */
export function uptimePeriod(now: Date, days: number, createdAt: string): string[] {
  const dayMs = 86_400_000;
  const today = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
  const created = new Date(createdAt);
  const first = Math.max(today - (days - 1) * dayMs, Date.UTC(created.getUTCFullYear(), created.getUTCMonth(), created.getUTCDate()));
  const out: string[] = [];
  for (let d = today; d >= Math.min(first, today); d -= dayMs) out.push(new Date(d).toISOString().slice(0, 10));
  return out;
}

/** Percent of good checks cut to 3 decimals: 1 failure in 100,000 checks is 99.999, never 100. */
export function uptimePercent(checks: number, failures: number): number | null {
  if (checks <= 0) return null;
  return Math.floor(((checks - failures) * 100_000) / checks) / 1000;
}

export interface UptimeReportInput {
  app: string;
  days: number;
  period: string[];
  rows: UptimeDayRow[];
  traffic?: Array<{ day: string; requests: number; failed: number }>;
  incidents: UptimeIncidentRow[];
  now: Date;
}

export function buildUptimeReport(input: UptimeReportInput): UptimeReport {
  const byDay = new Map(input.rows.map((r) => [r.day, r]));
  const trafficByDay = new Map((input.traffic ?? []).map((r) => [r.day, r]));
  const daily = input.period.map((day) => {
    const r = byDay.get(day);
    const checks = r?.checks ?? 0;
    const failures = r?.failures ?? 0;
    const requests = trafficByDay.get(day)?.requests ?? 0;
    const failedRequests = trafficByDay.get(day)?.failed ?? 0;
    return { day, checks, failures, uptimePercent: uptimePercent(checks, failures), requests, failedRequests, availabilityPercent: uptimePercent(requests, failedRequests) };
  });
  const checks = daily.reduce((n, d) => n + d.checks, 0);
  const failures = daily.reduce((n, d) => n + d.failures, 0);
  const requests = daily.reduce((n, d) => n + d.requests, 0);
  const failedRequests = daily.reduce((n, d) => n + d.failedRequests, 0);
  const incidents = input.incidents.map((i) => ({
    startedAt: i.startedAt,
    endedAt: i.endedAt,
    durationSeconds: Math.max(0, Math.round(((i.endedAt ? Date.parse(i.endedAt) : input.now.getTime()) - Date.parse(i.startedAt)) / 1000)),
    cause: i.cause,
    source: i.source,
    location: i.location,
  }));
  return {
    app: input.app, days: input.days, checks, failures, uptimePercent: uptimePercent(checks, failures),
    requests, failedRequests, availabilityPercent: uptimePercent(requests, failedRequests), daily, incidents,
  };
}

/** "99.931%", or "-" for a day without checks. */
export function formatUptimePercent(p: number | null): string {
  return p === null ? "-" : `${p.toFixed(3)}%`;
}

/** "45s", "3m 10s", "2h 5m", "4d 1h". */
export function formatUptimeDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86_400)}d ${Math.floor((s % 86_400) / 3600)}h`;
}
