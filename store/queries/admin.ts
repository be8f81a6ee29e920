import { QUEUE_STALE_SECONDS } from "./app-queue.ts";
import { q, sql, toIso, type Db } from "./db.ts";

/**
 * What platform admins read across every app and org: the build queue, active alerts and their
 * history, the audit log's security events and the whole audit trail, and apps' traffic baselines.
 */

const text = (v: unknown): string | null => (v == null ? null : String(v));
const isoOrNull = (v: unknown): string | null => (v == null ? null : toIso(v));
const json = (v: unknown): Record<string, unknown> => ((typeof v === "string" ? JSON.parse(v) : v) ?? {}) as Record<string, unknown>;

// ---------- build queue ----------

export interface QueuedBuildRow {
  app: string;
  org: string;
  /** The build row, once the build started. */
  buildId: number | null;
  running: boolean;
  /** 1 = next to get a build slot; null while the push waits for its app's turn, or runs. */
  position: number | null;
  commit: string | null;
  /** The builder node running it; null while it waits or when a deck server builds it itself. */
  builder: string | null;
  queuedAt: string;
  startedAt: string | null;
  elapsedSeconds: number;
}

/**
 * Pushes waiting for their build or building, across every app: running ones first (oldest start
 * first), then the waiting in the order they came. A push waits first for its app's turn, then for a
 * build slot (build_queue); its build row exists once it builds.
 */
export async function listQueuedBuilds(db: Db): Promise<QueuedBuildRow[]> {
  const rows = await db.any(q`
    SELECT a.name AS app, o.slug AS org, d.commit_sha, d.created_at AS queued_at, b.id AS build_id, b.started_at,
           (d.status = 'building' OR coalesce(w.running, false)) AS running, w.builder,
           CASE WHEN w.id IS NOT NULL AND NOT w.running AND d.status = 'queued' THEN
             (SELECT count(*) FROM build_queue x WHERE NOT x.running AND x.id <= w.id
                AND x.heartbeat_at >= now() - make_interval(secs => ${QUEUE_STALE_SECONDS})) END AS position,
           extract(epoch FROM now() - coalesce(b.started_at, d.created_at)) AS elapsed
      FROM deployments d
      JOIN apps a ON a.id = d.app_id
      JOIN organizations o ON o.id = a.org_id
      LEFT JOIN LATERAL (SELECT id, started_at FROM builds WHERE deployment_id = d.id ORDER BY id DESC LIMIT 1) b ON true
      LEFT JOIN LATERAL (SELECT id, running, builder FROM build_queue WHERE deployment_id = d.id ORDER BY id DESC LIMIT 1) w ON true
     WHERE d.kind = 'push' AND d.status IN ('queued', 'building')
     ORDER BY (d.status = 'building' OR coalesce(w.running, false)) DESC, coalesce(b.started_at, d.created_at), d.id`);
  return rows.map((r) => ({
    app: String(r.app), org: String(r.org), buildId: r.build_id == null ? null : Number(r.build_id), running: Boolean(r.running),
    position: r.position == null ? null : Number(r.position), commit: text(r.commit_sha), builder: text(r.builder),
    queuedAt: toIso(r.queued_at), startedAt: isoOrNull(r.started_at), elapsedSeconds: Math.max(0, Math.round(Number(r.elapsed))),
  }));
}

export interface FinishedBuildRow {
  id: number;
  app: string;
  org: string;
  /** The build row's status: succeeded, failed, or building when its deployment ended without finishing it (deck stopped). */
  buildStatus: string;
  commit: string;
  startedAt: string;
  finishedAt: string | null;
  error: string | null;
  errorCode: string | null;
}

/** The newest builds that are over, across every app, newest first. */
export async function listFinishedBuilds(db: Db, limit: number): Promise<FinishedBuildRow[]> {
  const rows = await db.any(q`
    SELECT b.id, a.name AS app, o.slug AS org, b.status, b.commit_sha, b.started_at, coalesce(b.finished_at, d.finished_at) AS finished_at, d.error, d.error_code
      FROM builds b
      JOIN apps a ON a.id = b.app_id
      JOIN organizations o ON o.id = a.org_id
      LEFT JOIN deployments d ON d.id = b.deployment_id
     WHERE b.status <> 'building'
        OR d.status IN ('succeeded', 'failed', 'cancelled', 'interrupted')
     ORDER BY b.id DESC
     LIMIT ${limit}`);
  return rows.map((r) => ({
    id: Number(r.id), app: String(r.app), org: String(r.org), buildStatus: String(r.status), commit: String(r.commit_sha), startedAt: toIso(r.started_at),
    finishedAt: isoOrNull(r.finished_at), error: text(r.error), errorCode: text(r.error_code),
  }));
}

