import { DeckError } from "../../core/errors.ts";
import { assertActive } from "../../ops/accounts.ts";
import { audit, findSignInCandidate, findUserById, updatePasswordHash, type Db, type UserRow } from "../../store/queries/index.ts";
import { checkTotpCode, mfaCheckError, useRecoveryCode } from "./mfa.ts";
import { checkPasswordPolicy, dummyPasswordHash, hashPassword, verifyPassword } from "./passwords.ts";
import { createSignInLimiter, type SignInLimiter } from "./rate-limit.ts";
import type { Scope } from "./scopes.ts";
import { DEFAULT_ACCESS_TOKEN_TTL_SECONDS, openSigningKeys, type SigningKeys } from "./signing-keys.ts";

/** What the sign-in functions need; `createAuthDeps` builds it from a database and the data dir. */
export interface AuthDeps {
  db: Db;
  dataDir: string;
  keys: SigningKeys;
  limiter: SignInLimiter;
  /** Lifetime of the access tokens sign-in issues; 900 s unless set. */
  accessTokenTtlSeconds?: number;
  /** Epoch milliseconds; replaces the clock for tests (TOTP steps). */
  now?: () => number;
}

export async function createAuthDeps(options: { db: Db; dataDir: string; now?: () => number; keyRetentionSeconds?: number }): Promise<AuthDeps> {
  const keys = await openSigningKeys({ dataDir: options.dataDir, now: options.now, retentionSeconds: options.keyRetentionSeconds });
  return { db: options.db, dataDir: options.dataDir, keys, limiter: createSignInLimiter({ now: options.now }), now: options.now };
}

/**
 * A signed-in session acts with everything the user's role allows: the token's scope adds no
 * restriction (personal access tokens are where scopes narrow).
 */
export const SESSION_SCOPES: readonly Scope[] = ["admin"];

export interface SignInInput {
  email: string;
  password: string;
  /** The current code from the authenticator app, once MFA is on. */
  otp?: string;
  /** Instead of `otp`: an unused recovery code. */
  recoveryCode?: string;
  /** The client's address, for the per-address limit and the audit log. */
  ip: string;
}

export interface Session { accessToken: string; expiresIn: number; user: UserRow }

const MAX_EMAIL_LENGTH = 254;

/**
 * Password sign-in, then a second factor when MFA is on. Failures are DeckErrors with stable codes:
 * `invalid_credentials` (the same for an unknown email and a wrong password), `mfa_required`,
 * `invalid_mfa_code`, `rate_limited` (data.retryAfterSeconds), `forbidden` for a suspended account
 * (only once the password is right). Every outcome is audited as
 * "auth:sign-in", without the password or codes.
 */
export async function signIn(deps: AuthDeps, input: SignInInput): Promise<Session> {
  const email = input.email.trim().slice(0, MAX_EMAIL_LENGTH);
  const attempt = { email, ip: input.ip };
  const record = (result: "ok" | "failed" | "denied", userId: number | null, data: Record<string, unknown>) =>
    audit(deps.db, { userId, action: "auth:sign-in", target: `user:${email.toLowerCase()}`, sourceIp: input.ip, result, data: { via: "api", ...data } });

  const allowed = deps.limiter.takeAttempt(attempt);
  if (!allowed.ok) {
    await record("denied", null, { reason: "rate_limited", retryAfterSeconds: allowed.retryAfterSeconds });
    throw new DeckError("rate_limited", `too many sign-in attempts; try again in ${allowed.retryAfterSeconds} s`, { retryAfterSeconds: allowed.retryAfterSeconds });
  }

  const candidate = email ? await findSignInCandidate(deps.db, email) : null;
  // Unknown accounts (and accounts without a password) still pay for one argon2 verification.
  const passwordOk = await verifyPassword(candidate?.passwordHash ?? (await dummyPasswordHash()), input.password);
  if (!candidate || !candidate.passwordHash || !passwordOk) {
    await record("failed", candidate?.user.id ?? null, { reason: "invalid_credentials" });
    throw new DeckError("invalid_credentials", "email or password is incorrect");
  }
  const user = candidate.user;
  // Said only to someone who knows the password, so it does not tell strangers the account exists.
  if (user.suspendedAt) {
    await record("denied", user.id, { reason: "account_suspended" });
    assertActive(user);
  }

  let secondFactor: "totp" | "recovery_code" | undefined;
  if (candidate.mfaEnabled) {
    if (input.otp) {
      const check = await checkTotpCode(deps.db, user.id, input.otp, { now: deps.now?.() });
      if (!check.ok) {
        await record("failed", user.id, { reason: "invalid_mfa_code", detail: check.reason });
        throw mfaCheckError(check.reason);
      }
      secondFactor = "totp";
    } else if (input.recoveryCode) {
      if (!(await useRecoveryCode(deps.db, user.id, input.recoveryCode))) {
        await record("failed", user.id, { reason: "invalid_mfa_code", detail: "recovery_code" });
        throw new DeckError("invalid_mfa_code", "that recovery code is not valid or was already used");
      }
      secondFactor = "recovery_code";
    } else {
      // The password was right: asking for the code is not a failed guess.
      deps.limiter.forgive(attempt);
      await record("denied", user.id, { reason: "mfa_required" });
      throw new DeckError("mfa_required", "this account uses two-factor authentication; send the code from your authenticator app (or a recovery code)");
    }
  }

  deps.limiter.forgive(attempt, { signedIn: true });
  const session = await issueSession(deps, user);
  await record("ok", user.id, { method: "password", ...(secondFactor ? { secondFactor } : {}) });
  return session;
}

/** An access token for a user who has proven who they are (password sign-in here; identity providers elsewhere). */
export async function issueSession(deps: Pick<AuthDeps, "keys" | "accessTokenTtlSeconds">, user: UserRow): Promise<Session> {
  assertActive(user);
  const expiresIn = deps.accessTokenTtlSeconds ?? DEFAULT_ACCESS_TOKEN_TTL_SECONDS;
  const accessToken = await deps.keys.signAccessToken({ userId: user.id, scopes: SESSION_SCOPES, ttlSeconds: expiresIn });
  return { accessToken, expiresIn, user };
}

/** Sets a user's password after checking the policy (DeckError `weak_password`); `not_found` for an unknown user. */
export async function setPassword(db: Db, userId: number, password: string): Promise<void> {
  const user = await findUserById(db, userId);
  if (!user) throw new DeckError("not_found", `user ${userId} does not exist`);
  checkPasswordPolicy(password, user.email);
  if (!(await updatePasswordHash(db, userId, await hashPassword(password)))) throw new DeckError("not_found", `user ${userId} does not exist`);
}
