import type { DatabasePool } from "slonik";
import { q, sql, toIso, type Db } from "./db.ts";

/**
 * Uptime probing (monitor/uptime): each round claims the apps that are due, probes them, and records
 * the checks in one transaction. Several deck servers may probe: a round claims under an advisory lock,
 * and an app is claimed again only once the round before has written its result (or given up on it),
 * so each app is checked once per interval whichever server does it.
 *
 * Each probe location keeps its own state and incidents: deck's servers share location '', each router
 * node probes through itself as location 'HOST:PORT'. Every location's checks count toward the app's days.
 */

/** First key of the transaction-scoped advisory lock rounds claim apps under (the second: the location's hash). */
const UPTIME_LOCK_KEY = 4_711_026;

/** Days of uptime_days and ended incidents kept (the longest period `uptime --days` shows). */
export const UPTIME_KEPT_DAYS = 400;

export type UptimeStateName = "up" | "failing" | "down" | "recovering";

/** Where probing of one app stands (the uptime_probes row). */
export interface UptimeProbeState {
  state: UptimeStateName;
  /** Consecutive checks that moved the app into `state`. */
  streak: number;
  /** When the first of them happened (down: when the incident started). */
  since: string | null;
  /** The failure the app is down (or failing) with. */
  cause: string | null;
}

export interface UptimeClaim {
  appId: number;
  app: string;
  orgId: number;
  healthCheckPath: string;
  probe: UptimeProbeState;
}

/** An app that is no longer probed (stopped, in maintenance, no live release) while it was not up. */
export interface UptimeRelease {
  appId: number;
  app: string;
  orgId: number;
  /** Its open incident, now ended. */
  incident: { cause: string; endedAt: string } | null;
}

/**
 * Apps deck probes: a live release with web processes, not stopped with ps:stop, not in maintenance.
 * The router answers for these apps with their own processes, and users expect them to answer.
 */
const PROBED_APPS = sql.fragment`
  SELECT a.id FROM apps a
  JOIN deployments d ON d.id = a.live_deployment_id
  JOIN releases r ON r.id = d.release_id
  JOIN builds b ON b.id = r.build_id
  WHERE NOT a.stopped AND NOT a.maintenance
    AND (b.procfile IS NULL OR b.procfile ? 'web')
    AND COALESCE((a.formation ->> 'web')::int, 1) > 0`;

function toProbeState(r: Record<string, unknown>): UptimeProbeState {
  return {
    state: String(r.state) as UptimeStateName,
    streak: Number(r.streak),
    since: r.since == null ? null : toIso(r.since),
    cause: r.cause == null ? null : String(r.cause),
  };
}

export interface UptimeClaimOptions {
  /** Names the round: its results are written only while the apps are still claimed by it. */
  round: string;
  /** Where the checks come from: '' for deck's servers, 'HOST:PORT' for a router node. */
  location: string;
  /** An app is due when its last claim is at least this old. */
  dueMs: number;
  /** A round that wrote no result this long after its claim is taken over (its server stopped mid-round). */
  staleMs: number;
}

/**
 * Claims the apps due for a check, and lets go of apps no longer probed (ending their open incidents).
 * Null when another server is claiming at this moment (it takes the due apps).
 */
export async function claimUptimeRound(db: DatabasePool, o: UptimeClaimOptions): Promise<{ claimed: UptimeClaim[]; released: UptimeRelease[] } | null> {
  return db.transaction(async (tx) => {
    if (!(await tx.oneFirst(q`SELECT pg_try_advisory_xact_lock(${UPTIME_LOCK_KEY}, hashtext(${o.location}))`))) return null;
    const released = await releaseUnprobed(tx, o.location);
    const rows = await tx.any(q`
      WITH claimed AS (
        INSERT INTO uptime_probes AS p (app_id, location, round, claimed_at)
        SELECT id, ${o.location}, ${o.round}, now() FROM (${PROBED_APPS}) t
        ON CONFLICT (app_id, location) DO UPDATE SET round = EXCLUDED.round, claimed_at = EXCLUDED.claimed_at
          WHERE p.claimed_at <= now() - ${o.dueMs}::float8 * interval '1 millisecond'
            AND (p.checked_at >= p.claimed_at OR p.claimed_at <= now() - ${o.staleMs}::float8 * interval '1 millisecond')
        RETURNING p.app_id, p.state, p.streak, p.since, p.cause
      )
      SELECT c.*, a.name, a.org_id, a.health_check_path FROM claimed c JOIN apps a ON a.id = c.app_id ORDER BY a.name`);
    const claimed = rows.map((r) => ({
      appId: Number(r.app_id), app: String(r.name), orgId: Number(r.org_id), healthCheckPath: String(r.health_check_path), probe: toProbeState(r),
    }));
    return { claimed, released };
  });
}

