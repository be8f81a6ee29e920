import { DeckError } from "../../core/errors.ts";
import { assertActive } from "../../ops/accounts.ts";
import { findUserById, type Db, type UserRow } from "../../store/queries/index.ts";
import { verifyPersonalToken } from "./personal-tokens.ts";
import { isScope, type Scope } from "./scopes.ts";
import type { SigningKeys } from "./signing-keys.ts";

export interface Principal {
  user: UserRow;
  scopes: Scope[];
  /** How the caller proved who they are: a signed access token or a personal access token. */
  via: "access_token" | "personal_token";
  /** The personal access token's id (for audit), when `via` is "personal_token". */
  tokenId?: number;
}

/**
 * Who a bearer token belongs to: `deck_…` is a personal access token, anything else must be a signed
 * access token. Throws DeckError `invalid_token` (a 401) with a one-line reason otherwise, and
 * `forbidden` (a 403) for a suspended user's token of either kind.
 */
export async function authenticateBearer(deps: { db: Db; keys: SigningKeys }, token: string): Promise<Principal> {
  if (token.startsWith("deck_")) {
    const pat = await verifyPersonalToken(deps.db, token);
    if (!pat) throw new DeckError("invalid_token", "personal access token is unknown, expired or revoked");
    assertActive(pat.user);
    return { user: pat.user, scopes: pat.scopes, via: "personal_token", tokenId: pat.tokenId };
  }
  const claims = await deps.keys.verifyAccessToken(token);
  const user = await findUserById(deps.db, claims.userId);
  if (!user) throw new DeckError("invalid_token", "access token rejected: its user no longer exists", { reason: "unknown user" });
  assertActive(user);
  return { user, scopes: claims.scopes.filter(isScope), via: "access_token" };
}
