import { timingSafeEqual } from "node:crypto";
import * as oidc from "openid-client";
import { z } from "zod";
import { DeckError, isDeckError } from "../../core/index.ts";
import { PENDING_TTL_SECONDS, type PendingSignIn } from "./oidc-pending.ts";
import type { OAuthProvider, OAuthProviderName } from "./oidc-providers.ts";

/**
 * Sign-in with an identity provider, in two halves around the browser's trip to the provider:
 *
 *   startSignIn  → redirect the browser to `url`; keep `pending` (sealPending → cookie)
 *   callback     → openPending(cookie) → finishSignIn → resolveOAuthUser → session
 *
 * OpenID Connect providers (GitLab, Google) use the authorization code flow with PKCE (RFC 7636), state
 * and nonce, and the identity comes from the ID token (OIDC Core §3.1.3.7), completed from the UserInfo
 * endpoint when the ID token omits the email. GitHub is plain OAuth 2.0: the code flow with PKCE and
 * state, then its REST API names the account and its verified email addresses.
 *
 * Every failure is a DeckError with a one-line message that names the provider and the reason, and
 * never contains a code, token or secret:
 *   oidc_not_configured   the provider is unknown or has no client id/secret
 *   oidc_state_mismatch   the callback does not belong to this browser's pending sign-in, or came too late
 *   oidc_failed           the provider refused, could not be reached, or answered something invalid
 *   oidc_email_unverified the account has no verified email address
 */

export * from "./oidc-providers.ts";
export * from "./oidc-pending.ts";
export * from "./oidc-accounts.ts";

/** Who signed in, as the provider vouches for it. `emailVerified` is always true: unverified is refused. */
export interface OAuthIdentity {
  provider: OAuthProviderName;
  /** The provider's stable account id (OIDC `sub`; GitHub's numeric user id). */
  subject: string;
  email: string;
  emailVerified: true;
  name: string | null;
}

export interface StartSignInOptions {
  /** Must be registered with the provider exactly (see oauthRedirectUri). */
  redirectUri: string;
  now?: Date;
}

export async function startSignIn(provider: OAuthProvider, options: StartSignInOptions): Promise<{ url: string; pending: PendingSignIn }> {
  const redirect = new URL(options.redirectUri);
  if (redirect.protocol !== "https:" && redirect.protocol !== "http:") throw new Error(`redirect URI must be http(s), got ${redirect.protocol}`);
  const config = await provider.configuration();
  const state = oidc.randomState();
  const codeVerifier = oidc.randomPKCECodeVerifier();
  const nonce = provider.protocol === "oidc" ? oidc.randomNonce() : null;
  const params: Record<string, string> = {
    redirect_uri: redirect.href,
    scope: provider.scope,
    state,
    code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: "S256",
  };
  if (nonce) params.nonce = nonce;
  const url = oidc.buildAuthorizationUrl(config, params);
  const createdAt = (options.now ?? new Date()).getTime();
  return { url: url.href, pending: { provider: provider.name, state, nonce, codeVerifier, redirectUri: redirect.href, createdAt } };
}

export interface FinishSignInOptions {
  /** The URL the provider sent the browser back to; only its query (code, state, iss or error) is read. */
  callbackUrl: URL | string;
  pending: PendingSignIn;
  now?: Date;
}

export async function finishSignIn(provider: OAuthProvider, options: FinishSignInOptions): Promise<OAuthIdentity> {
  const { pending } = options;
  const now = (options.now ?? new Date()).getTime();
  const mismatch = (why: string) => new DeckError("oidc_state_mismatch", `${provider.label} sign-in ${why}; start signing in again`, { provider: provider.name });
  if (pending.provider !== provider.name) throw mismatch("was started with another provider");
  if (now - pending.createdAt > PENDING_TTL_SECONDS * 1000 || now < pending.createdAt - 60_000) throw mismatch("took too long");

  const params = new URL(options.callbackUrl, "http://callback.invalid").searchParams;
  // State first: a callback that is not ours is refused the same way whatever else it carries (RFC 6749 §10.12).
  if (!sameString(params.get("state"), pending.state)) throw mismatch("does not match this browser's request (state mismatch)");
  const error = params.get("error");
  if (error) throw new DeckError("oidc_failed", `${provider.label} sign-in failed: ${provider.label} returned ${safeCode(error)}`, { provider: provider.name, reason: safeCode(error) });

  try {
    const config = await provider.configuration();
    // openid-client sends the callback URL without its query as redirect_uri, so rebuild it from what was
    // sent to the provider: behind a proxy the URL the server sees can differ from the registered one.
    const currentUrl = new URL(pending.redirectUri);
    currentUrl.search = params.toString();
    const checks: oidc.AuthorizationCodeGrantChecks = { pkceCodeVerifier: pending.codeVerifier, expectedState: pending.state };
    if (provider.protocol === "oidc") {
      if (!pending.nonce) throw mismatch("has no nonce");
      checks.expectedNonce = pending.nonce;
      checks.idTokenExpected = true;
    }
    const tokens = await oidc.authorizationCodeGrant(config, currentUrl, checks);
    return provider.protocol === "oidc" ? await identityFromOidc(provider, config, tokens) : await identityFromGitHub(provider, tokens.access_token);
  } catch (e) {
    throw failure(provider, e);
  }
}

type TokenResponse = Awaited<ReturnType<typeof oidc.authorizationCodeGrant>>;

