import type { DatabasePool } from "slonik";
import { QUEUE_STALE_SECONDS } from "./app-queue.ts";
import { q, sql, type Db } from "./db.ts";

/** Arbitrary constant shared by every deck process: the key of the build slots' lock. */
const BUILD_LOCK_KEY = 4_711_2026_0021;

export interface BuildSlotEntry { id: number; holder: string; running: boolean }

export async function enqueueBuild(db: Db, e: { deploymentId: number | null; holder: string }): Promise<BuildSlotEntry> {
  const r = await db.one(q`INSERT INTO build_queue (deployment_id, holder) VALUES (${e.deploymentId}, ${e.holder}) RETURNING id, holder, running`);
  return { id: Number(r.id), holder: String(r.holder), running: Boolean(r.running) };
}

/**
 * Takes a build slot for the entry when fewer than `limit` builds run and no entry older than it
 * waits; otherwise returns its position among the waiting (1 = next). Null: the entry is gone.
 */
export async function claimBuildSlot(db: DatabasePool, id: number, limit: number): Promise<{ claimed: true } | { claimed: false; position: number } | null> {
  return db.transaction(async (tx) => {
    await tx.query(q`SELECT pg_advisory_xact_lock(${BUILD_LOCK_KEY})`);
    await tx.query(q`DELETE FROM build_queue WHERE heartbeat_at < now() - make_interval(secs => ${QUEUE_STALE_SECONDS})`);
    const r = await tx.maybeOne(q`
      SELECT (SELECT count(*) FROM build_queue WHERE running) AS running,
             (SELECT count(*) FROM build_queue WHERE NOT running AND id < ${id}) AS ahead,
             EXISTS (SELECT 1 FROM build_queue WHERE id = ${id}) AS present`);
    if (!r?.present) return null;
    const ahead = Number(r.ahead);
    if (Number(r.running) + ahead >= limit) return { claimed: false as const, position: ahead + 1 };
    await tx.query(q`UPDATE build_queue SET running = true, heartbeat_at = now() WHERE id = ${id}`);
    return { claimed: true as const };
  });
}

export async function finishBuildSlot(db: Db, id: number): Promise<void> {
  await db.query(q`DELETE FROM build_queue WHERE id = ${id}`);
  await db.query(q`SELECT pg_notify('deck_build_queue', ${String(id)})`);
}

export async function refreshBuildSlots(db: Db, ids: number[]): Promise<void> {
  if (ids.length === 0) return;
  await db.query(q`UPDATE build_queue SET heartbeat_at = now() WHERE id = ANY(${sql.array(ids, "int8")})`);
}

/** Removes every entry an earlier run of this server left (prefix) but this run's. */
export async function dropBuildSlotsOf(db: Db, holders: { prefix: string; except: string }): Promise<number> {
  return (await db.query(q`DELETE FROM build_queue WHERE left(holder, ${holders.prefix.length}) = ${holders.prefix} AND holder <> ${holders.except}`)).rowCount;
}
