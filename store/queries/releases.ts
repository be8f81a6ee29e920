import { decryptSecrets, encryptSecrets } from "../secret-box.ts";
import { recordBuildUsage } from "./billing-ledger.ts";
import { q, sql, toIso, type Db } from "./db.ts";

export interface BuildRow { id: number; appId: number; commitSha: string; buildpack: string | null; status: string; slugPath: string | null; sizeBytes: number | null; procfile: Record<string, string> | null }
export interface ReleaseRow { id: number; appId: number; version: number; buildId: number; config: Record<string, string>; commitSha: string; description: string; status: string; createdAt: string; createdBy: number | null }
export interface DeploymentRow { id: number; appId: number; releaseId: number | null; commitSha: string | null; kind: string; status: string; buildTime: number | null; error: string | null; errorCode: string | null; createdAt: string }

const json = <T>(v: unknown): T => (typeof v === "string" ? JSON.parse(v) : v) as T;

function toBuild(r: Record<string, unknown>): BuildRow {
  return { id: Number(r.id), appId: Number(r.app_id), commitSha: String(r.commit_sha), buildpack: (r.buildpack as string) ?? null, status: String(r.status), slugPath: (r.slug_path as string) ?? null, sizeBytes: r.size_bytes == null ? null : Number(r.size_bytes), procfile: r.procfile == null ? null : json(r.procfile) };
}
function toRelease(r: Record<string, unknown>): ReleaseRow {
  return { id: Number(r.id), appId: Number(r.app_id), version: Number(r.version), buildId: Number(r.build_id), config: r.config_format === "plain" ? json(r.config) : decryptSecrets(json(r.config)), commitSha: String(r.commit_sha), description: String(r.description), status: String(r.status), createdAt: toIso(r.created_at), createdBy: r.created_by == null ? null : Number(r.created_by) };
}
function toDeployment(r: Record<string, unknown>): DeploymentRow {
  return { id: Number(r.id), appId: Number(r.app_id), releaseId: r.release_id == null ? null : Number(r.release_id), commitSha: (r.commit_sha as string) ?? null, kind: String(r.kind), status: String(r.status), buildTime: r.build_time == null ? null : Number(r.build_time), error: (r.error as string) ?? null, errorCode: (r.error_code as string) ?? null, createdAt: toIso(r.created_at) };
}

// ---- builds ----
export async function insertBuild(db: Db, appId: number, commitSha: string, deploymentId: number | null = null): Promise<BuildRow> {
  return toBuild(await db.one(q`INSERT INTO builds (app_id, commit_sha, status, deployment_id) VALUES (${appId}, ${commitSha}, 'building', ${deploymentId}) RETURNING *`));
}
/**
 * Marks the build finished and, in the same transaction, records its build time in the usage ledger
 * (builds are deleted with their app, so the ledger cannot wait for a later sweep). A failed build
 * counts too: it held a build machine all the same.
 */
export async function finishBuild(db: Db, id: number, b: { ok: boolean; buildpack?: string; slugPath?: string; sizeBytes?: number; procfile?: Record<string, string> }): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.query(q`UPDATE builds SET status = ${b.ok ? "succeeded" : "failed"}, buildpack = ${b.buildpack ?? null}, slug_path = ${b.slugPath ?? null},
      size_bytes = ${b.sizeBytes ?? null}, procfile = ${b.procfile ? sql.jsonb(b.procfile) : null}, finished_at = now() WHERE id = ${id}`);
    await recordBuildUsage(tx, { buildIds: [id] });
  });
}
export async function findBuild(db: Db, id: number): Promise<BuildRow | null> {
  const r = await db.maybeOne(q`SELECT * FROM builds WHERE id = ${id}`);
  return r ? toBuild(r) : null;
}
/** Succeeded builds whose slug is still on disk, newest first. */
export async function listSlugBuilds(db: Db, appId: number): Promise<BuildRow[]> {
  return (await db.any(q`SELECT * FROM builds WHERE app_id = ${appId} AND status = 'succeeded' AND pruned_at IS NULL ORDER BY id DESC`)).map(toBuild);
}
export async function markBuildPruned(db: Db, id: number): Promise<void> {
  await db.query(q`UPDATE builds SET pruned_at = now() WHERE id = ${id}`);
}

// ---- releases ----
export async function insertRelease(db: Db, r: { appId: number; buildId: number; config: Record<string, string>; commitSha: string; description: string; createdBy: number | null }): Promise<ReleaseRow> {
  // The app row lock serialises version numbers per app.
  await db.query(q`SELECT id FROM apps WHERE id = ${r.appId} FOR UPDATE`);
  return toRelease(await db.one(q`INSERT INTO releases (app_id, version, build_id, config, commit_sha, description, status, created_by)
    VALUES (${r.appId}, (SELECT COALESCE(max(version), 0) + 1 FROM releases WHERE app_id = ${r.appId}), ${r.buildId}, ${sql.jsonb(encryptSecrets(r.config))},
            ${r.commitSha}, ${r.description}, 'pending', ${r.createdBy}) RETURNING *`));
}
export async function setReleaseStatus(db: Db, id: number, status: string): Promise<void> {
  await db.query(q`UPDATE releases SET status = ${status} WHERE id = ${id}`);
}
export async function supersedeOtherReleases(db: Db, appId: number, liveId: number): Promise<void> {
  await db.query(q`UPDATE releases SET status = 'superseded' WHERE app_id = ${appId} AND status = 'live' AND id <> ${liveId}`);
}
export async function listReleases(db: Db, appId: number, limit = 50): Promise<ReleaseRow[]> {
  return (await db.any(q`SELECT * FROM releases WHERE app_id = ${appId} ORDER BY version DESC LIMIT ${limit}`)).map(toRelease);
}
export async function findRelease(db: Db, id: number): Promise<ReleaseRow | null> {
  const r = await db.maybeOne(q`SELECT * FROM releases WHERE id = ${id}`);
  return r ? toRelease(r) : null;
}
export async function findReleaseByVersion(db: Db, appId: number, version: number): Promise<ReleaseRow | null> {
  const r = await db.maybeOne(q`SELECT * FROM releases WHERE app_id = ${appId} AND version = ${version}`);
  return r ? toRelease(r) : null;
}

