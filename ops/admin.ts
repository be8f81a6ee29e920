/**
 * What platform admins look at across every app and org: the build queue, alerts, security events
 * and the whole audit trail. Each view refuses anyone else, and the refusal is audited.
 */
import { appAlertRules, formatAlertRule, parseAlertDuration, type AlertKind, type AlertState } from "../core/alerts.ts";
import { DeckError } from "../core/index.ts";
import type { DeployDeps } from "../deploy/index.ts";
import {
  listAlertHistory, listAlertingApps, listAuditEntries, listDeniedActions, listFailedSignIns, listFinishedBuilds, listNewSshKeys, listNewTokens,
  listQueuedBuilds, listTrafficBaselines, type AuditEntryRow, type AuditFilter,
} from "../store/queries/admin.ts";
import { listAlertRulesOfApps, listAlertStatesOfApps, listRecentAppSamples } from "../store/queries/alerts.ts";
import { audit } from "../store/queries/index.ts";
import { refusedBy, type Caller } from "./access.ts";
import { classifyFailure } from "./builds.ts";

/**
 * Refuses anyone but a platform admin, naming what they asked for ("see the build queue"); the refusal
 * goes to the audit log as `admin:view` of `view`.
 */
export async function requirePlatformAdmin(deps: Pick<DeployDeps, "db">, caller: Caller, view: string, what: string): Promise<void> {
  if (caller.user.isAdmin) return;
  const { userId, ...data } = refusedBy(caller);
  await audit(deps.db, { userId, action: "admin:view", target: view, sourceIp: caller.sourceIp, result: "denied", data });
  throw new DeckError("forbidden", `permission denied: only platform admins ${what}`);
}

const ageSeconds = (from: string, to: string | null): number | null => (to === null ? null : Math.max(0, Math.round((Date.parse(to) - Date.parse(from)) / 1000)));

// ---------- GET /builds ----------

export interface QueuedBuildView {
  app: string;
  org: string;
  /** The build's id (GET /apps/APP/builds/ID); null until it starts. */
  id: number | null;
  state: "queued" | "running";
  /** Place in line for a build slot (1 = next); null while it waits for its app's turn, or runs. */
  position: number | null;
  commit: string | null;
  builder: string | null;
  queuedAt: string;
  startedAt: string | null;
  /** Seconds it has been running, or waiting while queued. */
  elapsedSeconds: number;
}

export interface RecentBuildView {
  app: string;
  org: string;
  id: number;
  status: string;
  commit: string | null;
  startedAt: string | null;
  finishedAt: string | null;
  durationSeconds: number | null;
  error: string | null;
}

/** The build queue across every app, and the `recent` newest builds that are over. */
export async function buildQueueOverview(deps: DeployDeps, caller: Caller, recent: number): Promise<{ items: QueuedBuildView[]; recent: RecentBuildView[] }> {
  await requirePlatformAdmin(deps, caller, "builds", "see the build queue of every app");
  const [queued, finished] = await Promise.all([listQueuedBuilds(deps.db), recent > 0 ? listFinishedBuilds(deps.db, recent) : []]);
  return {
    items: queued.map((b) => ({
      app: b.app, org: b.org, id: b.buildId, state: b.running ? "running" : "queued", position: b.running ? null : b.position, commit: b.commit,
      builder: b.builder, queuedAt: b.queuedAt, startedAt: b.startedAt, elapsedSeconds: b.elapsedSeconds,
    })),
    recent: finished.map((b) => {
      // A build row left `building` by a deck server that stopped mid-build belongs to a deployment that ended.
      const status = b.buildStatus === "succeeded" ? "succeeded" : b.buildStatus === "failed" ? classifyFailure(b.error, b.errorCode) : "interrupted";
      return {
        app: b.app, org: b.org, id: b.id, status, commit: b.commit, startedAt: b.startedAt, finishedAt: b.finishedAt,
        durationSeconds: ageSeconds(b.startedAt, b.finishedAt), error: status === "succeeded" ? null : b.error,
      };
    }),
  };
}

// ---------- GET /alerts ----------

