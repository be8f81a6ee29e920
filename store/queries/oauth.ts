import { q, toIso, type Db } from "./db.ts";
import { findUserById, type UserRow } from "./users.ts";

/** An account at an identity provider linked to a deck user (table oauth_identities). */
export interface OAuthIdentityRow {
  provider: string;
  subject: string;
  userId: number;
  email: string;
  createdAt: string;
  lastUsedAt: string | null;
}

function toIdentity(r: Record<string, unknown>): OAuthIdentityRow {
  return {
    provider: String(r.provider),
    subject: String(r.subject),
    userId: Number(r.user_id),
    email: String(r.email),
    createdAt: toIso(r.created_at),
    lastUsedAt: r.last_used_at == null ? null : toIso(r.last_used_at),
  };
}

/** Records a sign-in through a linked identity and returns it; null when the account is not linked yet. */
export async function touchOAuthIdentity(db: Db, provider: string, subject: string, email: string): Promise<OAuthIdentityRow | null> {
  const r = await db.maybeOne(q`UPDATE oauth_identities SET last_used_at = now(), email = ${email}
    WHERE provider = ${provider} AND subject = ${subject} RETURNING *`);
  return r ? toIdentity(r) : null;
}

/** Links a provider account to a user. A concurrent first sign-in of the same account makes this throw a unique violation. */
export async function insertOAuthIdentity(db: Db, i: { provider: string; subject: string; userId: number; email: string }): Promise<OAuthIdentityRow> {
  return toIdentity(await db.one(q`INSERT INTO oauth_identities (provider, subject, user_id, email, last_used_at)
    VALUES (${i.provider}, ${i.subject}, ${i.userId}, ${i.email}, now()) RETURNING *`));
}

export async function listOAuthIdentities(db: Db, userId: number): Promise<OAuthIdentityRow[]> {
  const rows = await db.any(q`SELECT * FROM oauth_identities WHERE user_id = ${userId} ORDER BY provider, created_at`);
  return rows.map(toIdentity);
}

export async function deleteOAuthIdentity(db: Db, userId: number, provider: string): Promise<boolean> {
  const rows = await db.any(q`DELETE FROM oauth_identities WHERE user_id = ${userId} AND provider = ${provider} RETURNING provider`);
  return rows.length > 0;
}

/** The user an email belongs to, ignoring case; an exact-case match first when older rows differ only in case. */
export async function findUserForOAuthEmail(db: Db, email: string): Promise<UserRow | null> {
  const id = await db.maybeOneFirst(q`SELECT id FROM users WHERE lower(email) = lower(${email})
    ORDER BY (email = ${email}) DESC, id LIMIT 1`);
  return id == null ? null : findUserById(db, Number(id));
}