async function identityFromOidc(provider: OAuthProvider, config: oidc.Configuration, tokens: TokenResponse): Promise<OAuthIdentity> {
  const claims = tokens.claims();
  if (!claims) throw new DeckError("oidc_failed", `${provider.label} sign-in failed: no ID token`, { provider: provider.name, reason: "no_id_token" });
  let source: Record<string, unknown> = claims;
  // Scope claims may be left out of the ID token when an access token is issued (OIDC Core §5.4); then
  // the UserInfo response, checked to be about the same subject, carries them.
  if (typeof claims.email !== "string" || claims.email_verified === undefined) {
    source = await oidc.fetchUserInfo(config, tokens.access_token, claims.sub);
  }
  const email = typeof source.email === "string" ? source.email.trim() : "";
  const verified = source.email_verified === true || source.email_verified === "true";
  const name = [source.name, source.preferred_username, claims.name].find((v): v is string => typeof v === "string" && v.length > 0) ?? null;
  return checkedIdentity(provider, { subject: claims.sub, email, verified, name });
}

const GitHubUser = z.object({ id: z.number().int(), login: z.string(), name: z.string().nullable().optional() });
const GitHubEmails = z.array(z.object({ email: z.string(), primary: z.boolean(), verified: z.boolean() }));

async function identityFromGitHub(provider: OAuthProvider, accessToken: string): Promise<OAuthIdentity> {
  const user = GitHubUser.parse(await gitHubApi(provider, accessToken, "user"));
  const emails = GitHubEmails.parse(await gitHubApi(provider, accessToken, "user/emails"));
  // The primary address when GitHub has verified it, else any verified one: each proves ownership.
  const chosen = emails.find((e) => e.primary && e.verified) ?? emails.find((e) => e.verified) ?? emails.find((e) => e.primary);
  return checkedIdentity(provider, { subject: String(user.id), email: chosen?.email ?? "", verified: chosen?.verified ?? false, name: user.name || user.login });
}

async function gitHubApi(provider: OAuthProvider, accessToken: string, path: string): Promise<unknown> {
  const url = new URL(path, provider.apiUrl!.href.replace(/\/?$/, "/"));
  const res = await fetch(url, {
    headers: {
      authorization: `Bearer ${accessToken}`,
      accept: "application/vnd.github+json",
      "x-github-api-version": "2022-11-28",
      // GitHub's API refuses requests without a User-Agent.
      "user-agent": "clouddeck",
    },
    redirect: "error",
    signal: AbortSignal.timeout(10_000),
  });
  if (!res.ok) {
    throw new DeckError("oidc_failed", `${provider.label} sign-in failed: ${provider.label} API answered HTTP ${res.status} for /${path}`, { provider: provider.name, reason: `api_http_${res.status}` });
  }
  return res.json();
}

function checkedIdentity(provider: OAuthProvider, i: { subject: string; email: string; verified: boolean; name: string | null }): OAuthIdentity {
  if (!i.subject || i.subject.length > 255) throw new DeckError("oidc_failed", `${provider.label} sign-in failed: the account id is missing or too long`, { provider: provider.name, reason: "bad_subject" });
  // Sign-in links accounts by email (see resolveOAuthUser), which is only safe for an address the provider has verified.
  if (!i.email || !i.verified || !/^[^\s@]+@[^\s@]+$/.test(i.email)) {
    throw new DeckError("oidc_email_unverified", `${provider.label} account has no verified email address; verify one at ${provider.label} and sign in again`, { provider: provider.name });
  }
  return { provider: provider.name, subject: i.subject, email: i.email, emailVerified: true, name: i.name };
}

function sameString(a: string | null, b: string): boolean {
  if (a === null) return false;
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Provider error codes are echoed only when they look like one (RFC 6749 §5.2 codes are short ASCII). */
function safeCode(code: string | undefined | null): string {
  return code && /^[\w.-]{1,64}$/.test(code) ? code : "an error";
}

function failure(provider: OAuthProvider, e: unknown): DeckError {
  if (isDeckError(e)) return e;
  let reason: string;
  let detail: string;
  if (e instanceof oidc.ResponseBodyError) {
    reason = safeCode(e.error);
    detail = `${provider.label} answered ${reason}`;
  } else if (e instanceof oidc.AuthorizationResponseError) {
    reason = safeCode(e.error);
    detail = `${provider.label} returned ${reason}`;
  } else if (e instanceof oidc.ClientError) {
    // The messages of openid-client and oauth4webapi are fixed texts naming the failed check (the values
    // checked go to `cause`, never into the message), e.g. 'unexpected ID Token "nonce" claim value'.
    const inner = e.cause instanceof Error && e.cause.name === "OperationProcessingError" ? e.cause : e;
    reason = e.code ?? "client_error";
    detail = inner.message.split("\n")[0]!;
  } else if (e instanceof z.ZodError || e instanceof SyntaxError) {
    reason = "unexpected_response";
    detail = `unexpected answer from ${provider.label}`;
  } else if (e instanceof Error && (e.name === "TimeoutError" || e.name === "AbortError")) {
    reason = "timeout";
    detail = `${provider.label} did not answer in time`;
  } else if (e instanceof TypeError && e.message === "fetch failed") {
    reason = "unreachable";
    detail = `${provider.label} could not be reached`;
  } else {
    throw e;
  }
  return new DeckError("oidc_failed", `${provider.label} sign-in failed: ${detail}`, { provider: provider.name, reason }, { cause: e });
}
