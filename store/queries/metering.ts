import { q, sql, toIso, type Db } from "./db.ts";

/** Requests and bytes the router counted for one app. */
export interface UsageDelta {
  app: string;
  requests: number;
  bytesIn: number;
  bytesOut: number;
}

export interface BandwidthHour {
  hour: string;
  requests: number;
  bytesIn: number;
  bytesOut: number;
}

/**
 * Adds counts to the current clock hour of each app (UTC). Apps that no longer exist are skipped.
 * Returns how many apps were updated.
 */
export async function addBandwidthUsage(db: Db, deltas: readonly UsageDelta[], at: Date = new Date()): Promise<number> {
  const rows = deltas.filter((d) => d.requests > 0 || d.bytesIn > 0 || d.bytesOut > 0);
  if (rows.length === 0) return 0;
  const hour = new Date(Math.floor(at.getTime() / 3_600_000) * 3_600_000).toISOString();
  const result = await db.query(q`
    INSERT INTO bandwidth_usage (app_id, hour, requests, bytes_in, bytes_out)
    SELECT a.id, ${hour}::timestamptz, d.requests, d.bytes_in, d.bytes_out
    FROM unnest(${sql.array(rows.map((r) => r.app), "text")}::text[], ${sql.array(rows.map((r) => r.requests), "int8")}::int8[],
                ${sql.array(rows.map((r) => r.bytesIn), "int8")}::int8[], ${sql.array(rows.map((r) => r.bytesOut), "int8")}::int8[])
      AS d(app, requests, bytes_in, bytes_out)
    JOIN apps a ON a.name = d.app
    ON CONFLICT (app_id, hour) DO UPDATE SET
      requests = bandwidth_usage.requests + EXCLUDED.requests,
      bytes_in = bandwidth_usage.bytes_in + EXCLUDED.bytes_in,
      bytes_out = bandwidth_usage.bytes_out + EXCLUDED.bytes_out`);
  return result.rowCount;
}

/** An app's hourly counts, newest first, for hours starting at or after `since`. */
export async function bandwidthOf(db: Db, appId: number, since: Date): Promise<BandwidthHour[]> {
  const rows = await db.any(q`SELECT hour, requests, bytes_in, bytes_out FROM bandwidth_usage
    WHERE app_id = ${appId} AND hour >= ${since.toISOString()}::timestamptz ORDER BY hour DESC`);
  return rows.map((r) => ({ hour: toIso(r.hour), requests: Number(r.requests), bytesIn: Number(r.bytes_in), bytesOut: Number(r.bytes_out) }));
}
