import type { AlertKind, AlertRuleSpec, AlertState } from "../../core/alerts.ts";
import { mergeSourceRows, type MetricSample } from "../../core/index.ts";
import { q, sql, toIso, type Db } from "./db.ts";

/** Alert rules, their states and history, silences and rollbacks (migration 028). */

export interface AlertRuleRow {
  id: number;
  appId: number;
  spec: AlertRuleSpec;
  createdBy: number | null;
  createdAt: string;
}

export interface AlertSettingsRow {
  autoRollback: boolean;
  defaultsRemoved: AlertKind[];
}

const toRule = (r: Record<string, unknown>): AlertRuleRow => {
  const extra = (r.extra ?? {}) as { windowSeconds?: number; minRequests?: number };
  const spec: AlertRuleSpec = { kind: String(r.kind) as AlertKind, threshold: Number(r.threshold), forSeconds: Number(r.for_seconds) };
  if (extra.windowSeconds !== undefined) spec.windowSeconds = Number(extra.windowSeconds);
  if (extra.minRequests !== undefined) spec.minRequests = Number(extra.minRequests);
  return { id: Number(r.id), appId: Number(r.app_id), spec, createdBy: r.created_by == null ? null : Number(r.created_by), createdAt: toIso(r.created_at) };
};

export async function listAlertRules(db: Db, appId: number): Promise<AlertRuleRow[]> {
  return (await db.any(q`SELECT * FROM alert_rules WHERE app_id = ${appId} ORDER BY id`)).map(toRule);
}

export async function insertAlertRule(db: Db, r: { appId: number; spec: AlertRuleSpec; createdBy: number | null }): Promise<AlertRuleRow> {
  const extra: Record<string, number> = {};
  if (r.spec.windowSeconds !== undefined) extra.windowSeconds = r.spec.windowSeconds;
  if (r.spec.minRequests !== undefined) extra.minRequests = r.spec.minRequests;
  return toRule(await db.one(q`INSERT INTO alert_rules (app_id, kind, threshold, for_seconds, extra, created_by)
    VALUES (${r.appId}, ${r.spec.kind}, ${r.spec.threshold}, ${r.spec.forSeconds}, ${sql.jsonb(extra)}, ${r.createdBy}) RETURNING *`));
}

/** Removes a rule of the app with where it stood; null when the app has no such rule. */
export async function deleteAlertRule(db: Db, appId: number, id: number): Promise<AlertRuleRow | null> {
  const r = await db.maybeOne(q`DELETE FROM alert_rules WHERE id = ${id} AND app_id = ${appId} RETURNING *`);
  if (r) await deleteAlertState(db, appId, String(id));
  return r ? toRule(r) : null;
}

export async function deleteAlertState(db: Db, appId: number, ruleKey: string): Promise<void> {
  await db.query(q`DELETE FROM alert_states WHERE app_id = ${appId} AND rule_key = ${ruleKey}`);
}

export async function alertSettingsOf(db: Db, appId: number): Promise<AlertSettingsRow> {
  const r = await db.maybeOne(q`SELECT * FROM alert_settings WHERE app_id = ${appId}`);
  return { autoRollback: Boolean(r?.auto_rollback), defaultsRemoved: ((r?.defaults_removed as string[] | undefined) ?? []) as AlertKind[] };
}

/** Marks a default rule of the app removed (or replaced); false when it already was. */
export async function removeDefaultAlertRule(db: Db, appId: number, kind: AlertKind): Promise<boolean> {
  const r = await db.maybeOne(q`INSERT INTO alert_settings (app_id, defaults_removed) VALUES (${appId}, ARRAY[${kind}]::text[])
    ON CONFLICT (app_id) DO UPDATE SET defaults_removed = alert_settings.defaults_removed || ${kind}::text
      WHERE NOT ${kind} = ANY(alert_settings.defaults_removed)
    RETURNING app_id`);
  if (r) await deleteAlertState(db, appId, kind);
  return r !== null;
}

