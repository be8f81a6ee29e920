import { mergeSourceRows, type AutoscaleSettings, type MetricSample } from "../../core/index.ts";
import { q, sql, toIso, type Db } from "./db.ts";

/** Autoscaling settings per app and process type, and the decisions deck made (migration 035). */

export interface AutoscaleSettingsRow extends AutoscaleSettings {
  appId: number;
  /** Rounds in a row that saw a target exceeded. */
  exceededRounds: number;
  updatedAt: string;
}

const numOrNull = (v: unknown) => (v == null ? null : Number(v));

const toSettings = (r: Record<string, unknown>): AutoscaleSettingsRow => ({
  appId: Number(r.app_id), type: String(r.process_type), min: Number(r.min_processes), max: Number(r.max_processes),
  p95Ms: numOrNull(r.p95_ms), cpuPercent: numOrNull(r.cpu_percent), rps: numOrNull(r.rps),
  exceededRounds: Number(r.exceeded_rounds), updatedAt: toIso(r.updated_at),
});

/** The app's autoscaled process types, by type. */
export async function listAutoscaleSettings(db: Db, appId: number): Promise<AutoscaleSettingsRow[]> {
  return (await db.any(q`SELECT * FROM autoscale_settings WHERE app_id = ${appId} ORDER BY process_type`)).map(toSettings);
}

/** Sets (or replaces) how a process type of the app scales; a new setting starts its rounds over. */
export async function saveAutoscaleSettings(db: Db, appId: number, s: AutoscaleSettings, updatedBy: number | null): Promise<AutoscaleSettingsRow> {
  return toSettings(await db.one(q`
    INSERT INTO autoscale_settings (app_id, process_type, min_processes, max_processes, p95_ms, cpu_percent, rps, exceeded_rounds, updated_by, updated_at)
    VALUES (${appId}, ${s.type}, ${s.min}, ${s.max}, ${s.p95Ms}, ${s.cpuPercent}, ${s.rps}, 0, ${updatedBy}, now())
    ON CONFLICT (app_id, process_type) DO UPDATE SET min_processes = excluded.min_processes, max_processes = excluded.max_processes,
      p95_ms = excluded.p95_ms, cpu_percent = excluded.cpu_percent, rps = excluded.rps, exceeded_rounds = 0,
      updated_by = excluded.updated_by, updated_at = now()
    RETURNING *`));
}

/** Stops autoscaling a process type of the app; null when it was not autoscaled. */
export async function deleteAutoscaleSettings(db: Db, appId: number, type: string): Promise<AutoscaleSettingsRow | null> {
  const r = await db.maybeOne(q`DELETE FROM autoscale_settings WHERE app_id = ${appId} AND process_type = ${type} RETURNING *`);
  return r ? toSettings(r) : null;
}

export async function saveExceededRounds(db: Db, appId: number, type: string, rounds: number): Promise<void> {
  await db.query(q`UPDATE autoscale_settings SET exceeded_rounds = ${rounds} WHERE app_id = ${appId} AND process_type = ${type}`);
}

export type AutoscaleDirection = "out" | "in";
export type AutoscaleDecisionStatus = "pending" | "done" | "failed";

export interface AutoscaleDecisionRow {
  id: number;
  appId: number;
  type: string;
  direction: AutoscaleDirection;
  from: number;
  to: number;
  reason: string;
  status: AutoscaleDecisionStatus;
  error: string | null;
  at: string;
  finishedAt: string | null;
}

const toDecision = (r: Record<string, unknown>): AutoscaleDecisionRow => ({
  id: Number(r.id), appId: Number(r.app_id), type: String(r.process_type), direction: String(r.direction) as AutoscaleDirection,
  from: Number(r.from_count), to: Number(r.to_count), reason: String(r.reason), status: String(r.status) as AutoscaleDecisionStatus,
  error: r.error == null ? null : String(r.error), at: toIso(r.at), finishedAt: r.finished_at == null ? null : toIso(r.finished_at),
});

