import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod/v4";
import { DeckError, isDeckError } from "../../core/index.ts";
import { audit, q } from "../../store/queries/index.ts";
import {
  beginMfaEnrolment, confirmMfaEnrolment, createPersonalToken, createRateLimiter, disableMfa, issueSession, listPersonalTokens,
  mfaStatus, revokePersonalToken, setPassword, signIn, verifyPassword, type AuthDeps, type RateLimiter,
} from "../auth/index.ts";
import { auditOAuthFailure, finishSignIn, oauthRedirectUri, openPending, resolveOAuthUser, sealPending, startSignIn, type OAuthProviders } from "../auth/oidc.ts";
import { defineRoute, type ApiDeps } from "../registry.ts";
import { email } from "../schemas.ts";

export function authDepsOf(deps: ApiDeps): AuthDeps {
  const a = deps.extra.auth as AuthDeps | undefined;
  if (!a) throw new Error("the API was started without authentication services");
  return a;
}

/** Token creation is rate limited per user and per address, like sign-in. */
const tokenLimiter: RateLimiter = createRateLimiter({ capacity: 10, windowSeconds: 60 });

function limitTokens(key: string): void {
  const r = tokenLimiter.take(key);
  if (!r.ok) throw new DeckError("rate_limited", `too many token requests; try again in ${Math.ceil(r.retryAfterSeconds)}s`, { retryAfterSeconds: r.retryAfterSeconds });
}

const sessionAnswer = z.object({ accessToken: z.string(), expiresIn: z.number(), tokenType: z.literal("Bearer") });

defineRoute({
  method: "post", path: "/session", scope: "public", tag: "session", status: 201,
  summary: "Sign in with email and password (plus an authenticator code or a recovery code once MFA is on); returns a short-lived access token",
  body: z.object({ email, password: z.string().min(1).max(1024), otp: z.string().regex(/^\d{6}$/).optional(), recoveryCode: z.string().max(64).optional() }).strict(),
  response: sessionAnswer,
  handler: async ({ ctx, deps, body }) => {
    const s = await signIn(authDepsOf(deps), { ...body, ip: ctx.ip });
    return { accessToken: s.accessToken, expiresIn: s.expiresIn, tokenType: "Bearer" as const };
  },
});

defineRoute({
  method: "get", path: "/auth/jwks", scope: "public", tag: "session", summary: "Public keys that verify deck's access tokens",
  handler: async ({ deps }) => authDepsOf(deps).keys.jwks(),
});

// ---------- personal access tokens ----------
defineRoute({
  method: "get", path: "/tokens", scope: "read", tag: "tokens", summary: "Your personal access tokens (never the secrets)",
  handler: async ({ deps, caller }) => ({ items: await listPersonalTokens(deps.db, caller.user.id) }),
});

defineRoute({
  method: "post", path: "/tokens", scope: "write", tag: "tokens", status: 201,
  summary: "Create a personal access token with scopes (read, deploy, write, admin); the token is shown once",
  body: z.object({ name: z.string().min(1).max(100), scopes: z.array(z.enum(["read", "deploy", "write", "admin"])).min(1).max(4), expiresInDays: z.number().int().min(1).max(3650).nullable().optional() }).strict(),
  handler: async ({ ctx, deps, caller, body }) => {
    limitTokens(`user:${caller.user.id}`);
    limitTokens(`ip:${ctx.ip}`);
    // A token never carries more than the token that created it.
    const rank = (s: string) => ["read", "deploy", "write", "admin"].indexOf(s);
    const ceiling = Math.max(...caller.scopes.map(rank));
    const over = body.scopes.find((s) => rank(s) > ceiling);
    if (over) throw new DeckError("insufficient_scope", `this token cannot create a token with the "${over}" scope`);
    const t = await createPersonalToken(deps.db, { userId: caller.user.id, name: body.name, scopes: body.scopes, expiresInDays: body.expiresInDays });
    await audit(deps.db, { userId: caller.user.id, action: "tokens:create", target: `user:${caller.user.email}`, sourceIp: ctx.ip, result: "ok", data: { via: "http", scopes: body.scopes, name: body.name } });
    return t;
  },
});

defineRoute({
  method: "delete", path: "/tokens/:id", scope: "write", tag: "tokens", summary: "Revoke one of your tokens",
  params: z.object({ id: z.coerce.number().int().positive() }).strict(),
  handler: async ({ ctx, deps, caller, params }) => {
    await revokePersonalToken(deps.db, caller.user.id, params.id);
    await audit(deps.db, { userId: caller.user.id, action: "tokens:revoke", target: `user:${caller.user.email}`, sourceIp: ctx.ip, result: "ok", data: { via: "http", tokenId: params.id } });
  },
});

// ---------- password and MFA ----------
defineRoute({
  method: "put", path: "/users/me/password", scope: "admin", tag: "users", summary: "Set your password (the current one is required once set)",
  body: z.object({ password: z.string().min(1).max(1024), currentPassword: z.string().max(1024).optional() }).strict(),
  handler: async ({ ctx, deps, caller, body }) => {
    const row = await deps.db.maybeOneFirst(q`SELECT password_hash FROM users WHERE id = ${caller.user.id}`);
    if (row && !(body.currentPassword && (await verifyPassword(String(row), body.currentPassword)))) {
      throw new DeckError("invalid_credentials", "the current password is wrong or missing");
    }
    await setPassword(deps.db, caller.user.id, body.password);
    await audit(deps.db, { userId: caller.user.id, action: "users:password", target: `user:${caller.user.email}`, sourceIp: ctx.ip, result: "ok", data: { via: "http" } });
  },
});