export async function setAutoRollback(db: Db, appId: number, on: boolean): Promise<void> {
  await db.query(q`INSERT INTO alert_settings (app_id, auto_rollback) VALUES (${appId}, ${on})
    ON CONFLICT (app_id) DO UPDATE SET auto_rollback = excluded.auto_rollback`);
}

/** Holds the app's notices until `untilMs`. */
export async function insertAlertSilence(db: Db, s: { appId: number; untilMs: number; createdBy: number | null }): Promise<string> {
  return toIso(await db.oneFirst(q`INSERT INTO alert_silences (app_id, until, created_by) VALUES (${s.appId}, to_timestamp(${s.untilMs} / 1000.0), ${s.createdBy}) RETURNING until`));
}

/** Ends the app's silences now; how many were in force. */
export async function endAlertSilences(db: Db, appId: number): Promise<number> {
  return (await db.query(q`UPDATE alert_silences SET until = now() WHERE app_id = ${appId} AND until > now()`)).rowCount;
}

/** Until when the app's notices are held, or null. */
export async function alertSilenceOf(db: Db, appId: number, atMs: number): Promise<string | null> {
  const v = await db.maybeOneFirst(q`SELECT max(until) FROM alert_silences WHERE app_id = ${appId} AND until > to_timestamp(${atMs} / 1000.0)`);
  return v == null ? null : toIso(v);
}

const ms = (v: unknown): number | null => (v == null ? null : new Date(v as string).getTime());

const toState = (r: Record<string, unknown>): AlertState => ({
  status: String(r.status) as AlertState["status"], pendingSince: ms(r.pending_since), firedAt: ms(r.fired_at), resolvedAt: ms(r.resolved_at),
  lastNotifiedAt: ms(r.last_notified_at), notified: (r.notified ?? null) as AlertState["notified"], noticeCount: Number(r.notice_count),
  value: r.value == null ? null : Number(r.value), words: String(r.words ?? ""),
});

/** Where each rule of the app stands, by rule key. */
export async function alertStatesOf(db: Db, appId: number): Promise<Map<string, AlertState>> {
  const rows = await db.any(q`SELECT * FROM alert_states WHERE app_id = ${appId}`);
  return new Map(rows.map((r) => [String(r.rule_key), toState(r)]));
}

const ts = (v: number | null) => (v === null ? null : sql.fragment`to_timestamp(${v} / 1000.0)`);

export async function saveAlertState(db: Db, appId: number, ruleKey: string, s: AlertState): Promise<void> {
  await db.query(q`INSERT INTO alert_states (app_id, rule_key, status, pending_since, fired_at, resolved_at, last_notified_at, notified, notice_count, value, words, updated_at)
    VALUES (${appId}, ${ruleKey}, ${s.status}, ${ts(s.pendingSince)}, ${ts(s.firedAt)}, ${ts(s.resolvedAt)}, ${ts(s.lastNotifiedAt)}, ${s.notified}, ${s.noticeCount},
            ${s.value}, ${s.words}, now())
    ON CONFLICT (app_id, rule_key) DO UPDATE SET status = excluded.status, pending_since = excluded.pending_since, fired_at = excluded.fired_at,
      resolved_at = excluded.resolved_at, last_notified_at = excluded.last_notified_at, notified = excluded.notified, notice_count = excluded.notice_count,
      value = excluded.value, words = excluded.words, updated_at = now()`);
}

export interface AlertEventRow {
  appId: number;
  ruleKey: string;
  rule: string;
  status: "firing" | "resolved";
  value: number | null;
  words: string;
  at: string;
  notified: boolean;
}

export async function insertAlertEvent(db: Db, e: Omit<AlertEventRow, "at"> & { atMs: number }): Promise<void> {
  await db.query(q`INSERT INTO alert_events (app_id, rule_key, rule, status, value, words, at, notified)
    VALUES (${e.appId}, ${e.ruleKey}, ${e.rule}, ${e.status}, ${e.value}, ${e.words}, to_timestamp(${e.atMs} / 1000.0), ${e.notified})`);
}