/** Writes a decision down as pending (the scale is about to run); its id. */
export async function insertAutoscaleDecision(db: Db, d: { appId: number; type: string; direction: AutoscaleDirection; from: number; to: number; reason: string; atMs: number }): Promise<number> {
  return Number(await db.oneFirst(q`
    INSERT INTO autoscale_decisions (app_id, process_type, direction, from_count, to_count, reason, at)
    VALUES (${d.appId}, ${d.type}, ${d.direction}, ${d.from}, ${d.to}, ${d.reason}, to_timestamp(${d.atMs} / 1000.0)) RETURNING id`));
}

/** How a decision's scale went. */
export async function finishAutoscaleDecision(db: Db, id: number, outcome: { status: "done" | "failed"; error?: string; atMs: number }): Promise<void> {
  await db.query(q`UPDATE autoscale_decisions SET status = ${outcome.status}, error = ${outcome.error ?? null}, finished_at = to_timestamp(${outcome.atMs} / 1000.0)
    WHERE id = ${id}`);
}

/** The app's decisions, newest first. */
export async function listAutoscaleDecisions(db: Db, appId: number, limit: number): Promise<AutoscaleDecisionRow[]> {
  return (await db.any(q`SELECT * FROM autoscale_decisions WHERE app_id = ${appId} ORDER BY at DESC, id DESC LIMIT ${limit}`)).map(toDecision);
}

/** Forgets decisions made before `beforeMs`; how many. */
export async function pruneAutoscaleDecisions(db: Db, beforeMs: number): Promise<number> {
  return (await db.query(q`DELETE FROM autoscale_decisions WHERE at < to_timestamp(${beforeMs} / 1000.0)`)).rowCount;
}

/**
 * Marks failed the decisions still pending since before `beforeMs`: the deck server scaling them
 * stopped before it could say how it went. How many.
 */
export async function abandonAutoscaleDecisions(db: Db, beforeMs: number, atMs: number): Promise<number> {
  return (await db.query(q`UPDATE autoscale_decisions SET status = 'failed', error = 'the deck server scaling it stopped before it finished',
      finished_at = to_timestamp(${atMs} / 1000.0)
    WHERE status = 'pending' AND at < to_timestamp(${beforeMs} / 1000.0)`)).rowCount;
}

/** One autoscaled process type as a round sees it. */
export interface AutoscaleTarget {
  settings: AutoscaleSettingsRow;
  app: { id: number; name: string; orgId: number; org: string; formation: Record<string, number>; stopped: boolean };
  /** The live release's process types (its Procfile's); null when the app has no live release. */
  liveTypes: string[] | null;
  /** When the live deployment went live (a deploy, a restart, a scale); null = none. */
  liveAt: number | null;
  /** When deck last decided on this app: the end of its scale, or its decision while it runs. */
  lastDecisionAt: number | null;
  /** When deck last scaled this type out (done or failed). */
  lastScaleOutAt: number | null;
  /** A scale of the app decided by deck is still running. */
  scaling: boolean;
  /** deck's scales of the type that failed in a row since the last that worked, the live deploy and the settings' last change. */
  failuresInARow: number;
  lastFailureAt: number | null;
}

