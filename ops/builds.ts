import { rm } from "node:fs/promises";
import { measureDir } from "../builder/index.ts";
import { DeckError } from "../core/index.ts";
import type { BuildRun, BuildRunState, DeployDeps } from "../deploy/index.ts";
import { audit, bumpBuildCacheVersion, q, readBuildLogs, sql, toIso, type Db } from "../store/queries/index.ts";
import { authorizeApp, type Caller } from "./access.ts";

/**
 * The `builds:*` operations SSH commands and the REST API share: listing builds (those in line, in
 * progress and finished), showing or following one's output, cancelling, clearing the build cache.
 */

// ---------- builds:list ----------

export type BuildStatus = "queued" | "running" | "succeeded" | "failed" | "cancelled" | "timed-out" | "out-of-memory" | "interrupted";

export interface BuildSummary {
  /** Null while the push waits for its turn (the build row is made when it starts). */
  id: number | null;
  status: BuildStatus;
  commit: string;
  buildpack: string | null;
  durationMs: number | null;
  /** The build's artifact (slug) on disk. */
  sizeBytes: number | null;
  /** The app's git repository once the push that made this build had finished. */
  repoSizeBytes: number | null;
  /** Whether the artifact is still on disk (old ones are garbage-collected). */
  artifact: "kept" | "pruned" | null;
  startedAt: string;
  pusher: string | null;
  error: string | null;
}

interface BuildRecord {
  id: number;
  commitSha: string;
  buildpack: string | null;
  status: string;
  sizeBytes: number | null;
  repoSizeBytes: number | null;
  startedAt: string;
  finishedAt: string | null;
  prunedAt: string | null;
  deploymentId: number | null;
  error: string | null;
  errorCode: string | null;
  pusher: string | null;
}

/*
 * A build row does not name its deployment; the push that made it does: per app, deploys run one at a
 * time and a push inserts its deployment just before its build, so a build belongs to the newest push
 * deployment of its app and commit created no later than the build started.
 */
const BUILD_RECORD = sql.fragment`
  SELECT b.id, b.commit_sha, b.buildpack, b.status, b.size_bytes, b.repo_size_bytes, b.started_at, b.finished_at, b.pruned_at,
         d.id AS deployment_id, d.error, d.error_code, u.email AS pusher
    FROM builds b
    LEFT JOIN LATERAL (
      SELECT id, error, error_code, created_by FROM deployments
       WHERE CASE WHEN b.deployment_id IS NOT NULL THEN id = b.deployment_id
             ELSE app_id = b.app_id AND kind = 'push' AND commit_sha = b.commit_sha AND created_at <= b.started_at END
       ORDER BY id DESC LIMIT 1) d ON true
    LEFT JOIN users u ON u.id = d.created_by`;

function toRecord(r: Record<string, unknown>): BuildRecord {
  return {
    id: Number(r.id), commitSha: String(r.commit_sha), buildpack: (r.buildpack as string) ?? null, status: String(r.status),
    sizeBytes: r.size_bytes == null ? null : Number(r.size_bytes), repoSizeBytes: r.repo_size_bytes == null ? null : Number(r.repo_size_bytes), startedAt: toIso(r.started_at),
    finishedAt: r.finished_at == null ? null : toIso(r.finished_at), prunedAt: r.pruned_at == null ? null : toIso(r.pruned_at),
    deploymentId: r.deployment_id == null ? null : Number(r.deployment_id), error: (r.error as string) ?? null, errorCode: (r.error_code as string) ?? null, pusher: (r.pusher as string) ?? null,
  };
}

async function listBuildRecords(db: Db, appId: number, limit: number): Promise<BuildRecord[]> {
  return (await db.any(q`${BUILD_RECORD} WHERE b.app_id = ${appId} ORDER BY b.id DESC LIMIT ${limit}`)).map(toRecord);
}

