import { SANDBOX_UID_RANGE } from "../../config/index.ts";
import { DeckError, type SandboxIdentity } from "../../core/index.ts";
import { decryptSecrets, encryptSecrets } from "../secret-box.ts";
import { q, sql, toIso, type Db } from "./db.ts";

export interface AppRow {
  id: number;
  name: string;
  orgId: number;
  status: string;
  framework: string | null;
  healthCheckPath: string;
  formation: Record<string, number>;
  liveDeploymentId: number | null;
  /** The builder chosen with builder:set; null = detect from the repository. */
  builder: string | null;
  /** Per-app limits for app processes (Docker runtime); null = the server default. */
  memoryLimit: number | null;
  cpuLimit: number | null;
  /** Router settings (see RouteSettings); null = the server-wide default. */
  router: AppRouterSettings;
  /** Stopped with ps:stop: no processes run and the router shows the maintenance page. */
  stopped: boolean;
  /** The app's own unprivileged uid and gid (equal): its builds, release commands and processes run under it. */
  sandbox: SandboxIdentity;
  createdAt: string;
}

export interface AppRouterSettings {
  maintenance: boolean;
  rateLimitRps: number | null;
  rateLimitBurst: number | null;
  maxBodyBytes: number | null;
  redirectHttps: boolean;
  hsts: boolean;
  /**
   * Response body bytes per second the router lets the app use (RouteSettings.bandwidthBytesPerSecond);
   * null = no limit. Set by billing (setAppThrottle) for Free orgs past their bandwidth allowance, not
   * by users: setAppRouterSettings leaves it alone.
   */
  throttleBytesPerSecond: number | null;
}

/** The router settings users change (router:set, maintenance mode). */
export type UserRouterSettings = Omit<AppRouterSettings, "throttleBytesPerSecond">;

function toApp(r: Record<string, unknown>): AppRow {
  return {
    id: Number(r.id),
    name: String(r.name),
    orgId: Number(r.org_id),
    status: String(r.status),
    framework: (r.framework as string) ?? null,
    healthCheckPath: String(r.health_check_path),
    formation: (typeof r.formation === "string" ? JSON.parse(r.formation) : r.formation) as Record<string, number>,
    liveDeploymentId: r.live_deployment_id == null ? null : Number(r.live_deployment_id),
    builder: (r.builder as string) ?? null,
    memoryLimit: r.memory_limit == null ? null : Number(r.memory_limit),
    cpuLimit: r.cpu_limit == null ? null : Number(r.cpu_limit),
    router: {
      maintenance: r.maintenance === true,
      rateLimitRps: r.rate_limit_rps == null ? null : Number(r.rate_limit_rps),
      rateLimitBurst: r.rate_limit_burst == null ? null : Number(r.rate_limit_burst),
      maxBodyBytes: r.max_body_bytes == null ? null : Number(r.max_body_bytes),
      redirectHttps: r.redirect_https === true,
      hsts: r.hsts === true,
      throttleBytesPerSecond: r.throttle_bytes_per_second == null ? null : Number(r.throttle_bytes_per_second),
    },
    stopped: r.stopped === true,
    sandbox: { uid: Number(r.sandbox_uid), gid: Number(r.sandbox_uid) },
    createdAt: toIso(r.created_at),
  };
}

export async function findApp(db: Db, name: string): Promise<AppRow | null> {
  const r = await db.maybeOne(q`SELECT * FROM apps WHERE name = ${name}`);
  return r ? toApp(r) : null;
}

export async function listApps(db: Db, orgIds: number[] | "all"): Promise<AppRow[]> {
  const rows = orgIds === "all"
    ? await db.any(q`SELECT * FROM apps ORDER BY name`)
    : await db.any(q`SELECT * FROM apps WHERE org_id = ANY(${sql.array(orgIds, "int8")}) ORDER BY name`);
  return rows.map(toApp);
}

/** DECK_SANDBOX_UID_BASE's default, for callers without a config (tests of the store alone). */
export const DEFAULT_SANDBOX_UID_BASE = 200_000;

export interface NewApp {
  name: string;
  orgId: number;
  createdBy: number | null;
  /** DECK_SANDBOX_UID_BASE: the app's uid is this + its id. */
  sandboxUidBase?: number;
}

