import { createHash, randomBytes } from "node:crypto";
import { q, sql, toIso, type Db } from "./db.ts";

export interface UserRow {
  id: number;
  email: string;
  name: string | null;
  isAdmin: boolean;
  /** When a platform admin suspended the user; null (or absent, for deck's own callers) = active. */
  suspendedAt?: string | null;
}

export function toUser(r: Record<string, unknown>): UserRow {
  return { id: Number(r.id), email: String(r.email), name: (r.name as string) ?? null, isAdmin: Boolean(r.is_admin), suspendedAt: r.suspended_at == null ? null : toIso(r.suspended_at) };
}

export async function countUsers(db: Db): Promise<number> {
  return Number(await db.oneFirst(q`SELECT count(*) FROM users`));
}

export async function insertUser(db: Db, u: { email: string; name?: string; isAdmin: boolean }): Promise<UserRow> {
  return toUser(await db.one(q`INSERT INTO users (email, name, is_admin) VALUES (${u.email}, ${u.name ?? null}, ${u.isAdmin}) RETURNING *`));
}

export async function findUserById(db: Db, id: number): Promise<UserRow | null> {
  const r = await db.maybeOne(q`SELECT * FROM users WHERE id = ${id}`);
  return r ? toUser(r) : null;
}

export async function insertOrganization(db: Db, o: { name: string; slug: string }): Promise<{ id: number; slug: string }> {
  const r = await db.one(q`INSERT INTO organizations (name, slug) VALUES (${o.name}, ${o.slug}) RETURNING id, slug`);
  return { id: Number(r.id), slug: String(r.slug) };
}

export async function addMember(db: Db, orgId: number, userId: number, role: string): Promise<void> {
  await db.query(q`INSERT INTO organization_members (org_id, user_id, role) VALUES (${orgId}, ${userId}, ${role})
    ON CONFLICT (org_id, user_id) DO UPDATE SET role = EXCLUDED.role`);
}

export interface Membership { orgId: number; orgSlug: string; role: string }

export async function membershipsOf(db: Db, userId: number): Promise<Membership[]> {
  const rows = await db.any(q`SELECT m.org_id, o.slug, m.role FROM organization_members m JOIN organizations o ON o.id = m.org_id
    WHERE m.user_id = ${userId} ORDER BY m.joined_at, m.org_id`);
  return rows.map((r) => ({ orgId: Number(r.org_id), orgSlug: String(r.slug), role: String(r.role) }));
}

// ---- ssh keys ----
export async function insertSshKey(db: Db, k: { userId: number; name: string; publicKey: string; fingerprint: string }): Promise<void> {
  await db.query(q`INSERT INTO ssh_keys (user_id, name, public_key, fingerprint) VALUES (${k.userId}, ${k.name}, ${k.publicKey}, ${k.fingerprint})`);
}

export async function findUserBySshFingerprint(db: Db, fingerprint: string): Promise<(UserRow & { publicKey: string }) | null> {
  const r = await db.maybeOne(q`UPDATE ssh_keys SET last_used_at = now() WHERE fingerprint = ${fingerprint}
    RETURNING user_id, public_key`);
  if (!r) return null;
  const u = await findUserById(db, Number(r.user_id));
  return u ? { ...u, publicKey: String(r.public_key) } : null;
}

