import { isDeckError } from "../../core/index.ts";
import { UniqueIntegrityConstraintViolationError } from "../../store/index.ts";
import {
  audit, findUserById, findUserForOAuthEmail, insertOAuthIdentity, insertUser, touchOAuthIdentity, type Db, type UserRow,
} from "../../store/queries/index.ts";
import type { OAuthIdentity } from "./oidc.ts";

export type OAuthSignInOutcome = "signed-in" | "linked" | "created";

export interface ResolvedOAuthUser {
  user: UserRow;
  /** signed-in: the provider account was linked before; linked: joined to the user with its email now; created: a new user. */
  outcome: OAuthSignInOutcome;
}

/**
 * Which deck user a provider account signs in as. The policy, in order:
 *
 * 1. An account linked before (same provider and subject) signs in as the user it is linked to, even if
 *    its email has changed at the provider or now matches another user.
 * 2. Otherwise, a user whose email equals the account's email (ignoring case) gets the account linked
 *    and signs in. finishSignIn only returns identities whose email the provider has verified, so
 *    whoever controls the provider account controls that mailbox, which could reset a password anyway.
 * 3. Otherwise a new user is created with that email and name: not a platform admin, in no organisation.
 *    Access to anything comes later from an org owner or admin adding them.
 *
 * Signing in this way does not ask for the user's TOTP code; a session layer that requires MFA for
 * users who enabled it must check that after this call.
 *
 * Every sign-in is audited as `oauth:sign-in` with the outcome.
 */
export async function resolveOAuthUser(db: Db, identity: OAuthIdentity, options: { sourceIp?: string | null } = {}): Promise<ResolvedOAuthUser> {
  if (!identity.emailVerified) throw new Error("resolveOAuthUser needs an identity with a verified email (from finishSignIn)");
  // Two first sign-ins racing (the same account twice, or two accounts with one email) collide on a
  // unique key; the loser's transaction rolls back and a second pass finds what the winner stored.
  for (let attempt = 1; ; attempt++) {
    try {
      return await db.transaction(async (tx) => {
        const resolved = await resolveOnce(tx, identity);
        await audit(tx, {
          userId: resolved.user.id,
          action: "oauth:sign-in",
          target: resolved.user.email,
          sourceIp: options.sourceIp,
          result: "ok",
          data: { provider: identity.provider, subject: identity.subject, outcome: resolved.outcome },
        });
        return resolved;
      });
    } catch (e) {
      if (attempt < 2 && e instanceof UniqueIntegrityConstraintViolationError) continue;
      throw e;
    }
  }
}

async function resolveOnce(db: Db, identity: OAuthIdentity): Promise<ResolvedOAuthUser> {
  const linked = await touchOAuthIdentity(db, identity.provider, identity.subject, identity.email);
  if (linked) {
    const user = await findUserById(db, linked.userId);
    // ON DELETE CASCADE removes identities with their user, so a dangling link is a broken invariant.
    if (!user) throw new Error(`oauth identity ${identity.provider}/${identity.subject} points at missing user ${linked.userId}`);
    return { user, outcome: "signed-in" };
  }
  const existing = await findUserForOAuthEmail(db, identity.email);
  const user = existing ?? (await insertUser(db, { email: identity.email, name: identity.name ?? undefined, isAdmin: false }));
  await insertOAuthIdentity(db, { provider: identity.provider, subject: identity.subject, userId: user.id, email: identity.email });
  return { user, outcome: existing ? "linked" : "created" };
}

/** Audits a refused or failed provider sign-in (`oauth:sign-in`, result failed) with the error's code, never its details. */
export async function auditOAuthFailure(db: Db, e: { provider: string; error: unknown; sourceIp?: string | null }): Promise<void> {
  const code = isDeckError(e.error) ? e.error.code : "internal";
  const reason = isDeckError(e.error) && typeof e.error.data.reason === "string" ? e.error.data.reason : undefined;
  await audit(db, {
    userId: null,
    action: "oauth:sign-in",
    target: e.provider.slice(0, 32),
    sourceIp: e.sourceIp,
    result: "failed",
    data: reason ? { code, reason } : { code },
  });
}