async function releaseUnprobed(tx: Db, location: string): Promise<UptimeRelease[]> {
  const rows = await tx.any(q`
    WITH idle AS (
      SELECT p.app_id FROM uptime_probes p
      WHERE p.location = ${location} AND p.state <> 'up' AND p.app_id NOT IN (${PROBED_APPS})
      FOR UPDATE OF p
    )
    UPDATE uptime_probes p SET state = 'up', streak = 0, since = NULL, cause = NULL, round = NULL, checked_at = now()
    FROM idle i JOIN apps a ON a.id = i.app_id
    WHERE p.app_id = i.app_id AND p.location = ${location}
    RETURNING p.app_id, a.name, a.org_id`);
  if (rows.length === 0) return [];
  const ids = rows.map((r) => Number(r.app_id));
  const ended = await tx.any(q`UPDATE uptime_incidents SET ended_at = now()
    WHERE source = 'probe' AND location = ${location} AND ended_at IS NULL AND app_id = ANY(${sql.array(ids, "int8")})
    RETURNING app_id, cause, ended_at`);
  const byApp = new Map(ended.map((e) => [Number(e.app_id), { cause: String(e.cause), endedAt: toIso(e.ended_at) }]));
  return rows.map((r) => ({ appId: Number(r.app_id), app: String(r.name), orgId: Number(r.org_id), incident: byApp.get(Number(r.app_id)) ?? null }));
}

/** An incident opened or ended by a check. */
export type UptimeIncidentChange = { kind: "open"; startedAt: string; cause: string } | { kind: "close"; endedAt: string };

export interface UptimeCheckRecord {
  appId: number;
  ok: boolean;
  /** The app's probe state after this check; null when it did not change. */
  next: UptimeProbeState | null;
  incident: UptimeIncidentChange | null;
}

/**
 * Writes a round's checks: each app's count for the UTC `day`, and its new state and incident. Checks
 * of apps the round no longer holds (taken over, or let go because the app stopped) are dropped.
 * Returns the ids of the apps whose state and incident were written.
 */
export async function recordUptimeRound(db: DatabasePool, round: string, day: string, checks: readonly UptimeCheckRecord[], location = ""): Promise<Set<number>> {
  if (checks.length === 0) return new Set();
  return db.transaction(async (tx) => {
    const held = await tx.anyFirst(q`UPDATE uptime_probes SET checked_at = now()
      WHERE round = ${round} AND location = ${location} AND app_id = ANY(${sql.array(checks.map((c) => c.appId), "int8")}) RETURNING app_id`);
    const mine = new Set(held.map(Number));
    const written = checks.filter((c) => mine.has(c.appId));
    if (written.length === 0) return mine;
    await tx.query(q`
      INSERT INTO uptime_days (app_id, day, checks, failures)
      SELECT app_id, ${day}::date, 1, CASE WHEN ok THEN 0 ELSE 1 END
      FROM unnest(${sql.array(written.map((c) => c.appId), "int8")}::int8[], ${sql.array(written.map((c) => c.ok), "bool")}::bool[]) AS c(app_id, ok)
      ON CONFLICT (app_id, day) DO UPDATE SET checks = uptime_days.checks + 1, failures = uptime_days.failures + EXCLUDED.failures`);
    for (const c of written) {
      if (c.next) {
        await tx.query(q`UPDATE uptime_probes SET state = ${c.next.state}, streak = ${c.next.streak}, since = ${c.next.since}::timestamptz, cause = ${c.next.cause}
          WHERE app_id = ${c.appId} AND location = ${location}`);
      }
      if (c.incident?.kind === "open") {
        await tx.query(q`INSERT INTO uptime_incidents (app_id, source, location, started_at, cause)
          VALUES (${c.appId}, 'probe', ${location}, ${c.incident.startedAt}::timestamptz, ${c.incident.cause})
          ON CONFLICT (app_id, source, location) WHERE ended_at IS NULL DO NOTHING`);
      } else if (c.incident?.kind === "close") {
        await tx.query(q`UPDATE uptime_incidents SET ended_at = GREATEST(started_at, ${c.incident.endedAt}::timestamptz)
          WHERE app_id = ${c.appId} AND source = 'probe' AND location = ${location} AND ended_at IS NULL`);
      }
    }
    return mine;
  });
}

