import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { addUser, apiClient, deckDatabaseUrl, gitAs, queryDeckDatabase, type Api, type TestUser } from "./helpers/accounts.ts";
import { embeddedBackendOnly } from "./helpers/database.ts";
import { commitFiles, Deck, makeRepo, nodeApp } from "./helpers/deck.ts";

/**
 * What a platform admin uses to support users and run the business, through a real server: one user
 * with their orgs, apps and recent troubles; every organisation with its plan and counts; the billing
 * overview (revenue, recurring revenue, an overdue invoice, this month's usage); and viewing deck as
 * a user (read-only, audited once). Non-admins are refused each of them.
 */

const backends = embeddedBackendOnly();
const VIEW_AS = "x-deck-view-as";
const userPath = (email: string) => `/users/${encodeURIComponent(email)}`;

for (const backend of backends) {
  describe(`support and business views for platform admins (${backend.name} PostgreSQL)`, () => {
    let deck: Deck;
    let api: Api;
    let work: string;
    let db: string;
    let alice: TestUser;
    let bob: TestUser;
    let carol: TestUser;

    before(async () => {
      work = await mkdtemp(join(tmpdir(), "deck-support-"));
      deck = await Deck.start({ backend });
      api = apiClient(deck);
      db = deckDatabaseUrl(deck, backend);
      // alice owns alpha (alpha-web, whose first push fails), bob owns beta (beta-api, deployed),
      // carol is a viewer in alpha.
      alice = await addUser(api, work, { email: "alice@example.com" });
      bob = await addUser(api, work, { email: "bob@example.com" });
      carol = await addUser(api, work, { email: "carol@example.com" });
      for (const [user, org, app] of [[alice, "alpha", "alpha-web"], [bob, "beta", "beta-api"]] as const) {
        assert.equal((await api("POST", "/orgs", { slug: org }, { token: user.accessToken })).status, 201);
        assert.equal((await api("POST", "/apps", { name: app }, { token: user.accessToken })).status, 201);
      }
      assert.equal((await api("PUT", "/orgs/alpha/members", { email: carol.email, role: "viewer" }, { token: alice.accessToken })).status, 200);
      const docs = await makeRepo(join(work, "alpha-web"), { "README.md": "only words here\n" });
      assert.notEqual((await gitAs(deck, alice, docs, { op: "push", via: "ssh", app: "alpha-web" })).code, 0, "a repository no buildpack recognises is refused");
      const web = await makeRepo(join(work, "beta-api"), nodeApp("v1"));
      const push = await gitAs(deck, bob, web, { op: "push", via: "ssh", app: "beta-api" });
      assert.equal(push.code, 0, push.stderr);
      // carol tries what a viewer may not, and mistypes her password.
      assert.equal((await api("PATCH", "/apps/alpha-web/config", { set: { GREETING: "hi" } }, { token: carol.accessToken })).status, 403);
      assert.equal((await api("POST", "/session", { email: carol.email, password: "not-her-password" }, { token: null })).status, 401);
    });

    after(async () => {
      await deck?.stop();
      if (work) await rm(work, { recursive: true, force: true });
    });

    it("shows one user with their orgs, apps and what went wrong lately, to platform admins only", async () => {
      const a = await api("GET", userPath(alice.email));
      assert.equal(a.status, 200, a.text);
      assert.equal(a.json.email, alice.email);
      assert.equal(a.json.isAdmin, false);
      assert.equal(a.json.suspendedAt, null);
      assert.equal(a.json.mfaEnabled, false);
      assert.deepEqual(a.json.orgs, [{ slug: "alpha", role: "owner" }]);
      assert.deepEqual(a.json.apps.map((x: { name: string; org: string }) => [x.name, x.org]), [["alpha-web", "alpha"]]);
      assert.equal(a.json.keys, 1);
      assert.equal(a.json.tokens, 1);
      assert.ok(Date.now() - Date.parse(a.json.lastSignInAt) < 10 * 60_000, `signed in a moment ago: ${a.json.lastSignInAt}`);
      const deploy = a.json.recentErrors.find((e: { kind: string }) => e.kind === "deploy");
      assert.ok(deploy, `the failed deploy is listed: ${a.text}`);
      assert.equal(deploy.app, "alpha-web");
      assert.match(deploy.message, /^deploy failed: /);

      const c = await api("GET", userPath(carol.email));
      assert.equal(c.status, 200, c.text);
      assert.deepEqual(c.json.orgs, [{ slug: "alpha", role: "viewer" }]);
      const kinds = c.json.recentErrors.map((e: { kind: string }) => e.kind);
      const denied = c.json.recentErrors.find((e: { kind: string }) => e.kind === "denied");
      assert.ok(denied, `the denied change is listed: ${c.text}`);
      assert.equal(denied.app, "alpha-web");
      assert.equal(denied.message, "permission denied: config:set on alpha-web");
      const signIn = c.json.recentErrors.find((e: { kind: string }) => e.kind === "sign-in");
      assert.equal(signIn?.message, "password sign-in failed: wrong email or password");
      assert.ok(kinds.indexOf("sign-in") < kinds.indexOf("denied"), "newest first: the sign-in came after the denied change");
      const times = c.json.recentErrors.map((e: { at: string }) => Date.parse(e.at));
      assert.deepEqual(times, [...times].sort((x, y) => y - x));

      const me = await api("GET", "/users/me", undefined, { token: alice.accessToken });
      assert.equal(me.status, 200);
      assert.equal(me.json.email, alice.email, "GET /users/me is still the caller");
      const missing = await api("GET", userPath("nobody@example.com"));
      assert.equal(missing.status, 404);
      for (const token of [alice.accessToken, alice.apiToken]) {
        const refused = await api("GET", userPath(bob.email), undefined, { token });
        assert.equal(refused.status, 403);
        assert.equal(refused.json.error.message, "permission denied: only platform admins look users up");
      }
    });

    it("lists every organisation with its plan and counts for platform admins; anyone else sees their own", async () => {
      const all = await api("GET", "/orgs?all=true");
      assert.equal(all.status, 200, all.text);
      const bySlug = Object.fromEntries(all.json.items.map((o: { slug: string }) => [o.slug, o]));
      assert.deepEqual(Object.keys(bySlug).sort(), ["alpha", "beta", "default"]);
      assert.deepEqual({ ...bySlug.alpha, createdAt: undefined }, { slug: "alpha", name: "alpha", plan: "free", members: 2, apps: 1, createdAt: undefined });
      assert.equal(bySlug.beta.members, 1);
      assert.equal(bySlug.beta.apps, 1);
      assert.ok(!Number.isNaN(Date.parse(bySlug.beta.createdAt)));

      const own = await api("GET", "/orgs", undefined, { token: alice.accessToken });
      assert.equal(own.status, 200);
      assert.deepEqual(own.json.items.map((o: { slug: string; role: string }) => [o.slug, o.role]), [["alpha", "owner"]]);
      const refused = await api("GET", "/orgs?all=true", undefined, { token: alice.accessToken });
      assert.equal(refused.status, 403);
      assert.equal(refused.json.error.message, "permission denied: only platform admins list every organisation");
    });

    it("sums up billing: recurring revenue by plan, revenue paid this month, an overdue invoice and this month's usage", async () => {
      assert.equal((await api("PUT", "/orgs/alpha/billing/plan", { plan: "pro" }, { token: alice.accessToken })).status, 200);
      const business = await deck.ssh("billing:plan beta business");
      assert.equal(business.code, 0, business.stderr);

      // The ledger takes in beta's build on its next round: wait for it rather than for a fixed time.
      let now = await api("GET", "/billing/overview");
      for (const until = Date.now() + 30_000; Date.now() < until; now = await api("GET", "/billing/overview")) {
        if (now.status !== 200 || now.json.topUsage.some((u: { org: string; buildMinutes: number }) => u.org === "beta" && u.buildMinutes > 0)) break;
        await new Promise((r) => setTimeout(r, 500));
      }
      assert.equal(now.status, 200, now.text);
      assert.equal(now.json.currency, "usd");
      assert.equal(now.json.mrrCents, 2000 + 9900);
      const plans = Object.fromEntries(now.json.subscriptions.map((s: { plan: string }) => [s.plan, s]));
      assert.deepEqual(plans.pro, { plan: "pro", orgs: 1, mrrCents: 2000 });
      assert.deepEqual(plans.business, { plan: "business", orgs: 1, mrrCents: 9900 });
      assert.deepEqual(plans.free, { plan: "free", orgs: 1, mrrCents: 0 });
      assert.equal(now.json.period.start, `${new Date().toISOString().slice(0, 7)}-01T00:00:00.000Z`);
      const beta = now.json.topUsage.find((u: { org: string }) => u.org === "beta");
      assert.ok(beta, `beta's build is this month's usage: ${now.text}`);
      assert.equal(beta.plan, "business");
      assert.ok(beta.buildMinutes > 0, JSON.stringify(beta));

      // A month passes for alpha and beta; last month is invoiced; alpha pays, beta's invoice goes unpaid for 40 days.
      for (const slug of ["alpha", "beta"]) {
        const [org] = await queryDeckDatabase<{ id: string }>(db, "SELECT id FROM organizations WHERE slug = $1", [slug]);
        await queryDeckDatabase(db, "UPDATE organizations SET created_at = created_at - interval '1 month' WHERE id = $1", [org!.id]);
        await queryDeckDatabase(db, "UPDATE subscriptions SET starts_at = starts_at - interval '1 month' WHERE org_id = $1", [org!.id]);
      }
      const today = new Date();
      const month = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth() - 1, 1)).toISOString().slice(0, 7);
      const numbers: Record<string, { number: string; cents: number }> = {};
      for (const slug of ["alpha", "beta"]) {
        const closed = await deck.ssh(`billing:close ${slug} ${month}`);
        assert.equal(closed.code, 0, closed.stderr);
        const m = /^(DECK-\d{4}-\d{6}) issued for \S+, \d{4}-\d\d: \$(\d+)\.(\d\d) \(open\)$/m.exec(closed.stdout);
        assert.ok(m, closed.stdout);
        numbers[slug] = { number: m[1]!, cents: Number(m[2]) * 100 + Number(m[3]) };
      }
      assert.equal((await deck.ssh(`billing:mark alpha ${numbers.alpha!.number} paid`)).code, 0);
      await queryDeckDatabase(db, "UPDATE invoices SET opened_at = now() - interval '40 days' WHERE number = $1", [numbers.beta!.number]);

      const later = await api("GET", "/billing/overview");
      assert.equal(later.status, 200, later.text);
      assert.equal(later.json.revenueCents, numbers.alpha!.cents);
      assert.equal(later.json.mrrCents, 2000 + 9900, "the plans in force now are unchanged");
      // On business since last month, beta has paid for this month so far what billing:usage says.
      const estimate = later.json.topUsage.find((u: { org: string }) => u.org === "beta").estimateCents;
      const usage = await api("GET", "/orgs/beta/billing/usage");
      assert.equal(usage.status, 200, usage.text);
      assert.ok(Math.abs(estimate - usage.json.soFarCents) <= 1, `the estimate is what billing:usage says so far: ${estimate} vs ${usage.json.soFarCents}`);
      if (Date.now() - Date.parse(later.json.period.start) > 10 * 60_000) assert.ok(estimate > 0, "the business fee accrues");
      assert.equal(later.json.overdue.length, 1, later.text);
      const overdue = later.json.overdue[0];
      assert.deepEqual({ org: overdue.org, number: overdue.number, totalCents: overdue.totalCents, status: overdue.status, daysOverdue: overdue.daysOverdue },
        { org: "beta", number: numbers.beta!.number, totalCents: numbers.beta!.cents, status: "open", daysOverdue: 10 });
      assert.ok(Math.abs(Date.parse(overdue.dueAt) - (Date.now() - 10 * 86_400_000)) < 60_000, `due 30 days after it was issued: ${overdue.dueAt}`);

      const refused = await api("GET", "/billing/overview", undefined, { token: alice.accessToken });
      assert.equal(refused.status, 403);
      assert.equal(refused.json.error.message, "permission denied: only platform admins see the billing overview");
    });

    it("lets a platform admin view deck as a user, read-only, audited once", async () => {
      const as = (email: string) => ({ headers: { [VIEW_AS]: email } });
      const apps = await api("GET", "/apps", undefined, as(alice.email));
      assert.equal(apps.status, 200, apps.text);
      assert.deepEqual(apps.json.items.map((a: { name: string }) => a.name), ["alpha-web"]);
      const me = await api("GET", "/users/me", undefined, as(alice.email));
      assert.equal(me.json.email, alice.email);
      assert.deepEqual(me.json.scopes, ["read", "deploy"]);
      const orgs = await api("GET", "/orgs", undefined, as(carol.email));
      assert.deepEqual(orgs.json.items.map((o: { slug: string; role: string }) => [o.slug, o.role]), [["alpha", "viewer"]]);
      assert.equal((await api("GET", "/apps/beta-api", undefined, as(alice.email))).status, 404, "another org's app is hidden as it is from alice");
      const logs = await api("GET", "/apps/alpha-web/logs", undefined, as(alice.email));
      assert.equal(logs.status, 200, `the owner's logs are shown: ${logs.text}`);

      // What carol's role may not read is refused as it would be for her, but written down against
      // the admin who looked: carol tried nothing.
      const carolLogs = await api("GET", "/apps/alpha-web/logs", undefined, as(carol.email));
      assert.equal(carolLogs.status, 403, carolLogs.text);
      const refusal = await queryDeckDatabase(db, "SELECT u.email, a.data->>'viewingAs' AS viewing FROM audit_log a JOIN users u ON u.id = a.user_id WHERE a.result = 'denied' AND a.target = 'alpha-web' ORDER BY a.id DESC LIMIT 1");
      assert.deepEqual(refusal.map((r) => [r.email, r.viewing]), [["admin@example.com", carol.email]]);

      const create = await api("POST", "/apps", { name: "sneaky" }, as(alice.email));
      assert.equal(create.status, 403);
      assert.equal(create.json.error.message, "viewing as another user is read-only");
      assert.equal((await api("GET", "/apps/sneaky")).status, 404, "nothing was created");
      const byUser = await api("GET", "/apps", undefined, { token: alice.accessToken, headers: { [VIEW_AS]: bob.email } });
      assert.equal(byUser.status, 403);
      const unknown = await api("GET", "/apps", undefined, as("nobody@example.com"));
      assert.equal(unknown.status, 404);

      // The event stream, as alice: her app's deploy events, not bob's.
      const streamed: string[] = [];
      const req = http.get({ host: "127.0.0.1", port: deck.ports.api, path: "/api/v1/events", headers: { authorization: `Bearer ${deck.token}`, [VIEW_AS]: alice.email }, agent: false });
      req.on("response", (res) => {
        res.setEncoding("utf8");
        res.on("data", (c: string) => streamed.push(c));
      });
      req.on("error", () => undefined);
      try {
        const deadline = Date.now() + 10_000;
        while (Date.now() < deadline && !streamed.join("").includes(": deck events")) await new Promise((r) => setTimeout(r, 50));
        const config = await api("PATCH", "/apps/beta-api/config", { set: { GREETING: "hello" } }, { token: bob.accessToken });
        assert.equal(config.status, 200, config.text);
        const docs = join(work, "alpha-web");
        await commitFiles(docs, { "README.md": "more words\n" }, "more docs");
        assert.notEqual((await gitAs(deck, alice, docs, { op: "push", via: "ssh", app: "alpha-web" })).code, 0);
        const until = Date.now() + 10_000;
        while (Date.now() < until && !streamed.join("").includes('"app":"alpha-web"')) await new Promise((r) => setTimeout(r, 50));
        const text = streamed.join("");
        assert.match(text, /event: deploy\ndata: \{"app":"alpha-web"/);
        assert.doesNotMatch(text, /beta-api/, "bob's app is not alice's to see");
      } finally {
        req.destroy();
      }

      const rows = await queryDeckDatabase(db, "SELECT u.email, a.target FROM audit_log a JOIN users u ON u.id = a.user_id WHERE a.action = 'support:view-as' AND a.result = 'ok' ORDER BY a.id");
      assert.deepEqual(rows.map((r) => [r.email, r.target]), [
        ["admin@example.com", `user:${alice.email}`],
        ["admin@example.com", `user:${carol.email}`],
      ], "one entry per admin and user, however many requests");
      const refused = await queryDeckDatabase(db, "SELECT u.email, a.target, a.data->>'method' AS method FROM audit_log a JOIN users u ON u.id = a.user_id WHERE a.action = 'support:view-as' AND a.result = 'denied' ORDER BY a.id");
      assert.deepEqual(refused.map((r) => [r.email, r.target, r.method]), [
        ["admin@example.com", `user:${alice.email}`, "POST"],
        [alice.email, `user:${bob.email}`, "GET"],
      ], "each refused try is written down");
    });
  });
}
