import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { randomPKCECodeVerifier } from "openid-client";
import { loadConfig } from "../../config/index.ts";
import { isDeckError } from "../../core/index.ts";
import { membershipsOf, q } from "../../store/queries/index.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../../test/helpers/database.ts";
import {
  auditOAuthFailure, createOAuthProvider, finishSignIn, oauthProvidersFromConfig, oauthRedirectUri, openPending, resolveOAuthUser,
  sealPending, startSignIn, type OAuthProvider, type PendingSignIn,
} from "./oidc.ts";
import { Browser, startCallbackServer, startFakeGitHub, startOpenIdProvider, type GitHubUser, type Running } from "./oidc-test-servers.ts";

const backends = await databaseBackends();

const CLIENT_ID = "deck-test";
const CLIENT_SECRET = `deck-secret-${randomBytes(12).toString("hex")}`;
const COOKIE_KEY = randomBytes(32);
const ACCOUNTS = {
  "alice-0001": { email: "alice@example.com", email_verified: true, name: "Alice Liddell" },
  "bob-0002": { email: "bob@example.com", email_verified: true, name: "Bob" },
  "mallory-0003": { email: "mallory@example.com", email_verified: false, name: "Mallory" },
};

/** Asserts that `work` fails with a DeckError carrying `code`, and returns it. */
async function refused(work: Promise<unknown>, code: string): Promise<Error & { code: string; data: Record<string, unknown> }> {
  const e = await work.then(
    () => assert.fail(`expected ${code}, but it succeeded`),
    (err: unknown) => err,
  );
  assert.ok(isDeckError(e), `expected a DeckError ${code}, got ${String(e)}`);
  assert.equal(e.code, code, e.message);
  assert.doesNotMatch(e.message, /\n/, "one-line message");
  assert.ok(!e.message.includes(CLIENT_SECRET), "message never contains the client secret");
  return e;
}

const servers: Running[] = [];
const tempDirs: string[] = [];
after(async () => {
  for (const s of servers.reverse()) await s.close();
  for (const d of tempDirs) await rm(d, { recursive: true, force: true });
});

async function configFor(env: Record<string, string>) {
  const cwd = await mkdtemp(join(tmpdir(), "deck-oidc-"));
  tempDirs.push(cwd);
  return loadConfig({ env, cwd });
}