/** Every autoscaled process type of every app, with what a round needs to judge it. */
export async function listAutoscaleTargets(db: Db): Promise<AutoscaleTarget[]> {
  const rows = await db.any(q`
    SELECT s.*, a.name, a.org_id, o.slug AS org, a.formation, a.stopped, b.procfile,
           extract(epoch FROM ld.finished_at) * 1000 AS live_at,
           (SELECT extract(epoch FROM max(coalesce(d.finished_at, d.at))) * 1000 FROM autoscale_decisions d WHERE d.app_id = s.app_id) AS last_decision_at,
           (SELECT extract(epoch FROM max(coalesce(d.finished_at, d.at))) * 1000 FROM autoscale_decisions d
             WHERE d.app_id = s.app_id AND d.process_type = s.process_type AND d.direction = 'out') AS last_out_at,
           EXISTS (SELECT 1 FROM autoscale_decisions d WHERE d.app_id = s.app_id AND d.status = 'pending') AS scaling,
           f.failures, extract(epoch FROM f.last_failure_at) * 1000 AS last_failure_at
      FROM autoscale_settings s
      JOIN apps a ON a.id = s.app_id
      JOIN organizations o ON o.id = a.org_id
      LEFT JOIN deployments ld ON ld.id = a.live_deployment_id
      LEFT JOIN releases lr ON lr.id = ld.release_id
      LEFT JOIN builds b ON b.id = lr.build_id
      LEFT JOIN LATERAL (
        SELECT count(*) AS failures, max(coalesce(d.finished_at, d.at)) AS last_failure_at FROM autoscale_decisions d
         WHERE d.app_id = s.app_id AND d.process_type = s.process_type AND d.status = 'failed'
           AND d.at > s.updated_at AND d.at > coalesce(ld.finished_at, '-infinity'::timestamptz)
           AND d.id > coalesce((SELECT max(x.id) FROM autoscale_decisions x WHERE x.app_id = s.app_id AND x.process_type = s.process_type AND x.status = 'done'), 0)) f ON true
     ORDER BY s.app_id, s.process_type`);
  return rows.map((r) => {
    const procfile = (typeof r.procfile === "string" ? JSON.parse(r.procfile) : r.procfile) as Record<string, string> | null;
    const formation = (typeof r.formation === "string" ? JSON.parse(r.formation) : r.formation ?? {}) as Record<string, number>;
    return {
      settings: toSettings(r),
      app: { id: Number(r.app_id), name: String(r.name), orgId: Number(r.org_id), org: String(r.org), formation, stopped: r.stopped === true },
      liveTypes: r.live_at == null ? null : Object.keys(procfile ?? {}).filter((t) => t !== "release"),
      liveAt: numOrNull(r.live_at),
      lastDecisionAt: numOrNull(r.last_decision_at),
      lastScaleOutAt: numOrNull(r.last_out_at),
      scaling: Boolean(r.scaling),
      failuresInARow: Number(r.failures ?? 0),
      lastFailureAt: numOrNull(r.last_failure_at),
    };
  });
}

/**
 * The 10-second samples of each process (not the whole app) of the apps in [fromMs, toMs), by app id;
 * the rows several machines wrote for one process and period together.
 */
export async function listRecentProcessSamples(db: Db, appIds: readonly number[], fromMs: number, toMs: number): Promise<Map<number, MetricSample[]>> {
  const rows = await db.any(q`
    SELECT app_id, process, extract(epoch FROM at) * 1000 AS at_ms, seconds, release, cpu_seconds, rss_bytes, memory_limit_bytes, restarts, connections,
           requests, status_2xx, status_3xx, status_4xx, status_5xx, bytes_in, bytes_out, latency
      FROM metric_samples
     WHERE resolution = 10 AND process <> '' AND app_id = ANY(${sql.array(appIds, "int8")})
       AND at >= to_timestamp(${fromMs} / 1000.0) AND at < to_timestamp(${toMs} / 1000.0)
     ORDER BY at, process`);
  const out = new Map<number, MetricSample[]>();
  for (const r of rows) {
    const s: MetricSample = {
      at: Number(r.at_ms), seconds: Number(r.seconds), process: String(r.process), release: numOrNull(r.release), cpuSeconds: numOrNull(r.cpu_seconds),
      rssBytes: numOrNull(r.rss_bytes), memoryLimitBytes: numOrNull(r.memory_limit_bytes), restarts: Number(r.restarts), connections: numOrNull(r.connections),
      requests: Number(r.requests), status2xx: Number(r.status_2xx), status3xx: Number(r.status_3xx), status4xx: Number(r.status_4xx), status5xx: Number(r.status_5xx),
      bytesIn: Number(r.bytes_in), bytesOut: Number(r.bytes_out), latency: r.latency ? (r.latency as unknown[]).map(Number) : null,
    };
    const list = out.get(Number(r.app_id));
    if (list) list.push(s);
    else out.set(Number(r.app_id), [s]);
  }
  for (const [id, list] of out) out.set(id, mergeSourceRows(list));
  return out;
}

/** The advisory lock of an autoscaling round: one deck server at a time decides. */
const ROUND_LOCK = 0x6465636b7363616cn; // "deckscal"

/** Takes the round's lock for the transaction `db` is; false when another server holds it. */
export async function tryAutoscaleRoundLock(db: Db): Promise<boolean> {
  return Boolean(await db.oneFirst(q`SELECT pg_try_advisory_xact_lock(${ROUND_LOCK.toString()}::bigint)`));
}
