import { decryptSecret, encryptSecret } from "../secret-box.ts";
import { q, sql, toIso, type Db } from "./db.ts";
import { toUser, type UserRow } from "./users.ts";

const isoOrNull = (v: unknown): string | null => (v == null ? null : toIso(v));

// ---- passwords ----

export interface SignInCandidate { user: UserRow; passwordHash: string | null; mfaEnabled: boolean }

/** The account an email signs in to: case-insensitive, an exact-case match first when older rows differ only in case. */
export async function findSignInCandidate(db: Db, email: string): Promise<SignInCandidate | null> {
  const r = await db.maybeOne(q`SELECT id, email, name, is_admin, suspended_at, password_hash, mfa_enabled_at FROM users
    WHERE lower(email) = lower(${email}) ORDER BY (email = ${email}) DESC, id LIMIT 1`);
  if (!r) return null;
  return { user: toUser(r), passwordHash: (r.password_hash as string) ?? null, mfaEnabled: r.mfa_enabled_at != null };
}

export async function updatePasswordHash(db: Db, userId: number, passwordHash: string): Promise<boolean> {
  const r = await db.maybeOne(q`UPDATE users SET password_hash = ${passwordHash}, updated_at = now() WHERE id = ${userId} RETURNING id`);
  return r != null;
}

// ---- multi-factor authentication ----

export interface MfaState {
  email: string;
  secret: string | null;
  enabledAt: string | null;
  pendingSecret: string | null;
  /** The pending secret as stored (encrypted), to compare-and-set against. */
  pendingSealed: string | null;
  pendingAt: string | null;
  lastStep: number | null;
}

/** TOTP secrets are encrypted at rest like config vars (they cannot be hashed: codes are checked against them). */
function openMfaSecret(stored: string | null): string | null {
  if (stored == null) return null;
  return stored.startsWith("v1:") ? decryptSecret(stored) : stored;
}

export async function findMfaState(db: Db, userId: number): Promise<MfaState | null> {
  const r = await db.maybeOne(q`SELECT email, mfa_secret, mfa_enabled_at, mfa_pending_secret, mfa_pending_at, mfa_last_step
    FROM users WHERE id = ${userId}`);
  if (!r) return null;
  return {
    email: String(r.email),
    secret: openMfaSecret(r.mfa_secret as string | null),
    enabledAt: isoOrNull(r.mfa_enabled_at),
    pendingSecret: openMfaSecret(r.mfa_pending_secret as string | null),
    pendingSealed: (r.mfa_pending_secret as string) ?? null,
    pendingAt: isoOrNull(r.mfa_pending_at),
    lastStep: r.mfa_last_step == null ? null : Number(r.mfa_last_step),
  };
}

export async function setPendingMfaSecret(db: Db, userId: number, secret: string): Promise<void> {
  await db.query(q`UPDATE users SET mfa_pending_secret = ${encryptSecret(secret)}, mfa_pending_at = now(), updated_at = now() WHERE id = ${userId}`);
}

/**
 * Turns the pending secret into the active one, only if it is still the one the code was checked
 * against (a second enrolment started meanwhile makes this a no-op: false).
 */
export async function activatePendingMfa(db: Db, userId: number, pendingSealed: string, acceptedStep: number): Promise<boolean> {
  const r = await db.maybeOne(q`UPDATE users SET mfa_secret = mfa_pending_secret, mfa_enabled_at = now(),
      mfa_pending_secret = NULL, mfa_pending_at = NULL, mfa_last_step = ${acceptedStep}, updated_at = now()
    WHERE id = ${userId} AND mfa_pending_secret = ${pendingSealed} RETURNING id`);
  return r != null;
}

/**
 * Records that a code from `step` was used. False when that step (or a later one) was already used:
 * the compare-and-set makes two concurrent uses of one code succeed at most once.
 */
export async function acceptMfaStep(db: Db, userId: number, step: number): Promise<boolean> {
  const r = await db.maybeOne(q`UPDATE users SET mfa_last_step = ${step}
    WHERE id = ${userId} AND mfa_secret IS NOT NULL AND (mfa_last_step IS NULL OR mfa_last_step < ${step}) RETURNING id`);
  return r != null;
}