export interface ActiveAlertView {
  app: string;
  org: string;
  ruleId: string;
  rule: string;
  kind: AlertKind;
  /** `silenced`: pending or firing while the app's notices are held. */
  state: "firing" | "pending" | "silenced";
  value: string | null;
  since: string | null;
}

export interface AlertHistoryView {
  at: string;
  app: string;
  org: string;
  rule: string;
  status: "firing" | "resolved" | "rolled_back" | "rollback_failed";
  value: string | null;
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** Where an active rule stands as an admin reads it (as GET /apps/APP/alerts words it). */
function activeState(s: AlertState, silenced: boolean): Pick<ActiveAlertView, "state" | "value" | "since"> {
  const state = silenced ? "silenced" : s.status === "firing" ? "firing" : "pending";
  return { state, value: s.words ? s.words : null, since: iso(s.status === "firing" ? s.firedAt : s.pendingSince) };
}

/** How the alert evaluator words a rollback in its notice, from the audit entry it wrote. */
function rollbackWords(data: Record<string, unknown>, ok: boolean): string | null {
  if (data.from === undefined) return null;
  return ok ? `rolled back from v${data.from} to v${data.to} (now v${data.version})` : `rolling back from v${data.from} failed: ${String(data.error ?? "")}`;
}

/** Every rule pending or firing now across all apps, firing first; and the `history` newest alert events. */
export async function alertsOverview(deps: DeployDeps, caller: Caller, history: number): Promise<{ firing: ActiveAlertView[]; history: AlertHistoryView[] }> {
  await requirePlatformAdmin(deps, caller, "alerts", "see the alerts of every app");
  const apps = await listAlertingApps(deps.db);
  const ids = apps.map((a) => a.id);
  const [stored, states, events] = await Promise.all([
    listAlertRulesOfApps(deps.db, ids), listAlertStatesOfApps(deps.db, ids), history > 0 ? listAlertHistory(deps.db, history) : [],
  ]);
  const firing: ActiveAlertView[] = [];
  for (const app of apps) {
    const appStates = states.get(app.id);
    // Only rules the app has now: a state left by a rule removed since is not an alert.
    for (const rule of appAlertRules(stored.get(app.id) ?? [], app.defaultsRemoved)) {
      const s = appStates?.get(rule.id);
      if (s?.status !== "firing" && s?.status !== "pending") continue;
      firing.push({ app: app.name, org: app.org, ruleId: rule.id, rule: formatAlertRule(rule.spec), kind: rule.spec.kind, ...activeState(s, app.silenced) });
    }
  }
  const rank = { firing: 0, silenced: 1, pending: 2 } as const;
  firing.sort((a, b) => rank[a.state] - rank[b.state] || (a.since ?? "").localeCompare(b.since ?? ""));
  return {
    firing,
    history: events.map((e) => ({
      at: e.at, app: e.app, org: e.org, rule: e.rule, status: e.status, value: e.rollback ? rollbackWords(e.rollback, e.status === "rolled_back") : e.words,
    })),
  };
}

// ---------- GET /security ----------

/** The longest look back: a quarter. */
export const MAX_SECURITY_SECONDS = 90 * 86_400;
/** Each list of the security view shows at most this many entries, newest first. */
export const SECURITY_LIST_LIMIT = 100;
/** The window unusual traffic is judged over, and what makes it unusual. */
export const TRAFFIC_WINDOW_SECONDS = 300;
export const TRAFFIC_RATIO = 3;
export const TRAFFIC_MIN_EXCESS_PER_SECOND = 1;

export interface UnusualTrafficView { app: string; org: string; at: string; requestsPerSecond: number; baselinePerSecond: number; ratio: number }

export interface SecurityView {
  since: string;
  failedSignIns: { at: string; email: string | null; sourceIp: string | null; via: string; reason: string | null; auditId: number }[];
  denied: { at: string; user: string | null; action: string; target: string | null; sourceIp: string | null; via: string | null; auditId: number }[];
  newKeys: { at: string; user: string | null; fingerprint: string | null; title: string | null; auditId: number }[];
  newTokens: { at: string; user: string | null; name: string | null; scopes: string[]; auditId: number }[];
  unusualTraffic: UnusualTrafficView[];
}

/** `24h`, `7d`, `30m` → seconds, up to 90 days. */
export function parseSecuritySince(raw: string): number {
  const seconds = parseAlertDuration(raw);
  if (seconds === null || seconds < 60 || seconds > MAX_SECURITY_SECONDS) {
    throw new DeckError("bad_argument", `"${raw.slice(0, 20)}" is not a period to look back: give one from 1m to 90d, such as 1h, 24h or 7d`);
  }
  return seconds;
}

const round = (n: number, places = 2) => Math.round(n * 10 ** places) / 10 ** places;

/**
 * Apps whose requests per second over the last 5 minutes are at least 3 times their baseline (the same
 * hours of the day over the previous 7 days) and at least 1 request/s above it; most unusual first.
 * An app without a baseline is not judged.
 */
export async function unusualTraffic(deps: Pick<DeployDeps, "db">, nowMs: number): Promise<UnusualTrafficView[]> {
  const from = nowMs - TRAFFIC_WINDOW_SECONDS * 1000;
  const baselines = await listTrafficBaselines(deps.db, from, nowMs);
  if (baselines.length === 0) return [];
  const recent = await listRecentAppSamples(deps.db, baselines.map((b) => b.appId), from, nowMs);
  const out: UnusualTrafficView[] = [];
  for (const b of baselines) {
    const samples = recent.get(b.appId) ?? [];
    const seconds = samples.reduce((n, s) => n + s.seconds, 0);
    if (seconds <= 0) continue;
    const perSecond = samples.reduce((n, s) => n + s.requests, 0) / seconds;
    if (perSecond < TRAFFIC_RATIO * b.perSecond || perSecond - b.perSecond < TRAFFIC_MIN_EXCESS_PER_SECOND) continue;
    const last = samples[samples.length - 1]!;
    out.push({
      app: b.app, org: b.org, at: new Date(last.at + last.seconds * 1000).toISOString(),
      requestsPerSecond: round(perSecond), baselinePerSecond: round(b.perSecond, 3), ratio: round(perSecond / b.perSecond, 1),
    });
  }
  return out.sort((a, b) => b.ratio - a.ratio);
}

/** What a platform admin should look at from the last `sinceSeconds`: failed sign-ins, refusals, new credentials, traffic spikes. */
export async function securityOverview(deps: DeployDeps, caller: Caller, sinceSeconds: number): Promise<SecurityView> {
  await requirePlatformAdmin(deps, caller, "security", "see the platform's security events");
  const now = Date.now();
  const sinceMs = now - sinceSeconds * 1000;
  const [failed, denied, keys, tokens, traffic] = await Promise.all([
    listFailedSignIns(deps.db, sinceMs, SECURITY_LIST_LIMIT),
    listDeniedActions(deps.db, sinceMs, SECURITY_LIST_LIMIT),
    listNewSshKeys(deps.db, sinceMs, SECURITY_LIST_LIMIT),
    listNewTokens(deps.db, sinceMs, SECURITY_LIST_LIMIT),
    unusualTraffic(deps, now),
  ]);
  return {
    since: new Date(sinceMs).toISOString(),
    failedSignIns: failed.map(({ id, ...r }) => ({ ...r, auditId: id })),
    denied: denied.map(({ id, ...r }) => ({ ...r, auditId: id })),
    newKeys: keys.map(({ id, ...r }) => ({ ...r, auditId: id })),
    newTokens: tokens.map(({ id, ...r }) => ({ ...r, auditId: id })),
    unusualTraffic: traffic,
  };
}

// ---------- GET /audit ----------

/** The most entries one request reads. */
export const MAX_AUDIT_LIMIT = 200;

/** The whole audit trail, narrowed by every filter given, newest first. */
export async function auditTrail(deps: DeployDeps, caller: Caller, filter: AuditFilter, limit: number): Promise<{ items: AuditEntryRow[] }> {
  await requirePlatformAdmin(deps, caller, "audit", "see the whole audit trail");
  return { items: await listAuditEntries(deps.db, filter, Math.min(Math.max(1, limit), MAX_AUDIT_LIMIT)) };
}
