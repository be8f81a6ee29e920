import type { DatabasePool } from "slonik";
import { QUEUE_STALE_SECONDS } from "./app-queue.ts";
import { q, sql, type Db } from "./db.ts";

/** Arbitrary constant shared by every deck process: the key of the build slots' lock. */
const BUILD_LOCK_KEY = 4_711_2026_0021;

export interface BuildSlotEntry { id: number; holder: string; running: boolean }

/**
 * What a builder node needs to build a push (the deck server that took it serves the source, hears the
 * output and takes the artifact; see deploy/build-exchange.ts).
 */
export interface BuildJob {
  app: string;
  appId: number;
  commitSha: string;
  /** The app's builder:set choice. */
  builder?: string;
  sandbox?: { uid: number; gid: number };
  /** DECK_RUNTIME of the deck server that took the push: what kind of artifact to make. */
  runtime: "process" | "docker";
  /** Names the app's build cache on builder nodes: the app's id and its builds:cache:clear count. */
  cacheKey: string;
  timeoutMs: number;
}

export async function enqueueBuild(
  db: Db, e: { deploymentId: number | null; holder: string; job?: BuildJob; originUrl?: string; secret?: string; originHost?: string; originLocalOnly?: boolean },
): Promise<BuildSlotEntry> {
  const r = await db.one(q`INSERT INTO build_queue (deployment_id, holder, job, origin_url, secret, origin_host, origin_local_only)
    VALUES (${e.deploymentId}, ${e.holder}, ${e.job ? sql.jsonb(e.job as never) : null}, ${e.originUrl ?? null}, ${e.secret ?? null},
      ${e.originHost ?? null}, ${e.originLocalOnly ?? false}) RETURNING id, holder, running`);
  // Builder nodes waiting for work hear of it at once.
  if (e.job) await db.query(q`SELECT pg_notify('deck_build_queue', ${String(r.id)})`);
  return { id: Number(r.id), holder: String(r.holder), running: Boolean(r.running) };
}

/**
 * Takes a build slot on this deck server for the entry when fewer than `limit` builds run on the deck
 * servers (builder nodes have their own) and no entry older than it waits; otherwise returns its
 * position among the waiting (1 = next), or the builder node that took it. Null: the entry is gone.
 */
export async function claimBuildSlot(db: DatabasePool, id: number, limit: number): Promise<{ claimed: true } | { claimed: false; position: number } | { builder: string } | null> {
  return db.transaction(async (tx) => {
    await tx.query(q`SELECT pg_advisory_xact_lock(${BUILD_LOCK_KEY})`);
    await tx.query(q`DELETE FROM build_queue WHERE heartbeat_at < now() - make_interval(secs => ${QUEUE_STALE_SECONDS})`);
    const r = await tx.maybeOne(q`
      SELECT (SELECT count(*) FROM build_queue WHERE running AND builder IS NULL) AS running,
             (SELECT count(*) FROM build_queue WHERE NOT running AND id < ${id}) AS ahead,
             (SELECT builder FROM build_queue WHERE id = ${id}) AS builder,
             EXISTS (SELECT 1 FROM build_queue WHERE id = ${id}) AS present`);
    if (!r?.present) return null;
    if (r.builder !== null) return { builder: String(r.builder) };
    const ahead = Number(r.ahead);
    if (Number(r.running) + ahead >= limit) return { claimed: false as const, position: ahead + 1 };
    // A builder node may have taken it since the counts were read (it does not wait for this lock).
    const taken = await tx.query(q`UPDATE build_queue SET running = true, heartbeat_at = now() WHERE id = ${id} AND NOT running`);
    if (taken.rowCount === 0) {
      const builder = await tx.maybeOneFirst(q`SELECT builder FROM build_queue WHERE id = ${id}`);
      return builder ? { builder: String(builder) } : null;
    }
    return { claimed: true as const };
  });
}

/** A build job a builder node took: the entry's id, the job, and how to reach the deck server that waits for it. */
export interface ClaimedBuildJob {
  id: number;
  deploymentId: number | null;
  job: BuildJob;
  originUrl: string;
  secret: string;
}

/**
 * Takes the oldest waiting build job the builder node `builder` can run (never one another node is
 * taking): of a runtime it builds for, from a deck server it can reach. The deck server that waits is
 * woken at once.
 */
export async function claimBuildJob(db: Db, builder: string, can: { runtimes: string[]; host: string }): Promise<ClaimedBuildJob | null> {
  const r = await db.maybeOne(q`
    UPDATE build_queue SET running = true, builder = ${builder}
     WHERE id = (SELECT id FROM build_queue
                  WHERE NOT running AND job IS NOT NULL AND origin_url IS NOT NULL AND NOT cancel_requested
                    AND heartbeat_at >= now() - make_interval(secs => ${QUEUE_STALE_SECONDS})
                    AND job->>'runtime' = ANY(${sql.array(can.runtimes, "text")})
                    AND (NOT origin_local_only OR origin_host = ${can.host})
                  ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
     RETURNING id, deployment_id, job, origin_url, secret`);
  if (!r) return null;
  await db.query(q`SELECT pg_notify('deck_build_queue', ${String(r.id)})`);
  return { id: Number(r.id), deploymentId: r.deployment_id === null ? null : Number(r.deployment_id), job: r.job as unknown as BuildJob, originUrl: String(r.origin_url), secret: String(r.secret) };
}

/** Of the entries a builder node runs, those still wanted: present and not cancelled. */
export async function wantedBuildJobs(db: Db, ids: number[]): Promise<Set<number>> {
  if (ids.length === 0) return new Set();
  const rows = await db.anyFirst(q`SELECT id FROM build_queue WHERE id = ANY(${sql.array(ids, "int8")}) AND NOT cancel_requested`);
  return new Set(rows.map(Number));
}

export async function requestBuildCancel(db: Db, id: number): Promise<void> {
  await db.query(q`UPDATE build_queue SET cancel_requested = true WHERE id = ${id}`);
  await db.query(q`SELECT pg_notify('deck_build_queue', ${String(id)})`);
}

/** Seconds after which a builder node that stopped refreshing its row is taken for stopped. */
export const BUILDER_STALE_SECONDS = 15;

export async function saveBuilderNode(db: Db, name: string, capacity: number): Promise<void> {
  await db.query(q`INSERT INTO builder_nodes (name, capacity) VALUES (${name}, ${capacity})
    ON CONFLICT (name) DO UPDATE SET capacity = excluded.capacity, last_seen = now()`);
}

export async function removeBuilderNode(db: Db, name: string): Promise<void> {
  await db.query(q`DELETE FROM builder_nodes WHERE name = ${name}`);
}

/** Builder nodes heard from lately, with how many builds each may run. */
export async function liveBuilderNodes(db: Db): Promise<Array<{ name: string; capacity: number }>> {
  const rows = await db.any(q`SELECT name, capacity FROM builder_nodes WHERE last_seen >= now() - make_interval(secs => ${BUILDER_STALE_SECONDS}) ORDER BY name`);
  return rows.map((r) => ({ name: String(r.name), capacity: Number(r.capacity) }));
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
