import { createHash, randomBytes } from "node:crypto";
import { q, sql, type Db } from "./db.ts";

export interface UserRow { id: number; email: string; name: string | null; isAdmin: boolean }

function toUser(r: Record<string, unknown>): UserRow {
  return { id: Number(r.id), email: String(r.email), name: (r.name as string) ?? null, isAdmin: Boolean(r.is_admin) };
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