export async function clearMfa(db: Db, userId: number): Promise<void> {
  await db.query(q`UPDATE users SET mfa_secret = NULL, mfa_enabled_at = NULL, mfa_pending_secret = NULL, mfa_pending_at = NULL,
    mfa_last_step = NULL, updated_at = now() WHERE id = ${userId}`);
  await db.query(q`DELETE FROM recovery_codes WHERE user_id = ${userId}`);
}

export async function replaceRecoveryCodes(db: Db, userId: number, codeHashes: readonly string[]): Promise<void> {
  await db.query(q`DELETE FROM recovery_codes WHERE user_id = ${userId}`);
  await db.query(q`INSERT INTO recovery_codes (user_id, code_hash)
    SELECT ${userId}, h FROM unnest(${sql.array([...codeHashes], "text")}) AS h`);
}

/** Marks an unused code used; false when it is unknown or already used. */
export async function consumeRecoveryCode(db: Db, userId: number, codeHash: string): Promise<boolean> {
  const r = await db.maybeOne(q`UPDATE recovery_codes SET used_at = now()
    WHERE user_id = ${userId} AND code_hash = ${codeHash} AND used_at IS NULL RETURNING id`);
  return r != null;
}

export async function countUnusedRecoveryCodes(db: Db, userId: number): Promise<number> {
  return Number(await db.oneFirst(q`SELECT count(*) FROM recovery_codes WHERE user_id = ${userId} AND used_at IS NULL`));
}

// ---- personal access tokens (rows of api_tokens; the token itself is never stored) ----

export interface PersonalTokenRow {
  id: number;
  userId: number;
  name: string;
  scopes: string[];
  createdAt: string;
  expiresAt: string | null;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

function toToken(r: Record<string, unknown>): PersonalTokenRow {
  return {
    id: Number(r.id),
    userId: Number(r.user_id),
    name: String(r.name),
    scopes: (r.scopes as string[]) ?? [],
    createdAt: toIso(r.created_at),
    expiresAt: isoOrNull(r.expires_at),
    lastUsedAt: isoOrNull(r.last_used_at),
    revokedAt: isoOrNull(r.revoked_at),
  };
}

const TOKEN_COLUMNS = sql.fragment`id, user_id, name, scopes, created_at, expires_at, last_used_at, revoked_at`;

export async function insertPersonalToken(db: Db, t: { userId: number; name: string; tokenHash: string; scopes: readonly string[]; expiresAt: string | null }): Promise<PersonalTokenRow> {
  return toToken(await db.one(q`INSERT INTO api_tokens (user_id, name, token_hash, scopes, expires_at)
    VALUES (${t.userId}, ${t.name}, ${t.tokenHash}, ${sql.array([...t.scopes], "text")}, ${t.expiresAt}::timestamptz)
    RETURNING ${TOKEN_COLUMNS}`));
}

export async function listPersonalTokens(db: Db, userId: number): Promise<PersonalTokenRow[]> {
  const rows = await db.any(q`SELECT ${TOKEN_COLUMNS} FROM api_tokens WHERE user_id = ${userId} ORDER BY created_at DESC, id DESC`);
  return rows.map(toToken);
}

/** Revokes one of the user's own live tokens; false when there is no such token (or it was revoked already). */
export async function revokePersonalToken(db: Db, userId: number, tokenId: number): Promise<boolean> {
  const r = await db.maybeOne(q`UPDATE api_tokens SET revoked_at = now()
    WHERE id = ${tokenId} AND user_id = ${userId} AND revoked_at IS NULL RETURNING id`);
  return r != null;
}

/** The live token with this hash, its last use stamped now; null when unknown, expired or revoked. */
export async function usePersonalToken(db: Db, tokenHash: string): Promise<PersonalTokenRow | null> {
  const r = await db.maybeOne(q`UPDATE api_tokens SET last_used_at = now()
    WHERE token_hash = ${tokenHash} AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
    RETURNING ${TOKEN_COLUMNS}`);
  return r ? toToken(r) : null;
}