// ---------- alerts ----------

export interface AlertingAppRow {
  id: number;
  name: string;
  org: string;
  silenced: boolean;
  defaultsRemoved: string[];
}

/** The apps with a rule pending or firing now, with whether their notices are held. */
export async function listAlertingApps(db: Db): Promise<AlertingAppRow[]> {
  const rows = await db.any(q`
    SELECT a.id, a.name, o.slug AS org, s.defaults_removed,
           EXISTS (SELECT 1 FROM alert_silences x WHERE x.app_id = a.id AND x.until > now()) AS silenced
      FROM apps a
      JOIN organizations o ON o.id = a.org_id
      LEFT JOIN alert_settings s ON s.app_id = a.id
     WHERE EXISTS (SELECT 1 FROM alert_states t WHERE t.app_id = a.id AND t.status IN ('pending', 'firing'))
     ORDER BY o.slug, a.name`);
  return rows.map((r) => ({
    id: Number(r.id), name: String(r.name), org: String(r.org), silenced: Boolean(r.silenced), defaultsRemoved: (r.defaults_removed as string[] | null) ?? [],
  }));
}

export interface AlertHistoryRow {
  at: string;
  app: string;
  org: string;
  rule: string;
  status: "firing" | "resolved" | "rolled_back" | "rollback_failed";
  /** What the rule saw, in words; for a rollback, the audit entry's data to word it from. */
  words: string | null;
  rollback: Record<string, unknown> | null;
}

/**
 * Every app's alert history, newest first: rules firing and resolving (alert_events), and the
 * rollbacks they caused, which the audit log keeps (`alerts:rollback`, written by deck itself).
 */
export async function listAlertHistory(db: Db, limit: number): Promise<AlertHistoryRow[]> {
  const rows = await db.any(q`
    SELECT * FROM (
      SELECT e.at, a.name AS app, o.slug AS org, e.rule, e.status, nullif(e.words, '') AS words, NULL::jsonb AS data, e.id AS seq
        FROM alert_events e JOIN apps a ON a.id = e.app_id JOIN organizations o ON o.id = a.org_id
      UNION ALL
      SELECT l.created_at, a.name, o.slug, coalesce(l.data->>'rule', ''), CASE WHEN l.result = 'ok' THEN 'rolled_back' ELSE 'rollback_failed' END,
             NULL, l.data, l.id
        FROM audit_log l JOIN apps a ON a.name = l.target JOIN organizations o ON o.id = a.org_id
       WHERE l.action = 'alerts:rollback' AND l.user_id IS NULL
    ) h
    ORDER BY at DESC, seq DESC
    LIMIT ${limit}`);
  return rows.map((r) => ({
    at: toIso(r.at), app: String(r.app), org: String(r.org), rule: String(r.rule), status: String(r.status) as AlertHistoryRow["status"],
    words: text(r.words), rollback: r.data == null ? null : json(r.data),
  }));
}

// ---------- security events (audit log) ----------

/** Sign-in attempts of every way in: API sessions, identity providers, SSH, git over HTTP. */
export const SIGN_IN_ACTIONS = ["auth:sign-in", "oauth:sign-in"] as const;

export interface FailedSignInRow { id: number; at: string; email: string | null; sourceIp: string | null; via: string; reason: string | null }

/**
 * Sign-ins that did not get in since `sinceMs`, newest first: wrong credentials, unknown keys and
 * tokens, refused and rate-limited attempts. Being asked for the second factor is not a failure.
 */
