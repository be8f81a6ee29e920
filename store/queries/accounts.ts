import { q, sql, toIso, type Db } from "./db.ts";

export interface OrgRow { id: number; name: string; slug: string; plan: string; createdAt: string }
export interface MemberRow { userId: number; email: string; role: string; joinedAt: string }
export interface SshKeyRow { id: number; userId: number; name: string; fingerprint: string; createdAt: string; lastUsedAt: string | null }
export interface AuditRow { id: number; userId: number | null; userEmail: string | null; action: string; target: string | null; sourceIp: string | null; result: string; data: Record<string, unknown>; createdAt: string }

const toOrg = (r: Record<string, unknown>): OrgRow => ({ id: Number(r.id), name: String(r.name), slug: String(r.slug), plan: String(r.plan), createdAt: toIso(r.created_at) });

export async function listOrgs(db: Db, ids: number[] | "all"): Promise<OrgRow[]> {
  const rows = ids === "all" ? await db.any(q`SELECT * FROM organizations ORDER BY slug`) : await db.any(q`SELECT * FROM organizations WHERE id = ANY(${sql.array(ids, "int8")}) ORDER BY slug`);
  return rows.map(toOrg);
}

export async function findOrgBySlug(db: Db, slug: string): Promise<OrgRow | null> {
  const r = await db.maybeOne(q`SELECT * FROM organizations WHERE slug = ${slug}`);
  return r ? toOrg(r) : null;
}

export async function listMembers(db: Db, orgId: number): Promise<MemberRow[]> {
  const rows = await db.any(q`SELECT m.user_id, u.email, m.role, m.joined_at FROM organization_members m JOIN users u ON u.id = m.user_id WHERE m.org_id = ${orgId} ORDER BY u.email`);
  return rows.map((r) => ({ userId: Number(r.user_id), email: String(r.email), role: String(r.role), joinedAt: toIso(r.joined_at) }));
}

export async function removeMember(db: Db, orgId: number, userId: number): Promise<boolean> {
  const r = await db.query(q`DELETE FROM organization_members WHERE org_id = ${orgId} AND user_id = ${userId}`);
  return r.rowCount > 0;
}

export async function countOwners(db: Db, orgId: number): Promise<number> {
  return Number(await db.oneFirst(q`SELECT count(*) FROM organization_members WHERE org_id = ${orgId} AND role = 'owner'`));
}

export async function findUserByEmail(db: Db, email: string): Promise<{ id: number; email: string; isAdmin: boolean } | null> {
  const r = await db.maybeOne(q`SELECT id, email, is_admin FROM users WHERE lower(email) = lower(${email})`);
  return r ? { id: Number(r.id), email: String(r.email), isAdmin: Boolean(r.is_admin) } : null;
}

export async function listUsers(db: Db, limit: number, offset: number): Promise<{ id: number; email: string; name: string | null; isAdmin: boolean; createdAt: string }[]> {
  const rows = await db.any(q`SELECT id, email, name, is_admin, created_at FROM users ORDER BY id LIMIT ${limit} OFFSET ${offset}`);
  return rows.map((r) => ({ id: Number(r.id), email: String(r.email), name: (r.name as string) ?? null, isAdmin: Boolean(r.is_admin), createdAt: toIso(r.created_at) }));
}

// ---- per-app grants ----
export async function appRolesOf(db: Db, userId: number): Promise<{ appId: number; role: string }[]> {
  const rows = await db.any(q`SELECT app_id, role FROM app_members WHERE user_id = ${userId}`);
  return rows.map((r) => ({ appId: Number(r.app_id), role: String(r.role) }));
}

export async function listAppMembers(db: Db, appId: number): Promise<MemberRow[]> {
  const rows = await db.any(q`SELECT a.user_id, u.email, a.role, a.granted_at FROM app_members a JOIN users u ON u.id = a.user_id WHERE a.app_id = ${appId} ORDER BY u.email`);
  return rows.map((r) => ({ userId: Number(r.user_id), email: String(r.email), role: String(r.role), joinedAt: toIso(r.granted_at) }));
}

export async function grantAppRole(db: Db, appId: number, userId: number, role: string, grantedBy: number): Promise<void> {
  await db.query(q`INSERT INTO app_members (app_id, user_id, role, granted_by) VALUES (${appId}, ${userId}, ${role}, ${grantedBy})
    ON CONFLICT (app_id, user_id) DO UPDATE SET role = EXCLUDED.role, granted_by = EXCLUDED.granted_by, granted_at = now()`);
}

export async function revokeAppRole(db: Db, appId: number, userId: number): Promise<boolean> {
  return (await db.query(q`DELETE FROM app_members WHERE app_id = ${appId} AND user_id = ${userId}`)).rowCount > 0;
}

export async function appIdsGrantedTo(db: Db, userId: number): Promise<number[]> {
  return (await db.anyFirst(q`SELECT app_id FROM app_members WHERE user_id = ${userId}`)).map(Number);
}

