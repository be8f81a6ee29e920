import { decryptSecret, encryptSecret } from "../secret-box.ts";
import { q, sql, toIso, type Db } from "./db.ts";

/**
 * Per-app log retention and log drains (migrations 025 and 030). A drain's URL is sealed at rest like
 * config vars (store/secret-box.ts): HTTPS receivers take their token in the URL.
 */

// ---------- retention ----------

/** An app's own retention settings; null = the server default. */
export interface LogRetentionRow {
  maxBytes: number | null;
  maxAgeSeconds: number | null;
}

export async function findLogRetention(db: Db, appId: number): Promise<LogRetentionRow> {
  const r = await db.maybeOne(q`SELECT max_bytes, max_age_seconds FROM log_retention WHERE app_id = ${appId}`);
  return { maxBytes: r?.max_bytes == null ? null : Number(r.max_bytes), maxAgeSeconds: r?.max_age_seconds == null ? null : Number(r.max_age_seconds) };
}

/** Replaces an app's retention settings; both null removes the row (the app follows the defaults). */
export async function saveLogRetention(db: Db, appId: number, s: LogRetentionRow): Promise<void> {
  if (s.maxBytes === null && s.maxAgeSeconds === null) {
    await db.query(q`DELETE FROM log_retention WHERE app_id = ${appId}`);
    return;
  }
  await db.query(q`INSERT INTO log_retention (app_id, max_bytes, max_age_seconds) VALUES (${appId}, ${s.maxBytes}, ${s.maxAgeSeconds})
    ON CONFLICT (app_id) DO UPDATE SET max_bytes = EXCLUDED.max_bytes, max_age_seconds = EXCLUDED.max_age_seconds, updated_at = now()`);
}

/** Every app with its own retention settings, if any (for the retention job). */
export async function listAppsWithRetention(db: Db): Promise<({ app: string } & LogRetentionRow)[]> {
  const rows = await db.any(q`SELECT a.name, r.max_bytes, r.max_age_seconds FROM apps a LEFT JOIN log_retention r ON r.app_id = a.id ORDER BY a.name`);
  return rows.map((r) => ({
    app: String(r.name),
    maxBytes: r.max_bytes == null ? null : Number(r.max_bytes),
    maxAgeSeconds: r.max_age_seconds == null ? null : Number(r.max_age_seconds),
  }));
}

// ---------- drains ----------

export type DrainKind = "syslog" | "syslog+tls" | "https";
export type DrainSource = "app" | "deck" | "router";

export interface LogDrainRow {
  id: number;
  appId: number;
  /** The app's name (joined), for shipping and messages. */
  app: string;
  /** In clear: callers show it masked. */
  url: string;
  kind: DrainKind;
  sources: DrainSource[];
  delivered: number;
  dropped: number;
  lastError: string | null;
  lastErrorAt: string | null;
  lastDeliveredAt: string | null;
  createdAt: string;
}

function toDrain(r: Record<string, unknown>): LogDrainRow {
  return {
    id: Number(r.id),
    appId: Number(r.app_id),
    app: String(r.app),
    url: decryptSecret(String(r.url)),
    kind: String(r.kind) as DrainKind,
    sources: (r.sources as string[]).map(String) as DrainSource[],
    delivered: Number(r.delivered),
    dropped: Number(r.dropped),
    lastError: r.last_error == null ? null : String(r.last_error),
    lastErrorAt: r.last_error_at == null ? null : toIso(r.last_error_at),
    lastDeliveredAt: r.last_delivered_at == null ? null : toIso(r.last_delivered_at),
    createdAt: toIso(r.created_at),
  };
}

const DRAIN_COLUMNS = sql.fragment`d.id, d.app_id, a.name AS app, d.url, d.kind, d.sources, d.delivered, d.dropped, d.last_error, d.last_error_at, d.last_delivered_at, d.created_at`;

export interface NewLogDrain {
  appId: number;
  url: string;
  kind: DrainKind;
  sources: DrainSource[];
  createdBy: number | null;
}