export async function listFailedSignIns(db: Db, sinceMs: number, limit: number): Promise<FailedSignInRow[]> {
  const rows = await db.any(q`
    SELECT l.id, l.created_at, l.source_ip,
           CASE WHEN l.target LIKE 'user:%' THEN substr(l.target, 6) ELSE coalesce(u.email, l.data->>'keyOwner') END AS email,
           CASE WHEN l.action = 'oauth:sign-in' THEN 'oauth' ELSE coalesce(l.data->>'via', 'api') END AS via,
           coalesce(l.data->>'reason', l.data->>'code') AS reason
      FROM audit_log l LEFT JOIN users u ON u.id = l.user_id
     WHERE l.action = ANY(${sql.array([...SIGN_IN_ACTIONS], "text")}) AND l.result <> 'ok'
       AND coalesce(l.data->>'reason', '') <> 'mfa_required'
       AND l.created_at >= to_timestamp(${sinceMs} / 1000.0)
     ORDER BY l.id DESC LIMIT ${limit}`);
  return rows.map((r) => ({ id: Number(r.id), at: toIso(r.created_at), email: text(r.email), sourceIp: text(r.source_ip), via: String(r.via), reason: text(r.reason) }));
}

export interface DeniedActionRow { id: number; at: string; user: string | null; action: string; target: string | null; sourceIp: string | null; via: string | null }

/** Actions refused for lack of a role since `sinceMs` (sign-ins apart), newest first. */
export async function listDeniedActions(db: Db, sinceMs: number, limit: number): Promise<DeniedActionRow[]> {
  const rows = await db.any(q`
    SELECT l.id, l.created_at, u.email, l.action, l.target, l.source_ip, l.data->>'via' AS via
      FROM audit_log l LEFT JOIN users u ON u.id = l.user_id
     WHERE l.result = 'denied' AND NOT l.action = ANY(${sql.array([...SIGN_IN_ACTIONS], "text")})
       AND l.created_at >= to_timestamp(${sinceMs} / 1000.0)
     ORDER BY l.id DESC LIMIT ${limit}`);
  return rows.map((r) => ({
    id: Number(r.id), at: toIso(r.created_at), user: text(r.email), action: String(r.action), target: text(r.target), sourceIp: text(r.source_ip), via: text(r.via),
  }));
}

export interface NewKeyRow { id: number; at: string; user: string | null; fingerprint: string | null; title: string | null }

/** SSH keys added since `sinceMs`, newest first; the title is the key's name while the key is still registered. */
export async function listNewSshKeys(db: Db, sinceMs: number, limit: number): Promise<NewKeyRow[]> {
  const rows = await db.any(q`
    SELECT l.id, l.created_at, u.email, l.data->>'fingerprint' AS fingerprint, coalesce(l.data->>'name', k.name) AS title
      FROM audit_log l
      LEFT JOIN users u ON u.id = l.user_id
      LEFT JOIN ssh_keys k ON k.fingerprint = l.data->>'fingerprint'
     WHERE l.action = 'keys:add' AND l.result = 'ok' AND l.created_at >= to_timestamp(${sinceMs} / 1000.0)
     ORDER BY l.id DESC LIMIT ${limit}`);
  return rows.map((r) => ({ id: Number(r.id), at: toIso(r.created_at), user: text(r.email), fingerprint: text(r.fingerprint), title: text(r.title) }));
}

export interface NewTokenRow { id: number; at: string; user: string | null; name: string | null; scopes: string[] }

/**
 * Personal access tokens created since `sinceMs`, newest first. An entry that does not carry the
 * token's name is matched to the user's token made with the same scopes in the minute before it
 * (the token is stored just before its audit entry).
 */
export async function listNewTokens(db: Db, sinceMs: number, limit: number): Promise<NewTokenRow[]> {
  const rows = await db.any(q`
    SELECT l.id, l.created_at, u.email, coalesce(l.data->>'name', t.name) AS name, l.data->'scopes' AS scopes
      FROM audit_log l
      LEFT JOIN users u ON u.id = l.user_id
      LEFT JOIN LATERAL (
        SELECT name FROM api_tokens x
         WHERE l.data->>'name' IS NULL AND x.user_id = l.user_id
           AND x.created_at <= l.created_at AND x.created_at > l.created_at - interval '1 minute'
           AND to_jsonb(x.scopes) @> coalesce(l.data->'scopes', '[]'::jsonb) AND coalesce(l.data->'scopes', '[]'::jsonb) @> to_jsonb(x.scopes)
         ORDER BY x.created_at DESC, x.id DESC LIMIT 1) t ON true
     WHERE l.action = 'tokens:create' AND l.result = 'ok' AND l.created_at >= to_timestamp(${sinceMs} / 1000.0)
     ORDER BY l.id DESC LIMIT ${limit}`);
  return rows.map((r) => ({
    id: Number(r.id), at: toIso(r.created_at), user: text(r.email), name: text(r.name),
    scopes: Array.isArray(r.scopes) ? (r.scopes as unknown[]).map(String) : [],
  }));
}