// ---- API tokens (stored as SHA-256; the token itself is shown once) ----
export function hashToken(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

export async function createApiToken(db: Db, userId: number, name: string, scopes: string[]): Promise<string> {
  const token = `deck_${randomBytes(32).toString("base64url")}`;
  await db.query(q`INSERT INTO api_tokens (user_id, name, token_hash, scopes) VALUES (${userId}, ${name}, ${hashToken(token)}, ${sql.array(scopes, "text")})`);
  return token;
}

export async function findUserByApiToken(db: Db, token: string): Promise<UserRow | null> {
  const r = await db.maybeOne(q`UPDATE api_tokens SET last_used_at = now()
    WHERE token_hash = ${hashToken(token)} AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
    RETURNING user_id`);
  return r ? findUserById(db, Number(r.user_id)) : null;
}

// ---- administering users (platform admins) ----

export interface AdminUserRow extends UserRow {
  createdAt: string;
  suspendedAt: string | null;
  suspendReason: string | null;
  suspendedBy: string | null;
  mfaEnabled: boolean;
}

/** Every user, `limit` from `offset` on, with whether (and why) they are suspended. */
export async function listUsersForAdmin(db: Db, limit: number, offset: number): Promise<AdminUserRow[]> {
  const rows = await db.any(q`SELECT u.id, u.email, u.name, u.is_admin, u.created_at, u.suspended_at, u.suspend_reason,
      u.mfa_enabled_at, b.email AS suspended_by_email
    FROM users u LEFT JOIN users b ON b.id = u.suspended_by ORDER BY u.id LIMIT ${limit} OFFSET ${offset}`);
  return rows.map((r) => ({
    ...toUser(r),
    createdAt: toIso(r.created_at),
    suspendedAt: r.suspended_at == null ? null : toIso(r.suspended_at),
    suspendReason: (r.suspend_reason as string) ?? null,
    suspendedBy: (r.suspended_by_email as string) ?? null,
    mfaEnabled: r.mfa_enabled_at != null,
  }));
}

/** The user with this email (case-insensitive, an exact-case match first). */
export async function findUserRowByEmail(db: Db, email: string): Promise<UserRow | null> {
  const r = await db.maybeOne(q`SELECT * FROM users WHERE lower(email) = lower(${email}) ORDER BY (email = ${email}) DESC, id LIMIT 1`);
  return r ? toUser(r) : null;
}

/** Suspends (with who and why) or, given null, reactivates a user. */
export async function setUserSuspension(db: Db, userId: number, suspension: { by: number; reason: string | null } | null): Promise<void> {
  if (suspension) {
    await db.query(q`UPDATE users SET suspended_at = coalesce(suspended_at, now()), suspended_by = ${suspension.by},
      suspend_reason = ${suspension.reason}, updated_at = now() WHERE id = ${userId}`);
  } else {
    await db.query(q`UPDATE users SET suspended_at = NULL, suspended_by = NULL, suspend_reason = NULL, updated_at = now() WHERE id = ${userId}`);
  }
}

/** Platform admins who can still act (not suspended). */
export async function countActiveAdmins(db: Db): Promise<number> {
  return Number(await db.oneFirst(q`SELECT count(*) FROM users WHERE is_admin AND suspended_at IS NULL`));
}

/** Slugs of the organisations where the user is the only owner. */
export async function orgsSolelyOwnedBy(db: Db, userId: number): Promise<string[]> {
  const rows = await db.any(q`SELECT o.slug FROM organization_members m JOIN organizations o ON o.id = m.org_id
    WHERE m.user_id = ${userId} AND m.role = 'owner'
      AND NOT EXISTS (SELECT 1 FROM organization_members x WHERE x.org_id = m.org_id AND x.role = 'owner' AND x.user_id <> ${userId})
    ORDER BY o.slug`);
  return rows.map((r) => String(r.slug));
}

/** Names of the apps the user created. */
export async function appsCreatedBy(db: Db, userId: number): Promise<string[]> {
  const rows = await db.any(q`SELECT name FROM apps WHERE created_by = ${userId} ORDER BY name`);
  return rows.map((r) => String(r.name));
}

/** Revokes every live personal access token of the user; returns how many. */
export async function revokeAllPersonalTokens(db: Db, userId: number): Promise<number> {
  const rows = await db.any(q`UPDATE api_tokens SET revoked_at = now() WHERE user_id = ${userId} AND revoked_at IS NULL RETURNING id`);
  return rows.length;
}

/** Removes every SSH key of the user; returns how many. */
export async function deleteAllSshKeys(db: Db, userId: number): Promise<number> {
  const rows = await db.any(q`DELETE FROM ssh_keys WHERE user_id = ${userId} RETURNING id`);
  return rows.length;
}

/** Deletes the user; memberships, grants, keys, tokens and identities go with it (ON DELETE CASCADE). */
export async function deleteUserRow(db: Db, userId: number): Promise<boolean> {
  const r = await db.maybeOne(q`DELETE FROM users WHERE id = ${userId} RETURNING id`);
  return r != null;
}