describe("OpenID Connect sign-in against a real OpenID provider on loopback", () => {
  let callback: Awaited<ReturnType<typeof startCallbackServer>>;
  let gitlab: OAuthProvider;
  let google: OAuthProvider;
  let redirectUri: string;
  let gitlabServer: Awaited<ReturnType<typeof startOpenIdProvider>>;
  let googleServer: Awaited<ReturnType<typeof startOpenIdProvider>>;

  before(async () => {
    callback = await startCallbackServer();
    servers.push(callback);
    const site = { publicUrl: callback.url, host: "127.0.0.1", apiPort: 3000 };
    redirectUri = oauthRedirectUri(site, "gitlab");
    const options = { clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, accounts: ACCOUNTS };
    // Two real providers: one gives the email only from its UserInfo endpoint, the other (like Google)
    // puts it in the ID token as well.
    gitlabServer = await startOpenIdProvider({ ...options, redirectUris: [redirectUri] });
    servers.push(gitlabServer);
    googleServer = await startOpenIdProvider({ ...options, redirectUris: [oauthRedirectUri(site, "google")], emailInIdToken: true });
    servers.push(googleServer);
    const config = await configFor({
      DECK_PUBLIC_URL: callback.url,
      DECK_OIDC_GITLAB_CLIENT_ID: CLIENT_ID,
      DECK_OIDC_GITLAB_CLIENT_SECRET: CLIENT_SECRET,
      DECK_OIDC_GITLAB_ISSUER: gitlabServer.issuer,
      DECK_OIDC_GOOGLE_CLIENT_ID: CLIENT_ID,
      DECK_OIDC_GOOGLE_CLIENT_SECRET: CLIENT_SECRET,
      DECK_OIDC_GOOGLE_ISSUER: `${googleServer.issuer}/`,
    });
    const providers = oauthProvidersFromConfig(config);
    assert.deepEqual(providers.configured, ["gitlab", "google"]);
    assert.equal(oauthRedirectUri(config, "gitlab"), redirectUri);
    gitlab = providers.get("gitlab");
    google = providers.get("google");
  });

  /** Starts a sign-in and walks the provider's sign-in and consent pages like a user would. */
  async function signIn(browser: Browser, login: string, provider = gitlab) {
    const { url, pending } = await startSignIn(provider, { redirectUri: redirectUri.replace("/gitlab/", `/${provider.name}/`) });
    let page = await browser.open(url);
    if (page.body.includes('name="login"')) page = await browser.open(Browser.formAction(page), { prompt: "login", login, password: "anything" });
    if (page.body.includes('value="consent"')) page = await browser.open(Browser.formAction(page), { prompt: "consent" });
    assert.equal(new URL(page.url).origin, callback.url, `the provider should send the browser back to deck, ended at ${page.url}: ${page.body.slice(0, 300)}`);
    assert.equal(page.status, 200);
    return { authorizationUrl: new URL(url), pending, callbackUrl: callback.received.at(-1)!.href };
  }

  it("signs a user in end to end: authorization request with PKCE, state and nonce; identity from the provider", async () => {
    const { authorizationUrl, pending, callbackUrl } = await signIn(new Browser(), "alice-0001");
    const p = authorizationUrl.searchParams;
    assert.equal(p.get("code_challenge_method"), "S256");
    assert.ok(p.get("code_challenge") && p.get("code_challenge") !== pending.codeVerifier);
    assert.equal(p.get("state"), pending.state);
    assert.equal(p.get("nonce"), pending.nonce);
    assert.equal(p.get("redirect_uri"), redirectUri);
    assert.ok(new URL(callbackUrl).searchParams.get("code"), "the provider returned a code");

    // The API keeps the pending sign-in in a sealed cookie between the two requests.
    const cookie = await sealPending(pending, COOKIE_KEY);
    assert.ok(!cookie.includes(pending.codeVerifier) && !cookie.includes(pending.state), "the cookie does not reveal the verifier or state");
    const identity = await finishSignIn(gitlab, { callbackUrl, pending: await openPending(cookie, COOKIE_KEY) });
    assert.deepEqual(identity, { provider: "gitlab", subject: "alice-0001", email: "alice@example.com", emailVerified: true, name: "Alice Liddell" });
    assert.ok(gitlabServer.requests.includes("GET /me"), "this provider's ID token has no email, so UserInfo was asked");
  });

  it("takes the identity from the ID token alone when it carries the email (as Google's does)", async () => {
    const identity = await finishSignIn(google, await signIn(new Browser(), "bob-0002", google));
    assert.deepEqual(identity, { provider: "google", subject: "bob-0002", email: "bob@example.com", emailVerified: true, name: "Bob" });
    assert.ok(googleServer.requests.includes("POST /token"));
    assert.ok(!googleServer.requests.includes("GET /me"), "no UserInfo request was needed");
  });

  it("refuses a callback whose state was changed or that belongs to another sign-in, before spending the code", async () => {
    const { pending, callbackUrl } = await signIn(new Browser(), "alice-0001");
    const tampered = new URL(callbackUrl);
    tampered.searchParams.set("state", `${pending.state.slice(0, -2)}xx`);
    const e = await refused(finishSignIn(gitlab, { callbackUrl: tampered, pending }), "oidc_state_mismatch");
    assert.match(e.message, /state/);

    const missing = new URL(callbackUrl);
    missing.searchParams.delete("state");
    await refused(finishSignIn(gitlab, { callbackUrl: missing, pending }), "oidc_state_mismatch");

    const other = await startSignIn(gitlab, { redirectUri });
    await refused(finishSignIn(gitlab, { callbackUrl, pending: other.pending }), "oidc_state_mismatch");

    // The refusals did not use the code: the genuine pair still completes.
    const identity = await finishSignIn(gitlab, { callbackUrl, pending });
    assert.equal(identity.subject, "alice-0001");
  });

  it("fails a wrong PKCE verifier and a replayed code at the provider, without echoing the code", async () => {
    const first = await signIn(new Browser(), "alice-0001");
    const wrongVerifier: PendingSignIn = { ...first.pending, codeVerifier: randomPKCECodeVerifier() };
    const e = await refused(finishSignIn(gitlab, { callbackUrl: first.callbackUrl, pending: wrongVerifier }), "oidc_failed");
    assert.match(e.message, /^GitLab sign-in failed: GitLab answered invalid_grant$/);
    assert.ok(!e.message.includes(new URL(first.callbackUrl).searchParams.get("code")!));

    const second = await signIn(new Browser(), "alice-0001");
    await finishSignIn(gitlab, second);
    const replay = await refused(finishSignIn(gitlab, second), "oidc_failed");
    assert.match(replay.message, /invalid_grant/);
  });

  it("refuses an account whose email the provider has not verified", async () => {
    const { pending, callbackUrl } = await signIn(new Browser(), "mallory-0003");
    const e = await refused(finishSignIn(gitlab, { callbackUrl, pending }), "oidc_email_unverified");
    assert.equal(e.message, "GitLab account has no verified email address; verify one at GitLab and sign in again");
  });

  it("reports a sign-in the user cancelled at the provider", async () => {
    const browser = new Browser();
    const { url, pending } = await startSignIn(gitlab, { redirectUri });
    const loginPage = await browser.open(url);
    const abort = /href="([^"]*\/abort)"/.exec(loginPage.body)?.[1];
    assert.ok(abort, "the provider's sign-in page has a cancel link");
    const page = await browser.open(new URL(abort, loginPage.url).href);
    assert.equal(new URL(page.url).origin, callback.url);
    const e = await refused(finishSignIn(gitlab, { callbackUrl: page.url, pending }), "oidc_failed");
    assert.equal(e.message, "GitLab sign-in failed: GitLab returned access_denied");
  });

  it("seals the pending sign-in so it cannot be altered, opened with another key, or used after 10 minutes", async () => {
    const { pending } = await startSignIn(gitlab, { redirectUri });
    const cookie = await sealPending(pending, COOKIE_KEY);
    assert.deepEqual(await openPending(cookie, COOKIE_KEY), pending);
    const parts = cookie.split(".");
    parts[3] = parts[3]!.startsWith("A") ? `B${parts[3]!.slice(1)}` : `A${parts[3]!.slice(1)}`;
    await refused(openPending(parts.join("."), COOKIE_KEY), "oidc_state_mismatch");
    await refused(openPending(cookie, randomBytes(32)), "oidc_state_mismatch");
    await refused(openPending(undefined, COOKIE_KEY), "oidc_state_mismatch");
    const late = new Date(pending.createdAt + 11 * 60_000);
    assert.match((await refused(openPending(cookie, COOKIE_KEY, { now: late }), "oidc_state_mismatch")).message, /expired/);
    await refused(finishSignIn(gitlab, { callbackUrl: `${redirectUri}?state=${pending.state}&code=x`, pending, now: late }), "oidc_state_mismatch");
  });

  it("says so when the provider is unreachable, unknown or half configured", async () => {
    const down = createOAuthProvider({ name: "google", clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, issuer: "http://127.0.0.1:9" });
    const e = await refused(startSignIn(down, { redirectUri }), "oidc_failed");
    assert.match(e.message, /^Google sign-in is unavailable: OpenID Connect discovery at http:\/\/127\.0\.0\.1:9 failed$/);

    const none = oauthProvidersFromConfig(await configFor({}));
    assert.deepEqual(none.configured, []);
    await refused(Promise.resolve().then(() => none.get("google")), "oidc_not_configured");
    await refused(Promise.resolve().then(() => none.get("facebook")), "oidc_not_configured");
    const half = await configFor({ DECK_OIDC_GOOGLE_CLIENT_ID: "x" });
    const e2 = await refused(Promise.resolve().then(() => oauthProvidersFromConfig(half)), "oidc_not_configured");
    assert.match(e2.message, /DECK_OIDC_GOOGLE_CLIENT_SECRET/);
    const plain = await configFor({ DECK_OIDC_GOOGLE_CLIENT_ID: "x", DECK_OIDC_GOOGLE_CLIENT_SECRET: "y", DECK_OIDC_GOOGLE_ISSUER: "http://accounts.example.com" });
    await refused(Promise.resolve().then(() => oauthProvidersFromConfig(plain)), "oidc_not_configured");
  });

  for (const backend of backends) {
    describe(`linking provider accounts to users (${backend.name} PostgreSQL)`, () => {
      let t: TestDatabase;
      before(async () => {
        t = await openTestDatabase(backend);
      });
      after(async () => {
        await t?.cleanup();
      });

      it("creates a user on first sign-in, signs the same account in again, and links a verified email to its user", async () => {
        const browser = new Browser();
        const first = await signIn(browser, "alice-0001");
        const created = await resolveOAuthUser(t.db.pool, await finishSignIn(gitlab, first), { sourceIp: "127.0.0.1" });
        assert.equal(created.outcome, "created");
        assert.equal(created.user.email, "alice@example.com");
        assert.equal(created.user.name, "Alice Liddell");
        assert.equal(created.user.isAdmin, false);
        assert.deepEqual(await membershipsOf(t.db.pool, created.user.id), []);

        // Same browser: the provider remembers the session and consent, and goes straight back.
        const again = await resolveOAuthUser(t.db.pool, await finishSignIn(gitlab, await signIn(browser, "alice-0001")));
        assert.deepEqual(again, { user: created.user, outcome: "signed-in" });

        const bob = await t.db.pool.one(q`INSERT INTO users (email, name) VALUES ('Bob@Example.com', 'Robert') RETURNING id`);
        const linked = await resolveOAuthUser(t.db.pool, await finishSignIn(gitlab, await signIn(new Browser(), "bob-0002")));
        assert.equal(linked.outcome, "linked");
        assert.equal(linked.user.id, Number(bob.id));
        assert.equal(linked.user.name, "Robert", "linking leaves the existing user as it was");

        const identities = await t.db.pool.any(q`SELECT provider, subject, user_id, email, last_used_at IS NOT NULL AS used FROM oauth_identities ORDER BY subject`);
        assert.deepEqual(identities.map((r) => ({ ...r, user_id: Number(r.user_id) })), [
          { provider: "gitlab", subject: "alice-0001", user_id: created.user.id, email: "alice@example.com", used: true },
          { provider: "gitlab", subject: "bob-0002", user_id: Number(bob.id), email: "bob@example.com", used: true },
        ]);
        const audits = await t.db.pool.any(q`SELECT user_id, action, target, result, source_ip, data FROM audit_log WHERE action = 'oauth:sign-in' ORDER BY id`);
        assert.deepEqual(audits.map((a) => [Number(a.user_id), a.target, a.result, (a.data as { outcome: string }).outcome]), [
          [created.user.id, "alice@example.com", "ok", "created"],
          [created.user.id, "alice@example.com", "ok", "signed-in"],
          [Number(bob.id), "Bob@Example.com", "ok", "linked"],
        ]);
        assert.equal(audits[0]!.source_ip, "127.0.0.1");
      });

      it("keeps a linked account on its user when the email changes, and survives two first sign-ins at once", async () => {
        const carol = { provider: "gitlab" as const, subject: "carol-0004", email: "carol@example.com", emailVerified: true as const, name: "Carol" };
        const [a, b] = await Promise.all([resolveOAuthUser(t.db.pool, carol), resolveOAuthUser(t.db.pool, carol)]);
        assert.equal(a.user.id, b.user.id);
        assert.deepEqual([a.outcome, b.outcome].sort(), ["created", "signed-in"]);
        const moved = await resolveOAuthUser(t.db.pool, { ...carol, email: "alice@example.com" });
        assert.equal(moved.user.id, a.user.id, "a linked account never switches to the user its new email belongs to");
        assert.equal(Number(await t.db.pool.oneFirst(q`SELECT count(*) FROM users WHERE email = 'carol@example.com'`)), 1);
      });

      it("audits a failed sign-in with its code only", async () => {
        const { pending, callbackUrl } = await signIn(new Browser(), "mallory-0003");
        const error = await refused(finishSignIn(gitlab, { callbackUrl, pending }), "oidc_email_unverified");
        await auditOAuthFailure(t.db.pool, { provider: "gitlab", error, sourceIp: "127.0.0.9" });
        const row = await t.db.pool.one(q`SELECT user_id, target, result, data FROM audit_log WHERE source_ip = '127.0.0.9'`);
        assert.deepEqual({ ...row }, { user_id: null, target: "gitlab", result: "failed", data: { code: "oidc_email_unverified" } });
        assert.equal(Number(await t.db.pool.oneFirst(q`SELECT count(*) FROM users WHERE email = 'mallory@example.com'`)), 0);
      });
    });
  }
});