async function findBuildRecord(db: Db, appId: number, id: number): Promise<BuildRecord | null> {
  const r = await db.maybeOne(q`${BUILD_RECORD} WHERE b.app_id = ${appId} AND b.id = ${id}`);
  return r ? toRecord(r) : null;
}

/** What a finished build's failure was, from its deployment's failure code. */
export function classifyFailure(error: string | null, code: string | null = null): BuildStatus {
  if (code === "cancelled") return "cancelled";
  if (code === "timeout") return "timed-out";
  if (code === "out_of_memory") return "out-of-memory";
  if (code !== null) return "failed";
  // Deployments recorded before failures had a code: their message is all there is.
  if (!error) return "failed";
  if (error.startsWith("build cancelled")) return "cancelled";
  if (error.startsWith("build timed out")) return "timed-out";
  if (error.startsWith("build ran out of memory")) return "out-of-memory";
  return "failed";
}

function summarise(rec: BuildRecord, live: BuildRun | undefined, now: number): BuildSummary {
  let status: BuildStatus;
  if (rec.status === "succeeded") status = "succeeded";
  else if (rec.status === "failed") status = classifyFailure(rec.error, rec.errorCode);
  else status = live ? "running" : "interrupted"; // a building row no server is running: deck stopped mid-build
  const end = rec.finishedAt ? Date.parse(rec.finishedAt) : status === "running" ? now : null;
  return {
    id: rec.id, status, commit: rec.commitSha, buildpack: rec.buildpack, durationMs: end === null ? null : end - Date.parse(rec.startedAt),
    sizeBytes: rec.sizeBytes, repoSizeBytes: rec.repoSizeBytes, artifact: rec.status !== "succeeded" ? null : rec.prunedAt ? "pruned" : "kept",
    startedAt: rec.startedAt, pusher: rec.pusher ?? live?.pusher ?? null, error: status === "succeeded" ? null : rec.error,
  };
}

/** The app's recent builds, newest first: pushes still waiting for their turn, then the build rows. */
export async function listBuilds(deps: DeployDeps, caller: Caller, name: string, limit = 20): Promise<BuildSummary[]> {
  const app = await authorizeApp(deps.db, caller, "app:logs", name);
  const runs = deps.runs.forApp(app.name);
  // Pushes still in line, on this server or another one sharing the database.
  const queued = await deps.db.any(q`SELECT d.commit_sha, d.created_at, u.email FROM deployments d LEFT JOIN users u ON u.id = d.created_by
    WHERE d.app_id = ${app.id} AND d.kind = 'push' AND d.status = 'queued' ORDER BY d.id DESC LIMIT ${limit}`);
  const waiting: BuildSummary[] = queued.map((r) => ({
    id: null, status: "queued", commit: String(r.commit_sha), buildpack: null, durationMs: null, sizeBytes: null, repoSizeBytes: null, artifact: null,
    startedAt: toIso(r.created_at), pusher: (r.email as string) ?? null, error: null,
  }));
  const now = Date.now();
  const rows = (await listBuildRecords(deps.db, app.id, limit)).map((rec) => summarise(rec, runs.find((r) => r.buildId === rec.id), now));
  return [...waiting, ...rows].slice(0, limit);
}

/**
 * Stores the size of the app's repository on the newest build of `commitSha`, once the push that made
 * it has finished (its objects are in the repository, or were discarded with a refused push).
 */
export async function recordRepoSize(deps: Pick<DeployDeps, "db" | "paths">, app: { id: number; name: string }, commitSha: string): Promise<number> {
  const bytes = await measureDir(deps.paths.repo(app.name));
  await deps.db.query(q`UPDATE builds SET repo_size_bytes = ${bytes}
    WHERE id = (SELECT max(id) FROM builds WHERE app_id = ${app.id} AND commit_sha = ${commitSha})`);
  return bytes;
}

// ---------- builds:output ----------

export type BuildOutputTarget =
  | { kind: "live"; id: number | null; run: BuildRun }
  | { kind: "finished"; summary: BuildSummary; lines: string[] };

