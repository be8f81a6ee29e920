import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { Secret, TOTP } from "otpauth";
import { startOpenIdProvider, type Running } from "../api/auth/oidc-test-servers.ts";
import { openDatabase, type Database } from "../store/index.ts";
import { q } from "../store/queries/index.ts";
import { CookieBrowser, type Visit } from "./helpers/cookie-browser.ts";
import { databaseBackends } from "./helpers/database.ts";
import { Deck, freePort } from "./helpers/deck.ts";

/**
 * "Sign in with GitLab / Google" end to end through deck's own routes: a real deck server, a real
 * OpenID provider (oidc-provider) on loopback, and a browser that follows the redirects, fills in the
 * provider's sign-in and consent pages and carries cookies between them.
 */

const backends = await databaseBackends();

const CLIENT_ID = "deck-e2e";
const CLIENT_SECRET = `deck-secret-${randomBytes(12).toString("hex")}`;
const ACCOUNTS = {
  "alice-0001": { email: "alice@example.com", email_verified: true, name: "Alice Liddell" },
  "bob-0002": { email: "bob@example.com", email_verified: true, name: "Bob" },
  "mallory-0003": { email: "mallory@example.com", email_verified: false, name: "Mallory" },
  "carol-0004": { email: "carol@example.com", email_verified: true, name: "Carol" },
};
const COOKIE = "deck_oauth";

interface Json {
  status: number;
  json: any;
}

function parse(visit: Visit): Json {
  assert.match(visit.contentType ?? "", /application\/json/, `expected JSON from ${visit.url}, got HTTP ${visit.status}: ${visit.body.slice(0, 300)}`);
  return { status: visit.status, json: JSON.parse(visit.body) };
}

/** A 4xx answer shaped like every deck error: `{ error: { code, message } }` with a one-line message. */
function assertRefused(r: Json, status: number, code: string): void {
  assert.equal(r.status, status, JSON.stringify(r.json));
  assert.equal(r.json.error?.code, code, JSON.stringify(r.json));
  assert.doesNotMatch(r.json.error.message, /\n/);
  assert.ok(!JSON.stringify(r.json).includes(CLIENT_SECRET), "never echoes the client secret");
  assert.equal(r.json.accessToken, undefined);
}