// ---- ssh keys ----
export async function listSshKeys(db: Db, userId: number): Promise<SshKeyRow[]> {
  const rows = await db.any(q`SELECT * FROM ssh_keys WHERE user_id = ${userId} ORDER BY id`);
  return rows.map((r) => ({ id: Number(r.id), userId: Number(r.user_id), name: String(r.name), fingerprint: String(r.fingerprint), createdAt: toIso(r.created_at), lastUsedAt: r.last_used_at ? toIso(r.last_used_at) : null }));
}

export async function findSshKeyByFingerprint(db: Db, fingerprint: string): Promise<{ id: number; userId: number } | null> {
  const r = await db.maybeOne(q`SELECT id, user_id FROM ssh_keys WHERE fingerprint = ${fingerprint}`);
  return r ? { id: Number(r.id), userId: Number(r.user_id) } : null;
}

export async function deleteSshKey(db: Db, userId: number, idOrFingerprint: string): Promise<boolean> {
  const r = /^\d{1,12}$/.test(idOrFingerprint)
    ? await db.query(q`DELETE FROM ssh_keys WHERE user_id = ${userId} AND id = ${Number(idOrFingerprint)}`)
    : await db.query(q`DELETE FROM ssh_keys WHERE user_id = ${userId} AND fingerprint = ${idOrFingerprint}`);
  return r.rowCount > 0;
}

// ---- audit ----
function toAudit(r: Record<string, unknown>): AuditRow {
  return { id: Number(r.id), userId: r.user_id == null ? null : Number(r.user_id), userEmail: (r.email as string) ?? null, action: String(r.action), target: (r.target as string) ?? null, sourceIp: (r.source_ip as string) ?? null, result: String(r.result), data: (typeof r.data === "string" ? JSON.parse(r.data) : r.data) as Record<string, unknown>, createdAt: toIso(r.created_at) };
}

/** Audit entries about the given app names (targets), newest first. */
export async function auditForTargets(db: Db, targets: string[], limit: number, before?: number): Promise<AuditRow[]> {
  const rows = await db.any(q`SELECT a.*, u.email FROM audit_log a LEFT JOIN users u ON u.id = a.user_id
    WHERE a.target = ANY(${sql.array(targets, "text")}) AND (${before ?? null}::bigint IS NULL OR a.id < ${before ?? null}::bigint)
    ORDER BY a.id DESC LIMIT ${limit}`);
  return rows.map(toAudit);
}

export async function auditForOrg(db: Db, orgId: number, orgSlug: string, limit: number, before?: number): Promise<AuditRow[]> {
  const rows = await db.any(q`SELECT a.*, u.email FROM audit_log a LEFT JOIN users u ON u.id = a.user_id
    WHERE (a.target IN (SELECT name FROM apps WHERE org_id = ${orgId}) OR a.target = ${`org:${orgSlug}`} OR (a.data->>'orgId')::bigint = ${orgId})
      AND (${before ?? null}::bigint IS NULL OR a.id < ${before ?? null}::bigint)
    ORDER BY a.id DESC LIMIT ${limit}`);
  return rows.map(toAudit);
}

// ---- domains ----
export async function listDomains(db: Db, appId: number): Promise<{ domain: string; sslStatus: string }[]> {
  const rows = await db.any(q`SELECT domain, ssl_status FROM domains WHERE app_id = ${appId} ORDER BY domain`);
  return rows.map((r) => ({ domain: String(r.domain), sslStatus: String(r.ssl_status) }));
}

export async function domainOwner(db: Db, domain: string): Promise<number | null> {
  const v = await db.maybeOneFirst(q`SELECT app_id FROM domains WHERE domain = ${domain}`);
  return v == null ? null : Number(v);
}

export async function addDomain(db: Db, appId: number, domain: string): Promise<void> {
  await db.query(q`INSERT INTO domains (app_id, domain) VALUES (${appId}, ${domain})`);
}

export async function removeDomain(db: Db, appId: number, domain: string): Promise<boolean> {
  return (await db.query(q`DELETE FROM domains WHERE app_id = ${appId} AND domain = ${domain}`)).rowCount > 0;
}

export async function listDeployments(db: Db, appId: number, limit: number, before?: number): Promise<Record<string, unknown>[]> {
  return [...(await db.any(q`SELECT d.id, d.kind, d.status, d.commit_sha, d.build_time, d.error, d.error_code, d.created_at, d.finished_at, r.version
    FROM deployments d LEFT JOIN releases r ON r.id = d.release_id
    WHERE d.app_id = ${appId} AND (${before ?? null}::bigint IS NULL OR d.id < ${before ?? null}::bigint) ORDER BY d.id DESC LIMIT ${limit}`))].map((r) => ({
    id: Number(r.id), kind: r.kind, status: r.status, commit: r.commit_sha, buildTimeMs: r.build_time == null ? null : Number(r.build_time), error: r.error ?? null, errorCode: r.error_code ?? null,
    release: r.version == null ? null : `v${r.version}`, createdAt: toIso(r.created_at), finishedAt: r.finished_at ? toIso(r.finished_at) : null,
  }));
}