/** The app's alert history, newest first. */
export async function listAlertEvents(db: Db, appId: number, limit: number): Promise<AlertEventRow[]> {
  const rows = await db.any(q`SELECT * FROM alert_events WHERE app_id = ${appId} ORDER BY at DESC, id DESC LIMIT ${limit}`);
  return rows.map((r) => ({
    appId: Number(r.app_id), ruleKey: String(r.rule_key), rule: String(r.rule), status: String(r.status) as "firing" | "resolved",
    value: r.value == null ? null : Number(r.value), words: String(r.words), at: toIso(r.at), notified: Boolean(r.notified),
  }));
}

/** One app as an evaluation round sees it. */
export interface AlertApp {
  id: number;
  name: string;
  orgId: number;
  org: string;
  autoRollback: boolean;
  defaultsRemoved: AlertKind[];
  silencedUntil: number | null;
  /** The app's open uptime incident (probe or traffic), if it is down. */
  down: { cause: string; since: string } | null;
  /** The live release and when it first went live (the first deployment of it that succeeded). */
  live: { releaseId: number; version: number; wentLiveAt: number; kind: string; rolledBack: boolean } | null;
}

/** Every app (or the one given), with what a round needs to judge its rules. */
export async function listAlertApps(db: Db, atMs: number, appId?: number): Promise<AlertApp[]> {
  const rows = await db.any(q`
    SELECT a.id, a.name, a.org_id, o.slug AS org, s.auto_rollback, s.defaults_removed,
           (SELECT extract(epoch FROM max(until)) * 1000 FROM alert_silences x WHERE x.app_id = a.id AND x.until > to_timestamp(${atMs} / 1000.0)) AS silenced_until,
           i.cause AS down_cause, i.started_at AS down_since,
           lr.id AS release_id, lr.version, fd.kind AS live_kind, extract(epoch FROM fd.finished_at) * 1000 AS went_live_at,
           EXISTS (SELECT 1 FROM alert_rollbacks rb WHERE rb.release_id = lr.id) AS rolled_back
      FROM apps a
      JOIN organizations o ON o.id = a.org_id
      LEFT JOIN alert_settings s ON s.app_id = a.id
      LEFT JOIN LATERAL (SELECT cause, started_at FROM uptime_incidents u
                          WHERE u.app_id = a.id AND u.ended_at IS NULL AND u.source = 'probe' AND u.location = '' ORDER BY started_at LIMIT 1) i ON true
      LEFT JOIN deployments ld ON ld.id = a.live_deployment_id
      LEFT JOIN releases lr ON lr.id = ld.release_id
      LEFT JOIN LATERAL (SELECT kind, finished_at FROM deployments d WHERE d.release_id = lr.id AND d.status = 'succeeded' AND d.finished_at IS NOT NULL
                          ORDER BY d.finished_at LIMIT 1) fd ON true
     WHERE ${appId ?? null}::bigint IS NULL OR a.id = ${appId ?? null}::bigint
     ORDER BY a.id`);
  return rows.map((r) => ({
    id: Number(r.id), name: String(r.name), orgId: Number(r.org_id), org: String(r.org), autoRollback: Boolean(r.auto_rollback),
    defaultsRemoved: ((r.defaults_removed as string[] | null) ?? []) as AlertKind[],
    silencedUntil: r.silenced_until == null ? null : Number(r.silenced_until),
    down: r.down_since == null ? null : { cause: String(r.down_cause), since: toIso(r.down_since) },
    live: r.release_id == null || r.went_live_at == null ? null
      : { releaseId: Number(r.release_id), version: Number(r.version), wentLiveAt: Number(r.went_live_at), kind: String(r.live_kind), rolledBack: Boolean(r.rolled_back) },
  }));
}