for (const backend of backends) {
  describe(`sign in with an identity provider through deck's routes (${backend.name} PostgreSQL)`, () => {
    let deck: Deck | undefined;
    let provider: Awaited<ReturnType<typeof startOpenIdProvider>>;
    let db: Database | undefined;
    let base: string;
    const servers: Running[] = [];
    const callbackOf = (name: string) => `${base}/auth/oidc/${name}/callback`;
    const isDeckCallback = (url: URL) => url.href.startsWith(`${base}/auth/oidc/`) && url.pathname.endsWith("/callback");

    const api = async (path: string, token: string | null, init: { method?: string; body?: unknown } = {}): Promise<Json> => {
      const headers: Record<string, string> = {};
      if (token) headers.authorization = `Bearer ${token}`;
      if (init.body !== undefined) headers["content-type"] = "application/json";
      const res = await fetch(`${base}${path}`, { method: init.method ?? "GET", headers, body: init.body === undefined ? undefined : JSON.stringify(init.body) });
      const text = await res.text();
      return { status: res.status, json: text ? JSON.parse(text) : null };
    };
    const users = async () => (await db!.pool.any(q`SELECT id, email, is_admin FROM users ORDER BY id`)).map((r) => ({ id: Number(r.id), email: String(r.email), isAdmin: Boolean(r.is_admin) }));
    const signInAudit = async () =>
      (await db!.pool.any(q`SELECT user_id, target, result, data FROM audit_log WHERE action = 'oauth:sign-in' ORDER BY id`)).map((r) => ({
        userId: r.user_id == null ? null : Number(r.user_id),
        target: r.target as string | null,
        result: String(r.result),
        data: (typeof r.data === "string" ? JSON.parse(r.data) : r.data) as Record<string, unknown>,
      }));

    /**
     * Starts at deck, then walks the provider's pages like a user (each page only when the provider shows
     * it: a remembered provider session skips sign-in, an earlier consent skips consent), and stops in
     * front of deck's callback so the test decides how it is requested.
     */
    async function toCallback(browser: CookieBrowser, providerName: string, login: string, options: { cancel?: boolean } = {}) {
      const stopBefore = isDeckCallback;
      const start = await browser.open(`${base}/auth/oidc/${providerName}/start`, { stopBefore });
      let page = start;
      if (!page.stopped && page.body.includes('name="login"')) {
        if (options.cancel) page = await browser.open(abortUrl(page), { stopBefore });
        else page = await browser.open(CookieBrowser.formAction(page), { form: { prompt: "login", login, password: "any password" }, stopBefore });
      }
      if (!page.stopped && page.body.includes('value="consent"')) page = await browser.open(CookieBrowser.formAction(page), { form: { prompt: "consent" }, stopBefore });
      assert.ok(page.stopped, `the provider should send the browser back to deck; it ended at ${page.url} (HTTP ${page.status}): ${page.body.slice(0, 300)}`);
      return { start, callbackUrl: new URL(page.url) };
    }

    const abortUrl = (page: Visit) => {
      const href = /href="([^"]*\/abort)"/.exec(page.body)?.[1];
      assert.ok(href, `no cancel link on ${page.url}`);
      return new URL(href, page.url).href;
    };

    /** The whole sign-in: start, provider pages, callback. */
    async function signIn(browser: CookieBrowser, providerName: string, login: string): Promise<Json> {
      const { callbackUrl } = await toCallback(browser, providerName, login);
      return parse(await browser.open(callbackUrl));
    }

    before(async () => {
      // The redirect URIs registered with the provider name deck's API port, so it is chosen first.
      const apiPort = await freePort();
      base = `http://127.0.0.1:${apiPort}/api/v1`;
      provider = await startOpenIdProvider({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, redirectUris: [callbackOf("gitlab"), callbackOf("google")], accounts: ACCOUNTS });
      servers.push(provider);
      deck = await Deck.start({
        backend,
        ports: { api: apiPort },
        env: {
          DECK_OIDC_GITLAB_CLIENT_ID: CLIENT_ID,
          DECK_OIDC_GITLAB_CLIENT_SECRET: CLIENT_SECRET,
          DECK_OIDC_GITLAB_ISSUER: provider.issuer,
          // Google, as a second provider name, set up against the same OpenID provider.
          DECK_OIDC_GOOGLE_CLIENT_ID: CLIENT_ID,
          DECK_OIDC_GOOGLE_CLIENT_SECRET: CLIENT_SECRET,
          DECK_OIDC_GOOGLE_ISSUER: `${provider.issuer}/`,
        },
      });
      // Read-only look at what the server stored: users and the audit log (user-level rows are not in any org's audit view).
      db = await openDatabase({ dataDir: deck.dataDir, databaseUrl: backend.name === "external" ? backend.url : undefined });
    });

    after(async () => {
      await db?.close();
      await deck?.stop();
      for (const s of servers.reverse()) await s.close();
      if (backend.name === "external") await backend.drop();
    });

    it("signs a new user in with GitLab: start → provider sign-in and consent → callback answers an access token", async () => {
      const before = await users();
      const browser = new CookieBrowser();
      const { start, callbackUrl } = await toCallback(browser, "gitlab", "alice-0001");

      // deck's start answers a redirect to the provider's authorization endpoint, and seals the pending sign-in into a cookie.
      const first = start.hops[0]!;
      assert.equal(first.status, 302);
      const authorize = new URL(first.location!, first.url);
      assert.equal(authorize.origin, provider.url);
      const p = authorize.searchParams;
      assert.equal(p.get("client_id"), CLIENT_ID);
      assert.equal(p.get("redirect_uri"), callbackOf("gitlab"));
      assert.equal(p.get("response_type"), "code");
      assert.equal(p.get("code_challenge_method"), "S256");
      assert.ok(p.get("state") && p.get("nonce") && p.get("code_challenge"));
      assert.match(p.get("scope") ?? "", /\bopenid\b.*\bemail\b/);
      const setCookie = first.setCookies.find((c) => c.startsWith(`${COOKIE}=`));
      assert.ok(setCookie, `start sets the ${COOKIE} cookie: ${first.setCookies.join(" | ")}`);
      assert.match(setCookie, /;\s*httponly/i);
      assert.match(setCookie, /;\s*samesite=lax/i);
      assert.match(setCookie, /;\s*path=\/api\/v1\/auth\/oidc(;|$)/i);
      const sealed = browser.cookie(callbackUrl, COOKIE);
      assert.ok(sealed, "the browser keeps the cookie for deck's callback");
      assert.ok(!sealed.value.includes(p.get("state")!), "the cookie does not reveal the state");
      // The pending sign-in lasts ten minutes, then the user starts again.
      const lifetime = (sealed.expiresAt ?? Infinity) - Date.now();
      assert.ok(lifetime > 540_000 && lifetime <= 601_000, `cookie lifetime ${lifetime} ms`);
      assert.equal(browser.cookie(provider.url, COOKIE), undefined, "the cookie is not sent to the provider's pages");
      assert.equal(callbackUrl.searchParams.get("state"), p.get("state"));
      assert.ok(callbackUrl.searchParams.get("code"));

      const session = parse(await browser.open(callbackUrl));
      assert.equal(session.status, 200, JSON.stringify(session.json));
      assert.equal(session.json.tokenType, "Bearer");
      assert.equal(typeof session.json.accessToken, "string");
      assert.ok(session.json.expiresIn > 0);
      assert.equal(browser.cookie(callbackUrl, COOKIE), undefined, "a finished sign-in clears its cookie");

      const me = await api("/users/me", session.json.accessToken);
      assert.equal(me.status, 200, JSON.stringify(me.json));
      assert.equal(me.json.email, "alice@example.com");
      assert.equal(me.json.name, "Alice Liddell");
      assert.equal(me.json.isAdmin, false);
      assert.deepEqual(me.json.organizations, []);

      // The platform admin sees the new user, who is not an admin.
      const listed = await api("/users?limit=100", deck!.token);
      assert.equal(listed.status, 200, JSON.stringify(listed.json));
      const alice = listed.json.items.find((u: { email: string }) => u.email === "alice@example.com");
      assert.ok(alice, "the admin's user list shows alice");
      assert.equal(alice.id, me.json.id);
      assert.equal(alice.isAdmin, false);
      assert.equal((await users()).length, before.length + 1);

      const audit = (await signInAudit()).filter((a) => a.userId === me.json.id);
      assert.equal(audit.length, 1, JSON.stringify(audit));
      assert.equal(audit[0]!.result, "ok");
      assert.deepEqual(audit[0]!.data, { provider: "gitlab", subject: "alice-0001", outcome: "created" });
      // A non-admin session cannot read other users.
      assert.equal((await api("/users", session.json.accessToken)).status, 403);
    });

    it("a second sign-in with the same provider account is the same user, not a new one", async () => {
      const count = (await users()).length;
      const browser = new CookieBrowser();
      const firstTime = await signIn(browser, "gitlab", "alice-0001");
      assert.equal(firstTime.status, 200, JSON.stringify(firstTime.json));
      // The same browser again: the provider remembers its session and the consent, so no page is shown.
      const { start, callbackUrl } = await toCallback(browser, "gitlab", "alice-0001");
      assert.ok(!start.hops.some((h) => h.url.includes("/interaction/")), "no sign-in or consent page the second time");
      const again = parse(await browser.open(callbackUrl));
      assert.equal(again.status, 200, JSON.stringify(again.json));
      const ids = await Promise.all([firstTime, again].map(async (s) => (await api("/users/me", s.json.accessToken)).json.id));
      assert.equal(ids[0], ids[1]);
      assert.equal((await users()).length, count);
      const outcomes = (await signInAudit()).filter((a) => a.userId === ids[0]).map((a) => a.data.outcome);
      assert.deepEqual(outcomes.slice(-2), ["signed-in", "signed-in"]);

      // The callback URL cannot be used a second time: the cookie is gone and the code is spent.
      const replay = parse(await browser.open(callbackUrl));
      assertRefused(replay, 400, "oidc_state_mismatch");
    });

    it("refuses a callback whose state was changed, or that comes without the sign-in cookie: 4xx JSON, no user created", async () => {
      const before = await users();
      const failedBefore = (await signInAudit()).filter((a) => a.result === "failed").length;
      const browser = new CookieBrowser();
      const { callbackUrl } = await toCallback(browser, "gitlab", "bob-0002");

      const tampered = new URL(callbackUrl);
      tampered.searchParams.set("state", `${callbackUrl.searchParams.get("state")!.slice(0, -2)}xx`);
      assertRefused(parse(await browser.open(tampered)), 400, "oidc_state_mismatch");

      const noState = new URL(callbackUrl);
      noState.searchParams.delete("state");
      assertRefused(parse(await browser.open(noState)), 400, "oidc_state_mismatch");

      // The genuine callback URL opened in another browser (a link sent to someone else) has no cookie.
      const elsewhere = parse(await new CookieBrowser().open(callbackUrl));
      assertRefused(elsewhere, 400, "oidc_state_mismatch");
      assert.match(elsewhere.json.error.message, /start signing in again/);

      // Another browser's cookie does not fit this callback either.
      const other = new CookieBrowser();
      await toCallback(other, "gitlab", "carol-0004");
      const swapped = new CookieBrowser();
      swapped.setCookie(callbackUrl, `${COOKIE}=${other.cookie(callbackUrl, COOKIE)!.value}; Path=/api/v1/auth/oidc`);
      assertRefused(parse(await swapped.open(callbackUrl)), 400, "oidc_state_mismatch");

      assert.deepEqual(await users(), before, "no user was created");
      const failed = (await signInAudit()).filter((a) => a.result === "failed").slice(failedBefore);
      assert.equal(failed.length, 4, JSON.stringify(failed));
      for (const f of failed) assert.deepEqual(f.data, { code: "oidc_state_mismatch" });

      // The refusals spent nothing: the browser that started the sign-in still completes it.
      const genuine = parse(await browser.open(callbackUrl));
      assert.equal(genuine.status, 200, JSON.stringify(genuine.json));
      assert.equal((await api("/users/me", genuine.json.accessToken)).json.email, "bob@example.com");
    });

    it("refuses an account whose email the provider has not verified, and a user who cancels at the provider", async () => {
      const before = await users();
      const unverified = await signIn(new CookieBrowser(), "gitlab", "mallory-0003");
      assertRefused(unverified, 403, "oidc_email_unverified");
      assert.match(unverified.json.error.message, /verified email/);

      const cancelled = new CookieBrowser();
      const { callbackUrl } = await toCallback(cancelled, "gitlab", "carol-0004", { cancel: true });
      assert.equal(callbackUrl.searchParams.get("error"), "access_denied");
      const answer = parse(await cancelled.open(callbackUrl));
      assertRefused(answer, 401, "oidc_failed");
      assert.match(answer.json.error.message, /access_denied/);
      assert.deepEqual(await users(), before, "no user was created");
    });

    it("answers 404 oidc_not_configured for a provider without a client id and secret", async () => {
      const before = await users();
      const browser = new CookieBrowser();
      const github = parse(await browser.open(`${base}/auth/oidc/github/start`));
      assertRefused(github, 404, "oidc_not_configured");
      assert.match(github.json.error.message, /available: gitlab, google/);
      assert.equal(browser.cookie(`${base}/auth/oidc/github/callback`, COOKIE), undefined, "no pending sign-in was started");
      assertRefused(parse(await browser.open(`${base}/auth/oidc/github/callback?code=x&state=y`)), 404, "oidc_not_configured");
      // A name deck does not know at all is a bad request, not a redirect anywhere.
      const unknown = parse(await browser.open(`${base}/auth/oidc/facebook/start`));
      assert.ok(unknown.status >= 400 && unknown.status < 500, JSON.stringify(unknown.json));
      assert.equal(unknown.json.accessToken, undefined);
      assert.deepEqual(await users(), before);
    });

    it("signs the same person in with Google (a second provider name): linked to the existing user by verified email", async () => {
      const count = (await users()).length;
      const gitlab = await signIn(new CookieBrowser(), "gitlab", "alice-0001");
      const google = await signIn(new CookieBrowser(), "google", "alice-0001");
      assert.equal(google.status, 200, JSON.stringify(google.json));
      const [viaGitlab, viaGoogle] = await Promise.all([gitlab, google].map(async (s) => (await api("/users/me", s.json.accessToken)).json));
      assert.equal(viaGoogle.email, "alice@example.com");
      assert.equal(viaGoogle.id, viaGitlab.id);
      assert.equal((await users()).length, count);
      const google1 = (await signInAudit()).filter((a) => a.data.provider === "google");
      assert.deepEqual(google1.map((a) => [a.userId, a.data.outcome]), [[viaGitlab.id, "linked"]]);

      // The two providers' pending sign-ins are not interchangeable.
      const browser = new CookieBrowser();
      const { callbackUrl } = await toCallback(browser, "google", "alice-0001");
      const crossed = new URL(callbackUrl.href.replace("/google/callback", "/gitlab/callback"));
      assertRefused(parse(await browser.open(crossed)), 400, "oidc_state_mismatch");
    });

    it("does not let a provider sign-in skip the second factor of a user who turned MFA on", async () => {
      const browser = new CookieBrowser();
      const first = await signIn(browser, "gitlab", "carol-0004");
      assert.equal(first.status, 200, JSON.stringify(first.json));
      const token = first.json.accessToken as string;
      const password = `correct horse ${randomBytes(6).toString("hex")}`;
      const setPassword = await api("/users/me/password", token, { method: "PUT", body: { password } });
      assert.equal(setPassword.status, 200, JSON.stringify(setPassword.json));
      const enrol = await api("/users/me/mfa", token, { method: "POST" });
      assert.equal(enrol.status, 201, JSON.stringify(enrol.json));
      const code = TOTP.generate({ secret: Secret.fromBase32(enrol.json.secret), algorithm: "SHA1", digits: 6, period: 30 });
      const confirm = await api("/users/me/mfa/confirm", token, { method: "POST", body: { code } });
      assert.equal(confirm.status, 200, JSON.stringify(confirm.json));
      assert.equal((await api("/users/me/mfa", token)).json.enabled, true);

      // The provider alone no longer gets a session for carol.
      const failedBefore = (await signInAudit()).filter((a) => a.result === "failed").length;
      const again = await signIn(new CookieBrowser(), "gitlab", "carol-0004");
      assertRefused(again, 401, "mfa_required");
      assert.match(again.json.error.message, /two-factor/);
      const failed = (await signInAudit()).filter((a) => a.result === "failed").slice(failedBefore);
      assert.deepEqual(failed.map((f) => [f.target, f.data.code]), [["gitlab", "mfa_required"]]);

      // What the message points to works: password plus a second factor.
      const recoveryCode = (confirm.json.recoveryCodes as string[])[0];
      const withBoth = await api("/session", null, { method: "POST", body: { email: "carol@example.com", password, recoveryCode } });
      assert.equal(withBoth.status, 201, JSON.stringify(withBoth.json));
      assert.equal((await api("/users/me", withBoth.json.accessToken)).json.email, "carol@example.com");
    });
  });
}
