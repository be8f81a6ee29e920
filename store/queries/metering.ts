import { randomUUID } from "node:crypto";
import { hourOf, type AppUsage, type UsageBatch } from "../../core/index.ts";
import type { DatabasePool } from "slonik";
import { recordUsage, type NewUsageEntry } from "./billing-ledger.ts";
import { q, sql, toIso, type Db } from "./db.ts";

export interface BandwidthHour {
  hour: string;
  requests: number;
  bytesIn: number;
  bytesOut: number;
}

/** How long saved batch ids are remembered: a batch handed out again after that would be added twice. */
const BATCH_IDS_KEPT = "30 days";

/**
 * Adds a batch of the router's counts to `bandwidth_usage`, each to its app's row for the hour it was
 * counted in (UTC), and its bytes to the usage ledger, in one transaction. A batch whose id was saved
 * before adds nothing; apps that no longer exist are skipped. Returns the number of rows added to, or
 * null for a batch saved before.
 */
export async function saveUsageBatch(db: DatabasePool, batch: UsageBatch): Promise<number | null> {
  const rows = batch.usage.filter((d) => d.requests > 0 || d.bytesIn > 0 || d.bytesOut > 0);
  return db.transaction(async (tx) => {
    if (batch.id !== null) {
      const fresh = await tx.maybeOne(q`INSERT INTO metering_batches (id) VALUES (${batch.id}) ON CONFLICT (id) DO NOTHING RETURNING id`);
      if (fresh === null) return null;
      await tx.query(q`DELETE FROM metering_batches WHERE saved_at < now() - ${BATCH_IDS_KEPT}::interval`);
    }
    const added = await addUsage(tx, rows);
    // A batch without an id cannot be recognised when saved again anyway: a key of its own keeps its entries apart.
    await recordBandwidthUsage(tx, batch.id ?? randomUUID(), rows);
    return added;
  });
}

/**
 * The batch's bytes in and out in the usage ledger, one entry per app and hour (key
 * `bw:<batch>:<appId>:<hour>`); the batch id saved above makes it once per batch.
 */
async function recordBandwidthUsage(db: Db, batchKey: string, rows: readonly AppUsage[]): Promise<void> {
  const perAppHour = new Map<string, { app: string; hour: string; bytes: number }>();
  for (const r of rows) {
    const hour = hourOf(Date.parse(r.hour));
    const k = `${r.app} ${hour}`;
    const cur = perAppHour.get(k);
    if (cur) cur.bytes += r.bytesIn + r.bytesOut;
    else perAppHour.set(k, { app: r.app, hour, bytes: r.bytesIn + r.bytesOut });
  }
  const counted = [...perAppHour.values()].filter((u) => u.bytes > 0);
  if (counted.length === 0) return;
  const apps = await db.any(q`SELECT id, name, org_id FROM apps WHERE name = ANY(${sql.array([...new Set(counted.map((u) => u.app))], "text")}::text[])`);
  const byName = new Map(apps.map((a) => [String(a.name), { id: Number(a.id), orgId: Number(a.org_id) }]));
  const entries: NewUsageEntry[] = [];
  for (const u of counted) {
    const app = byName.get(u.app);
    // Apps that no longer exist are skipped, as in bandwidth_usage.
    if (app) entries.push({ key: `bw:${batchKey}:${app.id}:${u.hour}`, orgId: app.orgId, appId: app.id, app: u.app, meter: "bandwidth_bytes", quantity: u.bytes, at: u.hour });
  }
  await recordUsage(db, entries);
}

async function addUsage(db: Db, rows: readonly AppUsage[]): Promise<number> {
  if (rows.length === 0) return 0;
  const result = await db.query(q`
    INSERT INTO bandwidth_usage (app_id, app_name, org_id, hour, requests, bytes_in, bytes_out)
    SELECT a.id, a.name, a.org_id, date_trunc('hour', d.hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', d.requests, d.bytes_in, d.bytes_out
    FROM unnest(${sql.array(rows.map((r) => r.app), "text")}::text[], ${sql.array(rows.map((r) => r.hour), "text")}::timestamptz[],
                ${sql.array(rows.map((r) => r.requests), "int8")}::int8[],
                ${sql.array(rows.map((r) => r.bytesIn), "int8")}::int8[], ${sql.array(rows.map((r) => r.bytesOut), "int8")}::int8[])
      AS d(app, hour, requests, bytes_in, bytes_out)
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