export async function insertLogDrain(db: Db, d: NewLogDrain): Promise<number> {
  return Number(await db.oneFirst(q`INSERT INTO log_drains (app_id, url, kind, sources, created_by)
    VALUES (${d.appId}, ${encryptSecret(d.url)}, ${d.kind}, ${sql.array(d.sources, "text")}, ${d.createdBy}) RETURNING id`));
}

export async function listLogDrains(db: Db, appId: number): Promise<LogDrainRow[]> {
  const rows = await db.any(q`SELECT ${DRAIN_COLUMNS} FROM log_drains d JOIN apps a ON a.id = d.app_id WHERE d.app_id = ${appId} ORDER BY d.id`);
  return rows.map(toDrain);
}

/** The files a drain follows on each deck server: the app's log and the router's access log. */
export type DrainFile = "app" | "router";

/** Where a drain's delivered lines end in one file (deploy/app-log.ts's LogPosition, as saved). */
export interface DrainPosition {
  ino: number;
  offset: number;
  /** The end of the last delivered line, base64. */
  anchor: string;
}

export type DrainPositions = Partial<Record<DrainFile, DrainPosition>>;

/** A drain as a shipper sees it: with where it got to in the files of the place the shipper runs for. */
export interface ShippedLogDrainRow extends LogDrainRow {
  positions: DrainPositions;
}

/** Every drain of every app (for the shipper), with its positions at `place` (a machine and data dir). */
export async function listAllLogDrains(db: Db, place: string): Promise<ShippedLogDrainRow[]> {
  const rows = await db.any(q`SELECT ${DRAIN_COLUMNS}, COALESCE(d.positions -> ${place}::text, '{}'::jsonb) AS place_positions
    FROM log_drains d JOIN apps a ON a.id = d.app_id ORDER BY d.id`);
  return rows.map((r) => ({ ...toDrain(r), positions: toPositions(r.place_positions) }));
}

/** Only well-formed positions: anything else means no saved place (the file is followed from its end). */
function toPositions(v: unknown): DrainPositions {
  const out: DrainPositions = {};
  if (v === null || typeof v !== "object") return out;
  for (const file of ["app", "router"] as const) {
    const p = (v as Record<string, unknown>)[file] as Record<string, unknown> | undefined;
    if (p && typeof p.ino === "number" && typeof p.offset === "number" && typeof p.anchor === "string") {
      out[file] = { ino: p.ino, offset: p.offset, anchor: p.anchor };
    }
  }
  return out;
}

export async function deleteLogDrain(db: Db, appId: number, id: number): Promise<boolean> {
  const r = await db.query(q`DELETE FROM log_drains WHERE app_id = ${appId} AND id = ${id}`);
  return r.rowCount > 0;
}

/** What a shipper did for one drain since its last report: added to the counters, never replacing them. */
export interface DrainProgress {
  delivered: number;
  dropped: number;
  /** The newest failure, with its time. */
  error: { message: string; at: Date } | null;
  deliveredAt: Date | null;
  /** Where the delivered lines now end, in the files of `place`: replaces the saved positions of those files. */
  positions: { place: string; files: DrainPositions } | null;
}

export async function addDrainProgress(db: Db, id: number, p: DrainProgress): Promise<void> {
  const positions = p.positions === null
    ? sql.fragment`positions`
    : sql.fragment`positions || jsonb_build_object(${p.positions.place}::text, COALESCE(positions -> ${p.positions.place}::text, '{}'::jsonb) || ${JSON.stringify(p.positions.files)}::jsonb)`;
  await db.query(q`UPDATE log_drains SET
      positions = ${positions},
      delivered = delivered + ${p.delivered},
      dropped = dropped + ${p.dropped},
      last_error = COALESCE(${p.error?.message ?? null}, last_error),
      last_error_at = COALESCE(${p.error ? p.error.at.toISOString() : null}::timestamptz, last_error_at),
      last_delivered_at = GREATEST(last_delivered_at, ${p.deliveredAt ? p.deliveredAt.toISOString() : null}::timestamptz)
    WHERE id = ${id}`);
}