// ---- deployments ----
export async function insertDeployment(db: Db, d: { appId: number; kind: string; commitSha?: string | null; releaseId?: number | null; createdBy: number | null }): Promise<DeploymentRow> {
  return toDeployment(await db.one(q`INSERT INTO deployments (app_id, kind, commit_sha, release_id, status, created_by)
    VALUES (${d.appId}, ${d.kind}, ${d.commitSha ?? null}, ${d.releaseId ?? null}, 'queued', ${d.createdBy}) RETURNING *`));
}
export async function updateDeployment(db: Db, id: number, d: { status?: string; releaseId?: number; buildTime?: number; error?: string; finished?: boolean }): Promise<void> {
  await db.query(q`UPDATE deployments SET status = COALESCE(${d.status ?? null}, status), release_id = COALESCE(${d.releaseId ?? null}, release_id),
    build_time = COALESCE(${d.buildTime ?? null}, build_time), error = COALESCE(${d.error ?? null}, error),
    finished_at = CASE WHEN ${d.finished ?? false} THEN now() ELSE finished_at END WHERE id = ${id}`);
}
export async function findDeployment(db: Db, id: number): Promise<DeploymentRow | null> {
  const r = await db.maybeOne(q`SELECT * FROM deployments WHERE id = ${id}`);
  return r ? toDeployment(r) : null;
}
export async function listUnfinishedDeployments(db: Db): Promise<Array<DeploymentRow & { quietSeconds: number; kept: boolean }>> {
  return (await db.any(q`SELECT *, extract(epoch FROM now() - updated_at)::float8 AS quiet_seconds FROM deployments
    WHERE status IN ('queued', 'building', 'releasing', 'starting', 'checking', 'switching', 'draining') ORDER BY id`))
    .map((r) => ({ ...toDeployment(r), quietSeconds: Number(r.quiet_seconds), kept: r.status === "queued" && r.request != null }));
}
export async function insertBuildLogs(db: Db, deploymentId: number, lines: { level: string; message: string; at: Date }[]): Promise<void> {
  if (lines.length === 0) return;
  await db.query(q`INSERT INTO build_logs (deployment_id, level, message, timestamp)
    SELECT ${deploymentId}, l, m, t FROM unnest(${sql.array(lines.map((x) => x.level), "text")}::text[],
      ${sql.array(lines.map((x) => x.message), "text")}::text[], ${sql.array(lines.map((x) => x.at.toISOString()), "text")}::timestamptz[]) AS u(l, m, t)`);
}
export async function readBuildLogs(db: Db, deploymentId: number): Promise<string[]> {
  return (await db.anyFirst(q`SELECT message FROM build_logs WHERE deployment_id = ${deploymentId} ORDER BY id`)).map(String);
}

/** A waiting push that can still be deployed after a restart (see migration 021). */
export interface QueuedPushRequest { ref: string; oldSha: string; keepRef: string }

export async function setDeploymentRequest(db: Db, id: number, request: QueuedPushRequest): Promise<void> {
  await db.query(q`UPDATE deployments SET request = ${sql.jsonb(request as unknown as Record<string, string>)} WHERE id = ${id}`);
}

/** Pushes still queued that kept their commit, in arrival order: a restarted server deploys them. */
export async function listResumablePushes(db: Db): Promise<(DeploymentRow & { request: QueuedPushRequest; createdBy: number | null })[]> {
  const rows = await db.any(q`SELECT * FROM deployments WHERE kind = 'push' AND status = 'queued' AND request IS NOT NULL ORDER BY id`);
  return rows.map((r) => ({ ...toDeployment(r), request: json<QueuedPushRequest>(r.request), createdBy: r.created_by == null ? null : Number(r.created_by) }));
}

/** The state a deployment's row is in, or null when there is no such row. */
export async function deploymentStatus(db: Db, id: number): Promise<string | null> {
  const v = await db.maybeOneFirst(q`SELECT status FROM deployments WHERE id = ${id}`);
  return v === null ? null : String(v);
}

/** The app's live release, or null. */
export async function liveReleaseOf(db: Db, appId: number): Promise<ReleaseRow | null> {
  const r = await db.maybeOne(q`SELECT * FROM releases WHERE app_id = ${appId} AND status = 'live' ORDER BY version DESC LIMIT 1`);
  return r ? toRelease(r) : null;
}