// ---------- the audit trail ----------

export interface AuditFilter {
  ids?: number[];
  /** A user's email, without regard to case. */
  user?: string;
  action?: string;
  target?: string;
  result?: string;
}

export interface AuditEntryRow { id: number; at: string; user: string | null; action: string; target: string | null; result: string; sourceIp: string | null; data: Record<string, unknown> }

/** The whole audit log, narrowed by every filter given, newest first. */
export async function listAuditEntries(db: Db, filter: AuditFilter, limit: number): Promise<AuditEntryRow[]> {
  const where = [sql.fragment`true`];
  if (filter.ids) where.push(sql.fragment`l.id = ANY(${sql.array(filter.ids, "int8")})`);
  if (filter.user !== undefined) where.push(sql.fragment`lower(u.email) = lower(${filter.user})`);
  if (filter.action !== undefined) where.push(sql.fragment`l.action = ${filter.action}`);
  if (filter.target !== undefined) where.push(sql.fragment`l.target = ${filter.target}`);
  if (filter.result !== undefined) where.push(sql.fragment`l.result = ${filter.result}`);
  const rows = await db.any(q`
    SELECT l.id, l.created_at, u.email, l.action, l.target, l.result, l.source_ip, l.data
      FROM audit_log l LEFT JOIN users u ON u.id = l.user_id
     WHERE ${sql.join(where, sql.fragment` AND `)}
     ORDER BY l.id DESC LIMIT ${limit}`);
  return rows.map((r) => ({
    id: Number(r.id), at: toIso(r.created_at), user: text(r.email), action: String(r.action), target: text(r.target), result: String(r.result),
    sourceIp: text(r.source_ip), data: json(r.data),
  }));
}

// ---------- traffic baselines ----------

export interface TrafficBaselineRow { appId: number; app: string; org: string; perSecond: number }

/**
 * Each app's usual requests per second in the hours of the day (UTC) that [fromMs, toMs) touches,
 * averaged over the 7 days before: from the hourly rollups, and from the 1-minute rollups of any hour
 * that has no hourly row yet. Rollups hold every source's sum (source ''), one row per period.
 * An app without a request in that baseline has none and is left out.
 */
export async function listTrafficBaselines(db: Db, fromMs: number, toMs: number): Promise<TrafficBaselineRow[]> {
  const rows = await db.any(q`
    WITH span AS (
      -- Hours by epoch arithmetic, not date_trunc: the session's time zone may be off the hour from UTC.
      SELECT to_timestamp(floor(${fromMs} / 3600000.0) * 3600) AS today,
             ARRAY(SELECT DISTINCT (h % 24)::int FROM generate_series(floor(${fromMs} / 3600000.0)::bigint, floor((${toMs}::float8 - 1) / 3600000.0)::bigint) h) AS hours
    ), past AS (
      SELECT m.app_id, m.resolution, m.at, m.requests, m.seconds
        FROM metric_samples m, span
       WHERE m.resolution IN (60, 3600) AND m.process = '' AND m.source = ''
         AND m.at >= span.today - interval '168 hours' AND m.at < span.today
         AND (floor(extract(epoch FROM m.at) / 3600)::bigint % 24)::int = ANY(span.hours)
    ), usual AS (
      SELECT p.app_id, sum(p.requests)::float8 AS requests, sum(p.seconds)::float8 AS seconds
        FROM past p
       WHERE p.resolution = 3600
          OR NOT EXISTS (SELECT 1 FROM past h WHERE h.app_id = p.app_id AND h.resolution = 3600 AND h.at = to_timestamp(floor(extract(epoch FROM p.at) / 3600) * 3600))
       GROUP BY p.app_id
    )
    SELECT a.id, a.name, o.slug AS org, u.requests / u.seconds AS per_second
      FROM usual u JOIN apps a ON a.id = u.app_id JOIN organizations o ON o.id = a.org_id
     WHERE u.seconds > 0 AND u.requests > 0`);
  return rows.map((r) => ({ appId: Number(r.id), app: String(r.name), org: String(r.org), perSecond: Number(r.per_second) }));
}
