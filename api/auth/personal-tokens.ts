import { randomBytes } from "node:crypto";
import { DeckError } from "../../core/errors.ts";
import {
  findUserById,
  hashToken,
  insertPersonalToken,
  listPersonalTokens as listTokenRows,
  revokePersonalToken as revokeTokenRow,
  usePersonalToken,
  type Db,
  type PersonalTokenRow,
  type UserRow,
} from "../../store/queries/index.ts";
import { isScope, SCOPES, type Scope } from "./scopes.ts";

/**
 * Personal access tokens: `deck_` + 32 random bytes (base64url), the same form `admin:bootstrap`
 * prints, stored as SHA-256 in api_tokens. The token is returned once, at creation; lists show
 * everything else about it.
 */
export const DEFAULT_TOKEN_LIFETIME_DAYS = 90;
export const MAX_TOKEN_NAME_LENGTH = 100;

export interface CreatePersonalTokenInput {
  userId: number;
  name: string;
  scopes: readonly string[];
  /** Days until it expires; `null` for a token that does not expire. */
  expiresInDays?: number | null;
  /** Epoch milliseconds; replaces the clock for tests. */
  now?: number;
}

export interface PersonalToken {
  id: number;
  name: string;
  scopes: Scope[];
  createdAt: string;
  expiresAt: string | null;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

export interface CreatedPersonalToken extends PersonalToken {
  /** The secret itself: show it now, it cannot be read again. */
  token: string;
}

export interface VerifiedPersonalToken { user: UserRow; scopes: Scope[]; tokenId: number }

export async function createPersonalToken(db: Db, input: CreatePersonalTokenInput): Promise<CreatedPersonalToken> {
  const name = input.name.trim();
  if (!name || name.length > MAX_TOKEN_NAME_LENGTH) throw new DeckError("invalid_token_name", `token name must be 1 to ${MAX_TOKEN_NAME_LENGTH} characters`);
  const scopes = [...new Set(input.scopes)];
  if (scopes.length === 0) throw new DeckError("invalid_scope", `a token needs at least one scope (${SCOPES.join(", ")})`);
  const unknown = scopes.find((s) => !isScope(s));
  if (unknown !== undefined) throw new DeckError("invalid_scope", `unknown scope ${JSON.stringify(unknown)}; scopes are ${SCOPES.join(", ")}`);
  const days = input.expiresInDays === undefined ? DEFAULT_TOKEN_LIFETIME_DAYS : input.expiresInDays;
  if (days !== null && !(Number.isFinite(days) && days > 0 && days <= 3660)) {
    throw new DeckError("invalid_expiry", "token expiry must be between 1 day and 10 years, or none");
  }
  const expiresAt = days === null ? null : new Date((input.now ?? Date.now()) + days * 86_400_000).toISOString();
  const token = `deck_${randomBytes(32).toString("base64url")}`;
  const row = await insertPersonalToken(db, { userId: input.userId, name, tokenHash: hashToken(token), scopes, expiresAt });
  return { ...toPersonalToken(row), token };
}

/** The user's tokens, newest first, revoked and expired ones included; never the token itself. */
export async function listPersonalTokens(db: Db, userId: number): Promise<PersonalToken[]> {
  return (await listTokenRows(db, userId)).map(toPersonalToken);
}

/** Revokes one of the user's tokens; DeckError `not_found` when the user has no such live token. */
export async function revokePersonalToken(db: Db, userId: number, tokenId: number): Promise<void> {
  if (!(await revokeTokenRow(db, userId, tokenId))) throw new DeckError("not_found", `no active token ${tokenId}`);
}

/** The owner and scopes of a live token, stamping its last use; null for unknown, expired or revoked tokens. */
export async function verifyPersonalToken(db: Db, token: string): Promise<VerifiedPersonalToken | null> {
  if (!token.startsWith("deck_") || token.length > 200) return null;
  const row = await usePersonalToken(db, hashToken(token));
  if (!row) return null;
  const user = await findUserById(db, row.userId);
  return user ? { user, scopes: row.scopes.filter(isScope), tokenId: row.id } : null;
}

function toPersonalToken(r: PersonalTokenRow): PersonalToken {
  return { id: r.id, name: r.name, scopes: r.scopes.filter(isScope), createdAt: r.createdAt, expiresAt: r.expiresAt, lastUsedAt: r.lastUsedAt, revokedAt: r.revokedAt };
}