/**
 * The build to show: `id`, or with no id the app's build in progress (else its newest one). A build in
 * progress is followed live; a finished one is read from build_logs.
 */
export async function findBuildOutput(deps: DeployDeps, caller: Caller, name: string, id?: number): Promise<BuildOutputTarget> {
  const app = await authorizeApp(deps.db, caller, "app:logs", name);
  const runs = deps.runs.forApp(app.name);
  if (id === undefined) {
    const active = runs.find((r) => r.buildId !== null) ?? runs[runs.length - 1];
    if (active) return { kind: "live", id: active.buildId, run: active };
    const [latest] = await listBuildRecords(deps.db, app.id, 1);
    if (!latest) throw new DeckError("not_found", `${app.name} has no builds yet; push to build it`);
    id = latest.id;
  }
  const run = runs.find((r) => r.buildId === id);
  if (run) return { kind: "live", id, run };
  const rec = await findBuildRecord(deps.db, app.id, id);
  if (!rec) throw new DeckError("not_found", `${app.name} has no build ${id} (see builds:list ${app.name})`);
  const lines = rec.deploymentId === null ? [] : await readBuildLogs(deps.db, rec.deploymentId);
  return { kind: "finished", summary: summarise(rec, undefined, Date.now()), lines };
}

// ---------- builds:cancel ----------

export interface CancelledBuild { id: number | null; state: BuildRunState }

/**
 * Cancels the app's build in progress and every push of it still waiting: each push is rejected with
 * "build cancelled by <who>". Resolves once the running build's processes are gone.
 */
export async function cancelBuilds(deps: DeployDeps, caller: Caller, name: string): Promise<CancelledBuild[]> {
  const app = await authorizeApp(deps.db, caller, "app:deploy", name);
  const runs = deps.runs.forApp(app.name).filter((r) => r.cancellable);
  if (runs.length === 0) throw new DeckError("no_build", `${app.name} has no build running or waiting (see builds:list ${app.name})`);
  const cancelled: CancelledBuild[] = [];
  for (const r of runs) {
    const state = r.state;
    if (r.cancel(caller.user.email)) cancelled.push({ id: r.buildId, state });
  }
  await audit(deps.db, { userId: caller.user.id, action: "builds:cancel", target: app.name, sourceIp: caller.sourceIp, result: "ok", data: { via: caller.via, builds: cancelled } });
  // A build stops its whole process group with a grace period of a few seconds.
  await Promise.all(runs.map((r) => r.waitBuildOver(15_000)));
  return cancelled;
}

// ---------- builds:cache:clear ----------

/** Deletes the app's build cache (every buildpack's part of it): its next build starts cold. */
export async function clearBuildCache(deps: DeployDeps, caller: Caller, name: string): Promise<{ freedBytes: number }> {
  const app = await authorizeApp(deps.db, caller, "app:deploy", name);
  if (await deps.queue.busy(app.id)) {
    throw new DeckError("deploy_in_progress", `a deploy of ${app.name} is in progress; clear the cache once it has finished (or run builds:cancel ${app.name})`);
  }
  // Holding the app's deploy slot keeps a push from starting a build on a half-deleted cache.
  const freedBytes = await deps.queue.run(app, "cache-clear", () => undefined, async () => {
    const dir = deps.paths.cache(app.name);
    const bytes = await measureDir(dir).catch((e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT") return 0;
      throw e;
    });
    await rm(dir, { recursive: true, force: true });
    // Builder nodes key their copy of the cache by this version: their next build of the app starts cold too.
    await bumpBuildCacheVersion(deps.db, app.id);
    return bytes;
  });
  await audit(deps.db, { userId: caller.user.id, action: "builds:cache:clear", target: app.name, sourceIp: caller.sourceIp, result: "ok", data: { via: caller.via, freedBytes } });
  return { freedBytes };
}
