import { mergeSourceRows, type MetricSample } from "../../core/index.ts";
import { q, sql, type Db } from "./db.ts";

/** A sample to store: for which app, at which resolution (10, 60 or 3600 seconds). */
export interface StoredSample extends MetricSample {
  appId: number;
  resolution: number;
  /** Who measured it (migration 029): a deck server's name, `router:HOST:PORT`, or '' (rollups). */
  source?: string;
}

const num = (v: unknown) => (v === null || v === undefined ? null : Number(v));

function toSample(r: Record<string, unknown>): StoredSample {
  return {
    appId: Number(r.app_id), resolution: Number(r.resolution), source: String(r.source ?? ""), process: String(r.process), at: new Date(r.at as string | number).getTime(),
    seconds: Number(r.seconds), release: num(r.release), cpuSeconds: num(r.cpu_seconds), rssBytes: num(r.rss_bytes),
    memoryLimitBytes: num(r.memory_limit_bytes), restarts: Number(r.restarts), connections: num(r.connections), requests: Number(r.requests),
    status2xx: Number(r.status_2xx), status3xx: Number(r.status_3xx), status4xx: Number(r.status_4xx), status5xx: Number(r.status_5xx),
    bytesIn: Number(r.bytes_in), bytesOut: Number(r.bytes_out), latency: r.latency ? (r.latency as unknown[]).map(Number) : null,
  };
}

/** Stores samples in one statement; a sample already stored for the same app, series, source and period is replaced. */
export async function saveSamples(db: Db, samples: readonly StoredSample[]): Promise<void> {
  if (samples.length === 0) return;
  const col = <T>(f: (s: StoredSample) => T) => samples.map(f);
  await db.query(q`
    INSERT INTO metric_samples (app_id, resolution, process, source, at, seconds, release, cpu_seconds, rss_bytes, memory_limit_bytes, restarts,
      connections, requests, status_2xx, status_3xx, status_4xx, status_5xx, bytes_in, bytes_out, latency)
    SELECT app_id, resolution, process, source, to_timestamp(at_ms / 1000.0), seconds, release, cpu_seconds, rss_bytes, memory_limit_bytes, restarts,
      connections, requests, s2, s3, s4, s5, bytes_in, bytes_out,
      CASE WHEN latency IS NULL THEN NULL ELSE ARRAY(SELECT jsonb_array_elements_text(latency)::int) END
    FROM unnest(
      ${sql.array(col((s) => s.appId), "int8")}::int8[], ${sql.array(col((s) => s.resolution), "int4")}::int4[], ${sql.array(col((s) => s.process), "text")}::text[], ${sql.array(col((s) => s.source ?? ""), "text")}::text[],
      ${sql.array(col((s) => s.at), "float8")}::float8[], ${sql.array(col((s) => s.seconds), "float4")}::float4[], ${sql.array(col((s) => s.release), "int4")}::int4[],
      ${sql.array(col((s) => s.cpuSeconds), "float8")}::float8[], ${sql.array(col((s) => s.rssBytes), "int8")}::int8[], ${sql.array(col((s) => s.memoryLimitBytes), "int8")}::int8[],
      ${sql.array(col((s) => s.restarts), "int4")}::int4[], ${sql.array(col((s) => s.connections), "int4")}::int4[], ${sql.array(col((s) => s.requests), "int8")}::int8[],
      ${sql.array(col((s) => s.status2xx), "int8")}::int8[], ${sql.array(col((s) => s.status3xx), "int8")}::int8[], ${sql.array(col((s) => s.status4xx), "int8")}::int8[],
      ${sql.array(col((s) => s.status5xx), "int8")}::int8[], ${sql.array(col((s) => s.bytesIn), "int8")}::int8[], ${sql.array(col((s) => s.bytesOut), "int8")}::int8[],
      ${sql.array(col((s) => (s.latency ? JSON.stringify(s.latency) : null)), "jsonb")}::jsonb[]
    ) AS u(app_id, resolution, process, source, at_ms, seconds, release, cpu_seconds, rss_bytes, memory_limit_bytes, restarts, connections, requests, s2, s3, s4, s5, bytes_in, bytes_out, latency)
    ON CONFLICT (app_id, resolution, process, source, at) DO UPDATE SET
      seconds = excluded.seconds, release = excluded.release, cpu_seconds = excluded.cpu_seconds, rss_bytes = excluded.rss_bytes,
      memory_limit_bytes = excluded.memory_limit_bytes, restarts = excluded.restarts, connections = excluded.connections, requests = excluded.requests,
      status_2xx = excluded.status_2xx, status_3xx = excluded.status_3xx, status_4xx = excluded.status_4xx, status_5xx = excluded.status_5xx,
      bytes_in = excluded.bytes_in, bytes_out = excluded.bytes_out, latency = excluded.latency`);
}

/**
 * One app's samples of a resolution in [fromMs, toMs), of the app as a whole (process '') or of every
 * process; the rows several machines wrote for one period are added together.
 */
export async function listSamples(db: Db, appId: number, resolution: number, fromMs: number, toMs: number, series: "app" | "processes"): Promise<StoredSample[]> {
  const rows = await db.any(q`
    SELECT * FROM metric_samples
     WHERE app_id = ${appId} AND resolution = ${resolution} AND at >= to_timestamp(${fromMs} / 1000.0) AND at < to_timestamp(${toMs} / 1000.0)
       AND (process = '') = ${series === "app"}
     ORDER BY at, process`);
  return mergeSourceRows(rows.map(toSample)).map((r) => ({ ...r, source: "" }));
}

/** Every app's samples of a resolution in [fromMs, toMs), each source's row apart: what a rollup sums. */
export async function listSamplesBetween(db: Db, resolution: number, fromMs: number, toMs: number): Promise<StoredSample[]> {
  const rows = await db.any(q`
    SELECT * FROM metric_samples
     WHERE resolution = ${resolution} AND at >= to_timestamp(${fromMs} / 1000.0) AND at < to_timestamp(${toMs} / 1000.0)`);
  return rows.map(toSample);
}

/** Every app's whole-app rows (process '') of a resolution in [fromMs, toMs), each source's row apart. */
export async function listAppSamplesBetween(db: Db, resolution: number, fromMs: number, toMs: number): Promise<StoredSample[]> {
  const rows = await db.any(q`
    SELECT * FROM metric_samples
     WHERE resolution = ${resolution} AND process = '' AND at >= to_timestamp(${fromMs} / 1000.0) AND at < to_timestamp(${toMs} / 1000.0)`);
  return rows.map(toSample);
}

/** The newest sample time of a resolution (ms), or null when there is none. */
export async function latestSampleAt(db: Db, resolution: number): Promise<number | null> {
  const v = await db.oneFirst(q`SELECT extract(epoch FROM max(at)) * 1000 FROM metric_samples WHERE resolution = ${resolution}`);
  return v === null ? null : Number(v);
}

/** Deletes samples of a resolution older than `beforeMs`; returns how many. */
export async function deleteSamplesBefore(db: Db, resolution: number, beforeMs: number): Promise<number> {
  return (await db.query(q`DELETE FROM metric_samples WHERE resolution = ${resolution} AND at < to_timestamp(${beforeMs} / 1000.0)`)).rowCount;
}