describe("GitHub sign-in (plain OAuth 2.0) against a local stand-in for GitHub", () => {
  // GitHub cannot run here and oidc-provider cannot behave like it (GitHub has no discovery, no ID token,
  // and names the account through its REST API), so a local server plays GitHub's documented endpoints.
  const octocat: GitHubUser = {
    id: 583231,
    login: "octocat",
    name: "The Octocat",
    emails: [
      { email: "octo-old@example.com", primary: false, verified: false, visibility: null },
      { email: "octocat@example.com", primary: true, verified: true, visibility: "public" },
    ],
  };
  let fake: Awaited<ReturnType<typeof startFakeGitHub>>;
  let callback: Awaited<ReturnType<typeof startCallbackServer>>;
  let github: OAuthProvider;
  let redirectUri: string;

  before(async () => {
    callback = await startCallbackServer();
    servers.push(callback);
    redirectUri = `${callback.url}/api/v1/auth/oidc/github/callback`;
    fake = await startFakeGitHub({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, redirectUri, user: octocat });
    servers.push(fake);
    const config = await configFor({
      DECK_PUBLIC_URL: `${callback.url}/`,
      DECK_OIDC_GITHUB_CLIENT_ID: CLIENT_ID,
      DECK_OIDC_GITHUB_CLIENT_SECRET: CLIENT_SECRET,
      DECK_OIDC_GITHUB_ISSUER: fake.url,
      DECK_OIDC_GITHUB_API_URL: fake.apiUrl,
    });
    assert.equal(oauthRedirectUri(config, "github"), redirectUri);
    github = oauthProvidersFromConfig(config).get("github");
  });

  async function signIn() {
    const { url, pending } = await startSignIn(github, { redirectUri });
    const page = await new Browser().open(url);
    assert.equal(page.url.startsWith(redirectUri), true, `ended at ${page.url}: ${page.body.slice(0, 200)}`);
    return { url: new URL(url), pending, callbackUrl: page.url };
  }

  it("signs in with the account id and the verified primary email from GitHub's API", async () => {
    const { url, pending, callbackUrl } = await signIn();
    assert.equal(url.pathname, "/login/oauth/authorize");
    assert.equal(url.searchParams.get("scope"), "read:user user:email");
    assert.equal(url.searchParams.get("nonce"), null, "plain OAuth 2.0 has no nonce");
    assert.equal(pending.nonce, null);
    const identity = await finishSignIn(github, { callbackUrl, pending });
    assert.deepEqual(identity, { provider: "github", subject: "583231", email: "octocat@example.com", emailVerified: true, name: "The Octocat" });

    const replay = await refused(finishSignIn(github, { callbackUrl, pending }), "oidc_failed");
    assert.equal(replay.message, "GitHub sign-in failed: GitHub answered bad_verification_code");
  });

  it("refuses a wrong PKCE verifier and a tampered state", async () => {
    const { pending, callbackUrl } = await signIn();
    await refused(finishSignIn(github, { callbackUrl: callbackUrl.replace(/state=[^&]+/, "state=forged"), pending }), "oidc_state_mismatch");
    const e = await refused(finishSignIn(github, { callbackUrl, pending: { ...pending, codeVerifier: randomPKCECodeVerifier() } }), "oidc_failed");
    assert.match(e.message, /bad_verification_code/);
  });

  it("refuses a GitHub account without a verified email", async () => {
    fake.signedInAs = { ...octocat, id: 1, emails: [{ email: "new@example.com", primary: true, verified: false, visibility: null }] };
    try {
      const { pending, callbackUrl } = await signIn();
      await refused(finishSignIn(github, { callbackUrl, pending }), "oidc_email_unverified");
    } finally {
      fake.signedInAs = octocat;
    }
  });
});