/**
 * A location that stopped probing (a router node stopped): its open incidents end when it last checked,
 * and its probe state goes.
 */
export async function endUptimeLocation(db: DatabasePool, location: string): Promise<number> {
  return db.transaction(async (tx) => {
    const ended = await tx.query(q`UPDATE uptime_incidents i
      SET ended_at = GREATEST(i.started_at, COALESCE((SELECT p.checked_at FROM uptime_probes p WHERE p.app_id = i.app_id AND p.location = i.location), now()))
      WHERE i.location = ${location} AND i.source = 'probe' AND i.ended_at IS NULL`);
    await tx.query(q`DELETE FROM uptime_probes WHERE location = ${location}`);
    return ended.rowCount;
  });
}

/**
 * Forgets daily counts and ended incidents older than UPTIME_KEPT_DAYS, and what router nodes that
 * stopped without saying so (no check for an hour) left open.
 */
export async function pruneUptime(db: Db): Promise<void> {
  await db.query(q`UPDATE uptime_incidents i SET ended_at = GREATEST(i.started_at, p.checked_at)
    FROM uptime_probes p WHERE p.app_id = i.app_id AND p.location = i.location AND i.location <> '' AND i.source = 'probe'
      AND i.ended_at IS NULL AND p.checked_at < now() - interval '1 hour'`);
  await db.query(q`DELETE FROM uptime_probes WHERE location <> '' AND claimed_at < now() - interval '1 hour'`);
  await db.query(q`DELETE FROM uptime_days WHERE day < current_date - ${UPTIME_KEPT_DAYS}::int`);
  await db.query(q`DELETE FROM uptime_incidents WHERE ended_at < now() - ${UPTIME_KEPT_DAYS}::int * interval '1 day'`);
}

export interface UptimeDayRow {
  /** UTC day, YYYY-MM-DD. */
  day: string;
  checks: number;
  failures: number;
}

/** An app's daily counts from `fromDay` (YYYY-MM-DD) on, newest first. */
export async function uptimeDaysOf(db: Db, appId: number, fromDay: string): Promise<UptimeDayRow[]> {
  const rows = await db.any(q`SELECT to_char(day, 'YYYY-MM-DD') AS day, checks, failures FROM uptime_days
    WHERE app_id = ${appId} AND day >= ${fromDay}::date ORDER BY day DESC`);
  return rows.map((r) => ({ day: String(r.day), checks: Number(r.checks), failures: Number(r.failures) }));
}

export interface UptimeIncidentRow {
  id: number;
  source: "probe" | "traffic";
  /** Where the failed checks came from: '' deck's servers, 'HOST:PORT' a router node. */
  location: string;
  startedAt: string;
  endedAt: string | null;
  cause: string;
}

