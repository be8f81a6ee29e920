import type { DatabasePool } from "slonik";
import { q, sql, type Db } from "./db.ts";

/** Arbitrary constant shared by every deck process: with the app's id, the key of its queue lock. */
const QUEUE_LOCK_CLASS = 4711;

/** An entry in an app's line of work; see migration 021. */
export interface QueueEntry { id: number; appId: number; kind: string; holder: string; deploymentId: number | null; running: boolean }

function toEntry(r: Record<string, unknown>): QueueEntry {
  return {
    id: Number(r.id), appId: Number(r.app_id), kind: String(r.kind), holder: String(r.holder),
    deploymentId: r.deployment_id == null ? null : Number(r.deployment_id), running: Boolean(r.running),
  };
}

/** Entries whose holder has not refreshed them within this many seconds are treated as gone. */
export const QUEUE_STALE_SECONDS = 30;

export async function enqueueWork(db: Db, e: { appId: number; kind: string; holder: string; deploymentId?: number | null }): Promise<QueueEntry> {
  return toEntry(await db.one(q`INSERT INTO app_queue (app_id, kind, holder, deployment_id)
    VALUES (${e.appId}, ${e.kind}, ${e.holder}, ${e.deploymentId ?? null}) RETURNING *`));
}

/**
 * Marks the entry running when it is the oldest live entry of its app and nothing else of the app
 * runs; returns its position otherwise (1 = next in line). The app's lock makes two servers claiming
 * at the same moment take turns. Null: the entry is gone (cancelled, or dropped as stale).
 */
export async function claimWork(db: DatabasePool, entry: { id: number; appId: number }): Promise<{ claimed: true } | { claimed: false; position: number } | null> {
  return db.transaction(async (tx) => {
    await tx.query(q`SELECT pg_advisory_xact_lock(${QUEUE_LOCK_CLASS}, ${entry.appId}::int)`);
    await dropStaleWork(tx, entry.appId);
    const ahead = await tx.maybeOne(q`
      SELECT (SELECT count(*) FROM app_queue WHERE app_id = ${entry.appId} AND id < ${entry.id}) AS ahead,
             (SELECT count(*) FROM app_queue WHERE app_id = ${entry.appId} AND running AND id <> ${entry.id}) AS running,
             EXISTS (SELECT 1 FROM app_queue WHERE id = ${entry.id}) AS present`);
    if (!ahead?.present) return null;
    const aheadCount = Number(ahead.ahead);
    if (aheadCount > 0 || Number(ahead.running) > 0) return { claimed: false as const, position: Math.max(aheadCount, 1) };
    await tx.query(q`UPDATE app_queue SET running = true, heartbeat_at = now() WHERE id = ${entry.id}`);
    return { claimed: true as const };
  });
}

/**
 * Removes entries whose holder stopped refreshing them (of one app, or all); their deployments were
 * cut off with their server and end as interrupted here.
 */
export async function dropStaleWork(db: Db, appId?: number): Promise<QueueEntry[]> {
  const rows = appId === undefined
    ? await db.any(q`DELETE FROM app_queue WHERE heartbeat_at < now() - make_interval(secs => ${QUEUE_STALE_SECONDS}) RETURNING *`)
    : await db.any(q`DELETE FROM app_queue WHERE app_id = ${appId} AND heartbeat_at < now() - make_interval(secs => ${QUEUE_STALE_SECONDS}) RETURNING *`);
  const dropped = rows.map(toEntry);
  const ids = dropped.flatMap((e) => (e.deploymentId === null ? [] : [e.deploymentId]));
  if (ids.length > 0) {
    await db.query(q`UPDATE deployments SET status = 'interrupted', error_code = 'interrupted', updated_at = now(), finished_at = now(),
        error = 'interrupted: the deck server running it stopped answering'
      WHERE id = ANY(${sql.array(ids, "int8")}) AND status IN ('queued', 'building', 'releasing', 'starting', 'checking', 'switching')`);
  }
  return dropped;
}

/** Removes every entry a holder left (a server that restarted under another holder name). */
export async function dropWorkOf(db: Db, holders: { prefix: string; except: string }): Promise<QueueEntry[]> {
  return (await db.any(q`DELETE FROM app_queue
    WHERE left(holder, ${holders.prefix.length}) = ${holders.prefix} AND holder <> ${holders.except} RETURNING *`)).map(toEntry);
}

export async function finishWork(db: Db, id: number): Promise<void> {
  await db.query(q`DELETE FROM app_queue WHERE id = ${id}`);
  await db.query(q`SELECT pg_notify('deck_app_queue', ${String(id)})`);
}

export async function attachRunningWork(db: Db, e: { appId: number; holder: string; deploymentId: number }): Promise<void> {
  await db.query(q`UPDATE app_queue SET deployment_id = ${e.deploymentId} WHERE app_id = ${e.appId} AND holder = ${e.holder} AND running`);
}

/** Keeps the given entries fresh (those whose work is still under way here); returns how many are left. */
export async function refreshWork(db: Db, ids: number[]): Promise<number> {
  if (ids.length === 0) return 0;
  const r = await db.query(q`UPDATE app_queue SET heartbeat_at = now() WHERE id = ANY(${sql.array(ids, "int8")})`);
  return r.rowCount;
}

export async function countWork(db: Db, filter: { appId?: number; holder?: string }): Promise<number> {
  if (filter.appId !== undefined) return Number(await db.oneFirst(q`SELECT count(*) FROM app_queue WHERE app_id = ${filter.appId}`));
  return Number(await db.oneFirst(q`SELECT count(*) FROM app_queue WHERE holder = ${filter.holder ?? ""}`));
}