export async function insertApp(db: Db, a: NewApp): Promise<AppRow> {
  const base = a.sandboxUidBase ?? DEFAULT_SANDBOX_UID_BASE;
  // The id is drawn first so the uid can be derived from it in the same statement (the column is NOT NULL).
  const id = Number(await db.oneFirst(q`SELECT nextval(pg_get_serial_sequence('apps', 'id'))`));
  if (id >= SANDBOX_UID_RANGE) {
    throw new DeckError("sandbox_uids_exhausted", `cannot create ${a.name}: deck has created ${SANDBOX_UID_RANGE} apps, as many as its sandbox uid range (DECK_SANDBOX_UID_BASE + app id) holds`);
  }
  const r = await db.one(q`INSERT INTO apps (id, name, org_id, created_by, sandbox_uid) VALUES (${id}, ${a.name}, ${a.orgId}, ${a.createdBy}, ${base + id}) RETURNING *`);
  await db.query(q`INSERT INTO environments (app_id, name) VALUES (${Number(r.id)}, 'production')`);
  return toApp(r);
}

export async function deleteApp(db: Db, appId: number): Promise<void> {
  await db.query(q`UPDATE apps SET live_deployment_id = NULL WHERE id = ${appId}`);
  await db.query(q`DELETE FROM apps WHERE id = ${appId}`);
}

export async function setAppStatus(db: Db, appId: number, status: string, framework?: string): Promise<void> {
  await db.query(q`UPDATE apps SET status = ${status}, framework = COALESCE(${framework ?? null}, framework), updated_at = now() WHERE id = ${appId}`);
}

export async function setFormation(db: Db, appId: number, formation: Record<string, number>): Promise<void> {
  await db.query(q`UPDATE apps SET formation = ${sql.jsonb(formation)}, updated_at = now() WHERE id = ${appId}`);
}

export async function setLiveDeployment(db: Db, appId: number, deploymentId: number): Promise<void> {
  await db.query(q`UPDATE apps SET live_deployment_id = ${deploymentId}, status = 'running', updated_at = now() WHERE id = ${appId}`);
}

// ---- config vars (the "production" environment) ----
export async function getConfigVars(db: Db, appId: number): Promise<Record<string, string>> {
  const r = await db.maybeOne(q`SELECT variables, variables_format FROM environments WHERE app_id = ${appId} AND name = 'production'`);
  if (r == null) return {};
  const stored = (typeof r.variables === "string" ? JSON.parse(r.variables) : r.variables) as Record<string, string>;
  if (r.variables_format !== "plain") return decryptSecrets(stored);
  // Written before config was encrypted (migration 004): seal it, and this app's older releases, now.
  // Each update is guarded by the format, so a concurrent seal or save is never overwritten.
  await db.query(q`UPDATE environments SET variables = ${sql.jsonb(encryptSecrets(stored))}, variables_format = 'sealed'
    WHERE app_id = ${appId} AND name = 'production' AND variables_format = 'plain'`);
  for (const rel of await db.any(q`SELECT id, config FROM releases WHERE app_id = ${appId} AND config_format = 'plain'`)) {
    const config = (typeof rel.config === "string" ? JSON.parse(rel.config) : rel.config) as Record<string, string>;
    await db.query(q`UPDATE releases SET config = ${sql.jsonb(encryptSecrets(config))}, config_format = 'sealed' WHERE id = ${Number(rel.id)} AND config_format = 'plain'`);
  }
  return stored;
}

export async function saveConfigVars(db: Db, appId: number, vars: Record<string, string>): Promise<void> {
  const format = await db.maybeOneFirst(q`SELECT variables_format FROM environments WHERE app_id = ${appId} AND name = 'production'`);
  // Reading a pre-encryption row seals the app's older releases too, which overwriting it would skip.
  if (format === "plain") await getConfigVars(db, appId);
  await db.query(q`INSERT INTO environments (app_id, name, variables, variables_format) VALUES (${appId}, 'production', ${sql.jsonb(encryptSecrets(vars))}, 'sealed')
    ON CONFLICT (app_id, name) DO UPDATE SET variables = EXCLUDED.variables, variables_format = 'sealed'`);
}

// ---- audit ----
export async function audit(db: Db, e: { userId: number | null; action: string; target: string; sourceIp?: string | null; result: "ok" | "denied" | "failed"; data?: Record<string, unknown> }): Promise<void> {
  await db.query(q`INSERT INTO audit_log (user_id, action, target, source_ip, result, data)
    VALUES (${e.userId}, ${e.action}, ${e.target}, ${e.sourceIp ?? null}, ${e.result}, ${sql.jsonb((e.data ?? {}) as never)})`);
}