/** An app's incidents still open or ended at or after `since`, newest first (at most `limit`). */
export async function uptimeIncidentsOf(db: Db, appId: number, since: string, limit: number): Promise<UptimeIncidentRow[]> {
  const rows = await db.any(q`SELECT id, source, location, started_at, ended_at, cause FROM uptime_incidents
    WHERE app_id = ${appId} AND (ended_at IS NULL OR ended_at >= ${since}::timestamptz)
    ORDER BY started_at DESC, id DESC LIMIT ${limit}`);
  return rows.map((r) => ({
    id: Number(r.id), source: String(r.source) as UptimeIncidentRow["source"], location: String(r.location), startedAt: toIso(r.started_at),
    endedAt: r.ended_at == null ? null : toIso(r.ended_at), cause: String(r.cause),
  }));
}

/** Requests and 5xx answers of each app in [fromMs, toMs), every source's rows together. */
export async function sumTraffic(db: Db, fromMs: number, toMs: number): Promise<Map<number, { requests: number; failed: number }>> {
  const rows = await db.any(q`SELECT app_id, sum(requests) AS requests, sum(status_5xx) AS failed FROM metric_samples
    WHERE resolution = 10 AND process = '' AND at >= to_timestamp(${fromMs} / 1000.0) AND at < to_timestamp(${toMs} / 1000.0)
    GROUP BY app_id`);
  return new Map(rows.map((r) => [Number(r.app_id), { requests: Number(r.requests), failed: Number(r.failed) }]));
}

/** Apps with a traffic incident open: id → when it started. */
export async function openTrafficIncidents(db: Db): Promise<Map<number, string>> {
  const rows = await db.any(q`SELECT app_id, started_at FROM uptime_incidents WHERE source = 'traffic' AND ended_at IS NULL`);
  return new Map(rows.map((r) => [Number(r.app_id), toIso(r.started_at)]));
}

/** A traffic incident opened or ended; false when another server did it first. */
export async function changeTrafficIncident(db: Db, appId: number, change: UptimeIncidentChange): Promise<boolean> {
  if (change.kind === "open") {
    const row = await db.maybeOne(q`INSERT INTO uptime_incidents (app_id, source, location, started_at, cause)
      VALUES (${appId}, 'traffic', '', ${change.startedAt}::timestamptz, ${change.cause})
      ON CONFLICT (app_id, source, location) WHERE ended_at IS NULL DO NOTHING RETURNING id`);
    return row !== null;
  }
  const r = await db.query(q`UPDATE uptime_incidents SET ended_at = GREATEST(started_at, ${change.endedAt}::timestamptz)
    WHERE app_id = ${appId} AND source = 'traffic' AND ended_at IS NULL`);
  return r.rowCount > 0;
}

/**
 * Requests and 5xx answers per UTC day from `fromDay` on (newest first): from the hourly rollups, then
 * the 1-minute ones after the last hour rolled up, then the 10-second rows after the last minute, so
 * today's figure is live.
 */
export async function trafficDaysOf(db: Db, appId: number, fromDay: string): Promise<Array<{ day: string; requests: number; failed: number }>> {
  const rows = await db.any(q`
    WITH cut AS (
      SELECT COALESCE((SELECT max(at) + interval '1 hour' FROM metric_samples WHERE app_id = ${appId} AND resolution = 3600 AND process = ''), '-infinity'::timestamptz) AS hours,
             COALESCE((SELECT max(at) + interval '1 minute' FROM metric_samples WHERE app_id = ${appId} AND resolution = 60 AND process = ''), '-infinity'::timestamptz) AS minutes
    )
    SELECT to_char(date_trunc('day', s.at AT TIME ZONE 'UTC'), 'YYYY-MM-DD') AS day, sum(s.requests) AS requests, sum(s.status_5xx) AS failed
      FROM metric_samples s, cut
     WHERE s.app_id = ${appId} AND s.process = '' AND s.at >= ${fromDay}::date AT TIME ZONE 'UTC'
       AND ((s.resolution = 3600 AND s.at < cut.hours)
         OR (s.resolution = 60 AND s.at >= cut.hours AND s.at < cut.minutes)
         OR (s.resolution = 10 AND s.at >= GREATEST(cut.hours, cut.minutes)))
     GROUP BY 1 ORDER BY 1 DESC`);
  return rows.map((r) => ({ day: String(r.day), requests: Number(r.requests), failed: Number(r.failed) }));
}