defineRoute({
  method: "get", path: "/users/me/mfa", scope: "read", tag: "users", summary: "Whether multi-factor sign-in is on",
  handler: async ({ deps, caller }) => mfaStatus(deps.db, caller.user.id),
});

defineRoute({
  method: "post", path: "/users/me/mfa", scope: "admin", tag: "users", status: 201, summary: "Start MFA enrolment: returns an otpauth:// URI for an authenticator app",
  handler: async ({ deps, caller }) => {
    const e = await beginMfaEnrolment(deps.db, caller.user.id);
    return { uri: e.uri, secret: e.secret };
  },
});

defineRoute({
  method: "post", path: "/users/me/mfa/confirm", scope: "admin", tag: "users", summary: "Confirm MFA with a current code; returns recovery codes, shown once",
  body: z.object({ code: z.string().regex(/^\d{6}$/) }).strict(),
  handler: async ({ ctx, deps, caller, body }) => {
    const r = await confirmMfaEnrolment(deps.db, caller.user.id, body.code);
    await audit(deps.db, { userId: caller.user.id, action: "users:mfa-enable", target: `user:${caller.user.email}`, sourceIp: ctx.ip, result: "ok", data: { via: "http" } });
    return r;
  },
});

defineRoute({
  method: "delete", path: "/users/me/mfa", scope: "admin", tag: "users", summary: "Turn MFA off (needs a current code or a recovery code)",
  body: z.object({ code: z.string().min(6).max(64) }).strict(),
  handler: async ({ ctx, deps, caller, body }) => {
    await disableMfa(deps.db, caller.user.id, body.code);
    await audit(deps.db, { userId: caller.user.id, action: "users:mfa-disable", target: `user:${caller.user.email}`, sourceIp: ctx.ip, result: "ok", data: { via: "http" } });
  },
});

// ---------- OAuth2 / OpenID Connect ----------
const PENDING_COOKIE = "deck_oauth";

/** The key that seals the sign-in cookie: generated once into the data dir. */
function cookieSecret(dataDir: string): Buffer {
  const file = join(dataDir, "keys", "oauth-cookie.key");
  if (!existsSync(file)) {
    mkdirSync(join(dataDir, "keys"), { recursive: true, mode: 0o700 });
    writeFileSync(file, randomBytes(32), { mode: 0o600, flag: "wx" });
  }
  return readFileSync(file);
}

const providerParams = z.object({ provider: z.enum(["github", "gitlab", "google"]) }).strict();

defineRoute({
  method: "get", path: "/auth/oidc/:provider/start", scope: "public", tag: "session", raw: true, params: providerParams,
  summary: "Sign in with GitHub, GitLab or Google: redirects to the provider",
  handler: async ({ ctx, deps, params }) => {
    const providers = deps.extra.oauth as OAuthProviders;
    const provider = providers.get(params.provider);
    const { url, pending } = await startSignIn(provider, { redirectUri: oauthRedirectUri(deps.config, params.provider) });
    ctx.cookies.set(PENDING_COOKIE, await sealPending(pending, cookieSecret(deps.config.dataDir)), { httpOnly: true, sameSite: "lax", maxAge: 600_000, path: "/api/v1/auth/oidc", overwrite: true });
    ctx.redirect(url);
  },
});

defineRoute({
  method: "get", path: "/auth/oidc/:provider/callback", scope: "public", tag: "session", params: providerParams,
  query: z.object({ code: z.string().max(4096).optional(), state: z.string().max(1024).optional(), error: z.string().max(200).optional(), error_description: z.string().max(1000).optional(), iss: z.string().max(2048).optional(), scope: z.string().max(2048).optional(), authuser: z.string().max(20).optional(), prompt: z.string().max(100).optional(), session_state: z.string().max(2048).optional(), hd: z.string().max(255).optional() }).strict(),
  summary: "Where the provider sends the browser back; answers with a deck access token",
  response: sessionAnswer,
  handler: async ({ ctx, deps, params }) => {
    const providers = deps.extra.oauth as OAuthProviders;
    try {
      const provider = providers.get(params.provider);
      const pending = await openPending(ctx.cookies.get(PENDING_COOKIE), cookieSecret(deps.config.dataDir));
      const identity = await finishSignIn(provider, { callbackUrl: new URL(ctx.originalUrl, "http://deck.invalid"), pending });
      const { user } = await resolveOAuthUser(deps.db, identity, { sourceIp: ctx.ip });
      // The provider proves one factor; a user who turned on MFA asked for a second on every sign-in.
      if ((await mfaStatus(deps.db, user.id)).enabled) {
        throw new DeckError("mfa_required", "this account uses two-factor authentication; sign in with your email, password and authenticator code (POST /api/v1/session)");
      }
      ctx.cookies.set(PENDING_COOKIE, null, { path: "/api/v1/auth/oidc" });
      const s = await issueSession(authDepsOf(deps), user);
      return { accessToken: s.accessToken, expiresIn: s.expiresIn, tokenType: "Bearer" as const };
    } catch (e) {
      if (isDeckError(e)) await auditOAuthFailure(deps.db, { provider: params.provider, error: e, sourceIp: ctx.ip });
      throw e;
    }
  },
});