export async function setHealthCheckPath(db: Db, appId: number, path: string): Promise<void> {
  await db.query(q`UPDATE apps SET health_check_path = ${path}, updated_at = now() WHERE id = ${appId}`);
}

export async function setAppBuilder(db: Db, appId: number, builder: string | null): Promise<void> {
  await db.query(q`UPDATE apps SET builder = ${builder}, updated_at = now() WHERE id = ${appId}`);
}

export async function setAppLimits(db: Db, appId: number, limits: { memoryLimit: number | null; cpuLimit: number | null }): Promise<void> {
  await db.query(q`UPDATE apps SET memory_limit = ${limits.memoryLimit}, cpu_limit = ${limits.cpuLimit}, updated_at = now() WHERE id = ${appId}`);
}

/** Changes some of an app's router settings; fields left out keep their value. */
export async function setAppRouterSettings(db: Db, appId: number, s: Partial<UserRouterSettings>): Promise<void> {
  const sets = [];
  if (s.maintenance !== undefined) sets.push(sql.fragment`maintenance = ${s.maintenance}`);
  if (s.rateLimitRps !== undefined) sets.push(sql.fragment`rate_limit_rps = ${s.rateLimitRps}`);
  if (s.rateLimitBurst !== undefined) sets.push(sql.fragment`rate_limit_burst = ${s.rateLimitBurst}`);
  if (s.maxBodyBytes !== undefined) sets.push(sql.fragment`max_body_bytes = ${s.maxBodyBytes}`);
  if (s.redirectHttps !== undefined) sets.push(sql.fragment`redirect_https = ${s.redirectHttps}`);
  if (s.hsts !== undefined) sets.push(sql.fragment`hsts = ${s.hsts}`);
  if (sets.length === 0) return;
  sets.push(sql.fragment`updated_at = now()`);
  await db.query(q`UPDATE apps SET ${sql.join(sets, sql.fragment`, `)} WHERE id = ${appId}`);
}

/**
 * Sets (or, with null, lifts) the app's bandwidth throttle; true when the stored value changed, so the
 * caller knows to send the app's route again. Routers apply it once they get the route.
 */
export async function setAppThrottle(db: Db, appId: number, bytesPerSecond: number | null): Promise<boolean> {
  if (bytesPerSecond !== null && !(Number.isSafeInteger(bytesPerSecond) && bytesPerSecond > 0)) {
    throw new RangeError(`a bandwidth throttle is a whole number of bytes per second above 0, not ${bytesPerSecond}`);
  }
  const changed = await db.maybeOneFirst(q`UPDATE apps SET throttle_bytes_per_second = ${bytesPerSecond}, updated_at = now()
    WHERE id = ${appId} AND throttle_bytes_per_second IS DISTINCT FROM ${bytesPerSecond}::bigint RETURNING id`);
  return changed !== null;
}

/** Marks an app stopped (ps:stop) or running again. */
export async function setAppStopped(db: Db, appId: number, stopped: boolean): Promise<void> {
  await db.query(q`UPDATE apps SET stopped = ${stopped}, updated_at = now() WHERE id = ${appId}`);
}

/**
 * Stored sandbox uids outside [base, base + range): apps created under an earlier DECK_SANDBOX_UID_BASE,
 * which the network rules must cover as well.
 */
export async function listSandboxUidsOutside(db: Db, base: number, range: number): Promise<number[]> {
  const rows = await db.anyFirst(q`SELECT sandbox_uid FROM apps WHERE sandbox_uid < ${base} OR sandbox_uid >= ${base + range} ORDER BY sandbox_uid`);
  return rows.map(Number);
}

/** builds:cache:clear: builder nodes key their copy of the app's build cache by this count. */
export async function bumpBuildCacheVersion(db: Db, appId: number): Promise<void> {
  await db.query(q`UPDATE apps SET build_cache_version = build_cache_version + 1 WHERE id = ${appId}`);
}

export async function buildCacheKey(db: Db, appId: number): Promise<string> {
  const v = await db.oneFirst(q`SELECT build_cache_version FROM apps WHERE id = ${appId}`);
  return `${appId}.${Number(v)}`;
}