/** The whole-app 10-second samples of the apps in [fromMs, toMs), by app id (every source's row of a period together). */
export async function listRecentAppSamples(db: Db, appIds: readonly number[], fromMs: number, toMs: number): Promise<Map<number, MetricSample[]>> {
  const rows = await db.any(q`
    SELECT app_id, extract(epoch FROM at) * 1000 AS at_ms, seconds, release, cpu_seconds, rss_bytes, memory_limit_bytes, restarts, connections,
           requests, status_2xx, status_3xx, status_4xx, status_5xx, bytes_in, bytes_out, latency
      FROM metric_samples
     WHERE resolution = 10 AND process = '' AND app_id = ANY(${sql.array(appIds, "int8")})
       AND at >= to_timestamp(${fromMs} / 1000.0) AND at < to_timestamp(${toMs} / 1000.0)
     ORDER BY at`);
  const num = (v: unknown) => (v == null ? null : Number(v));
  const out = new Map<number, MetricSample[]>();
  for (const r of rows) {
    const s: MetricSample = {
      at: Number(r.at_ms), seconds: Number(r.seconds), process: "", release: num(r.release), cpuSeconds: num(r.cpu_seconds), rssBytes: num(r.rss_bytes),
      memoryLimitBytes: num(r.memory_limit_bytes), restarts: Number(r.restarts), connections: num(r.connections), requests: Number(r.requests),
      status2xx: Number(r.status_2xx), status3xx: Number(r.status_3xx), status4xx: Number(r.status_4xx), status5xx: Number(r.status_5xx),
      bytesIn: Number(r.bytes_in), bytesOut: Number(r.bytes_out), latency: r.latency ? (r.latency as unknown[]).map(Number) : null,
    };
    const list = out.get(Number(r.app_id));
    if (list) list.push(s);
    else out.set(Number(r.app_id), [s]);
  }
  // A deck server and router nodes each wrote a row for the same 10 seconds: one row per period.
  for (const [id, list] of out) out.set(id, mergeSourceRows(list));
  return out;
}

/** Claims the one rollback a release may get from alerts; false when it had it already. */
export async function claimAlertRollback(db: Db, r: { releaseId: number; appId: number; ruleKey: string }): Promise<boolean> {
  const row = await db.maybeOne(q`INSERT INTO alert_rollbacks (release_id, app_id, rule_key) VALUES (${r.releaseId}, ${r.appId}, ${r.ruleKey})
    ON CONFLICT (release_id) DO NOTHING RETURNING release_id`);
  return row !== null;
}

/** The advisory lock of an evaluation round: one deck server at a time judges the rules. */
const ROUND_LOCK = 0x6465636b616c7274n; // "deckalrt"

/** Takes the round's lock for the transaction `db` is; false when another server holds it. */
export async function tryAlertRoundLock(db: Db): Promise<boolean> {
  return Boolean(await db.oneFirst(q`SELECT pg_try_advisory_xact_lock(${ROUND_LOCK.toString()}::bigint)`));
}

/** The stored rules of the apps, by app id. */
export async function listAlertRulesOfApps(db: Db, appIds: readonly number[]): Promise<Map<number, AlertRuleRow[]>> {
  const rows = (await db.any(q`SELECT * FROM alert_rules WHERE app_id = ANY(${sql.array(appIds, "int8")}) ORDER BY id`)).map(toRule);
  const out = new Map<number, AlertRuleRow[]>();
  for (const r of rows) out.set(r.appId, [...(out.get(r.appId) ?? []), r]);
  return out;
}

/** Where the rules of the apps stand, by app id, then rule key. */
export async function listAlertStatesOfApps(db: Db, appIds: readonly number[]): Promise<Map<number, Map<string, AlertState>>> {
  const rows = await db.any(q`SELECT * FROM alert_states WHERE app_id = ANY(${sql.array(appIds, "int8")})`);
  const out = new Map<number, Map<string, AlertState>>();
  for (const r of rows) {
    const id = Number(r.app_id);
    const m = out.get(id) ?? new Map<string, AlertState>();
    m.set(String(r.rule_key), toState(r));
    out.set(id, m);
  }
  return out;
}
