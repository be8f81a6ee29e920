/**
 * Billing end to end against a real deck server: the plans, an org's plan changed by its owner (and
 * refused to anyone else), Enterprise terms set by a platform admin, over SSH and the API; a Free org
 * whose pushes stop at its build minutes until it upgrades, and the month closed into an invoice read
 * as a person would (its PDF through pdftotext).
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { addUser, apiClient, deckDatabaseUrl, gitAs, queryDeckDatabase, type Api, type TestUser } from "./helpers/accounts.ts";
import { Deck, makeRepo, nodeApp, run } from "./helpers/deck.ts";

describe("billing", () => {
  let deck: Deck;
  let work: string;
  let api: Api;
  let owner: TestUser;
  let member: TestUser;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), "deck-billing-"));
    deck = await Deck.start({ backend: { name: "embedded" } });
    api = apiClient(deck);
    assert.equal((await api("POST", "/orgs", { slug: "acme", name: "Acme & Co" })).status, 201);
    owner = await addUser(api, work, { email: "owner@acme.test", org: "acme", role: "owner" });
    member = await addUser(api, work, { email: "dev@acme.test", org: "acme", role: "member" });
  });
  after(async () => {
    await deck?.stop();
    await rm(work, { recursive: true, force: true });
  });

  const sshAs = async (user: TestUser | null, command: string) => deck.ssh(command, user ? { keyFile: user.keyFile } : {});

  it("lists the plans with their fees, allowances and the prices beyond them", async () => {
    const r = await sshAs(member, "billing:plans");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^free\s+Free\s+\$0\.00\/mo\s+100 min\s+100 GB$/m);
    assert.match(r.stdout, /^pro\s+Pro\s+\$20\.00\/mo\s+1,000 min\s+1,000 GB$/m);
    assert.match(r.stdout, /^business\s+Business\s+\$99\.00\/mo\s+unlimited\s+10,000 GB$/m);
    assert.match(r.stdout, /^enterprise\s+Enterprise\s+custom\s+0 min\s+0 GB$/m);
    assert.match(r.stdout, /^beyond a plan: build minutes \$0\.01\/min, bandwidth \$0\.10\/GB, storage \$0\.02\/GB-month, custom domains \$5\.00\/domain-month$/m);
    const json = await api("GET", "/billing/plans", undefined, { token: member.apiToken });
    assert.equal(json.status, 200);
    assert.deepEqual((json.json.items as Array<{ code: string }>).map((p) => p.code), ["free", "pro", "business", "enterprise"]);
  });

  it("an org starts on Free; its owner moves it to Pro, a member may not, and the history keeps both", async () => {
    const start = await sshAs(owner, "billing:plan acme");
    assert.equal(start.code, 0, start.stderr);
    const notForMembers = await sshAs(member, "billing:plan acme");
    assert.match(notForMembers.stderr.trim(), /^deck: error \(forbidden\): permission denied: reading acme's billing needs the admin or owner role$/);
    assert.match(start.stdout, /^acme: Free since \d{4}-\d\d-\d\d — \$0\.00\/month; 100 min build minutes, 100 GB bandwidth included$/m);

    const denied = await sshAs(member, "billing:plan acme pro");
    assert.equal(denied.code, 1);
    assert.match(denied.stderr.trim(), /^deck: error \(forbidden\): permission denied: billing:manage in acme needs the owner role$/);

    const unknown = await sshAs(owner, "billing:plan acme gold");
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /there is no plan "gold"; plans: free, pro, business, enterprise/);

    const up = await sshAs(owner, "billing:plan acme pro");
    assert.equal(up.code, 0, up.stderr);
    assert.match(up.stdout, /^acme is on Pro from now — \$20\.00\/month; 1,000 min build minutes, 1,000 GB bandwidth included$/m);
    const again = await sshAs(owner, "billing:plan acme pro");
    assert.match(again.stdout, /^acme is already on Pro$/m);
    // A lower fee waits for the month's end, so no plan is worn for a moment; choosing Pro again cancels it.
    const down = await sshAs(owner, "billing:plan acme free");
    assert.equal(down.code, 0, down.stderr);
    assert.match(down.stdout, /^acme moves to free when the month ends \(\d{4}-\d\d-01\); until then it stays on Pro$/m);
    assert.match((await sshAs(owner, "billing:plan acme")).stdout, /^moves to free on \d{4}-\d\d-01$/m);
    const keep = await sshAs(owner, "billing:plan acme pro");
    assert.match(keep.stdout, /^acme stays on Pro$/m);
    assert.doesNotMatch((await sshAs(owner, "billing:plan acme")).stdout, /moves to/);
    const v = await api("GET", "/orgs/acme/billing/plan", undefined, { token: owner.apiToken });
    assert.equal(v.status, 200);
    assert.deepEqual((v.json.history as Array<{ plan: string }>).map((h) => h.plan), ["free", "pro"]);
    assert.equal((v.json.plan as { code: string }).code, "pro");
    const pay = await sshAs(owner, "billing:pay acme");
    assert.match(pay.stderr.trim(), /^deck: error \(not_found\): deck has no Stripe account configured \(STRIPE_SECRET_KEY\); invoices are paid as a platform admin records them$/);
  });

  it("Enterprise terms are set per org, by a platform admin only", async () => {
    const byOwner = await sshAs(owner, `billing:plan acme enterprise {"monthlyCents":50000}`);
    assert.equal(byOwner.code, 1);
    assert.match(byOwner.stderr, /only a platform admin may put an organisation on Enterprise/);
    const noTerms = await sshAs(null, "billing:plan acme enterprise");
    assert.match(noTerms.stderr, /Enterprise needs the organisation's terms as JSON/);
    const badTerms = await api("PUT", "/orgs/acme/billing/plan", { plan: "enterprise", terms: { monthlyCents: -5 } });
    assert.equal(badTerms.status, 400, badTerms.text);
    const set = await api("PUT", "/orgs/acme/billing/plan", { plan: "enterprise", terms: { monthlyCents: 50_000, allowances: { build_minutes: null, bandwidth_gb: 50_000 } } });
    assert.equal(set.status, 200, set.text);
    const shown = await sshAs(owner, "billing:plan acme");
    assert.match(shown.stdout, /^acme: Enterprise since .* — \$500\.00\/month; unlimited build minutes, 50,000 GB bandwidth included$/m);
  });

  it("a Free org's push stops at its build minutes with one line; after an upgrade it builds; the month closes into an invoice", async () => {
    // Free includes 3 seconds of building here, so one build uses it up.
    const plans = (await api("GET", "/billing/plans")).json.items as Array<{ code: string }>;
    assert.equal(plans.length, 4);
    const catalogue = {
      currency: "usd", prices: { build_minutes: 1, bandwidth_gb: 10, storage_gb_month: 2, custom_domains: 500 },
      plans: [
        { code: "free", name: "Free", monthlyCents: 0, allowances: { build_minutes: 0.05, bandwidth_gb: 100 } },
        { code: "pro", name: "Pro", monthlyCents: 2000, allowances: { build_minutes: 1000, bandwidth_gb: 1000 } },
        { code: "business", name: "Business", monthlyCents: 9900, allowances: { build_minutes: null, bandwidth_gb: 10000 } },
        { code: "enterprise", name: "Enterprise", monthlyCents: 0, allowances: {}, custom: true },
      ],
    };
    const byMember = await api("PUT", "/billing/catalogue", catalogue, { token: member.apiToken });
    assert.equal(byMember.status, 403, "only a platform admin sets the catalogue");
    const memberArgs = deck.sshArgs();
    memberArgs[1] = member.keyFile;
    const memberSsh = await run("ssh", [...memberArgs, "deck@127.0.0.1", "billing:catalogue:set"], { input: JSON.stringify(catalogue) });
    assert.match(memberSsh.stderr.trim(), /^deck: error \(forbidden\): permission denied: only a platform admin may set the billing catalogue$/);
    const set = await run("ssh", [...deck.sshArgs(), "deck@127.0.0.1", "billing:catalogue:set"], { input: JSON.stringify(catalogue) });
    assert.equal(set.stdout.trim(), "the catalogue has 4 plan(s): free, pro, business, enterprise", set.stderr);
    const inForce = JSON.parse((await deck.ssh("billing:catalogue")).stdout) as { plans: Array<{ code: string; allowances: Record<string, number> }> };
    assert.equal(inForce.plans[0]!.allowances.build_minutes, 0.05);

    assert.equal((await api("POST", "/orgs", { slug: "lean", name: "Lean Ltd" })).status, 201);
    const founder = await addUser(api, work, { email: "founder@lean.test", org: "lean", role: "owner" });
    const repo = await makeRepo(join(work, "thrifty"), nodeApp("v1", { buildScript: "node -e \"setTimeout(() => {}, 3500)\"" }));
    const first = await gitAs(deck, founder, repo, { op: "push", via: "ssh", app: "thrifty" });
    assert.equal(first.code, 0, first.stderr);
    assert.match((await deck.get("thrifty")).body, /^v1 /);

    await writeFile(join(repo, "server.js"), (await readFile(join(repo, "server.js"), "utf8")).replace(/v1/g, "v2"));
    await run("git", ["-C", repo, "commit", "-qam", "v2"]);
    const refused = await gitAs(deck, founder, repo, { op: "push", via: "ssh", app: "thrifty" });
    assert.notEqual(refused.code, 0, "the push is refused");
    assert.match(refused.stderr, /remote: -----> Deploy failed: lean has used \d+\.\d of the 0\.05 build minutes its Free plan includes this month; an owner can upgrade with billing:plan lean pro \(billing:plans lists the plans\)/);
    assert.match((await deck.get("thrifty")).body, /^v1 /, "the live app is untouched");

    const upgrade = await deck.ssh("billing:plan lean pro", { keyFile: founder.keyFile });
    assert.equal(upgrade.code, 0, upgrade.stderr);
    const second = await gitAs(deck, founder, repo, { op: "push", via: "ssh", app: "thrifty" });
    assert.equal(second.code, 0, second.stderr);
    assert.match((await deck.get("thrifty")).body, /^v2 /);

    const usage = await deck.ssh("billing:usage lean", { keyFile: founder.keyFile });
    assert.equal(usage.code, 0, usage.stderr);
    assert.match(usage.stdout, /^lean on Pro, /m);
    assert.match(usage.stdout, /^so far \$\d+\.\d\d; forecast for the month \$\d+\.\d\d$/m);
    assert.match(usage.stdout, /^Build minutes\s+0\.\d+ min\s+/m);
    assert.match(usage.stdout, /^thrifty\s+\$\d+\.\d\d\s+\$\d+\.\d\d$/m);

    // A month passes: the org's history moves back a month, and a platform admin closes that month.
    const url = deckDatabaseUrl(deck, { name: "embedded" });
    const [org] = await queryDeckDatabase<{ id: string }>(url, "SELECT id FROM organizations WHERE slug = 'lean'");
    // The ledger takes in each build on its next round: both builds are in it before history moves.
    for (const until = Date.now() + 30_000; Date.now() < until;) {
      const [n] = await queryDeckDatabase<{ count: string }>(url, "SELECT count(*) FROM usage_records WHERE org_id = $1 AND meter = 'build_seconds'", [org!.id]);
      if (Number(n!.count) >= 2) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    await queryDeckDatabase(url, "UPDATE organizations SET created_at = created_at - interval '1 month' WHERE id = $1", [org!.id]);
    await queryDeckDatabase(url, "UPDATE subscriptions SET starts_at = starts_at - interval '1 month' WHERE org_id = $1", [org!.id]);
    await queryDeckDatabase(url, "UPDATE usage_records SET at = at - interval '1 month' WHERE org_id = $1", [org!.id]);
    const now = new Date();
    const month = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1)).toISOString().slice(0, 7);
    const notAdmin = await deck.ssh(`billing:close lean ${month}`, { keyFile: founder.keyFile });
    assert.match(notAdmin.stderr, /only a platform admin may close a billing month by hand/);
    const closed = await deck.ssh(`billing:close lean ${month}`);
    assert.equal(closed.code, 0, closed.stderr);
    const m = /^(DECK-\d{4}-\d{6}) issued for lean, \d{4}-\d\d: \$(\d+\.\d\d) \(open\)$/m.exec(closed.stdout);
    assert.ok(m, closed.stdout);
    const number = m[1]!;

    const list = await deck.ssh("billing:invoices lean", { keyFile: founder.keyFile });
    assert.match(list.stdout, new RegExp(`^${number}\\s+${month}\\s+open\\s+\\$${m[2]!.replace(".", "\\.")}$`, "m"));
    const shown = await deck.ssh(`billing:invoice lean ${number}`, { keyFile: founder.keyFile });
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /Pro plan/);
    const buildLine = /^(\d+)\s+Build minutes[^\n]*Free[^\n]*\$(\d+\.\d\d)$/m.exec(shown.stdout);
    assert.ok(buildLine, `a line for the build minutes used on Free:\n${shown.stdout}`);
    const explained = await deck.ssh(`billing:explain lean ${number} ${buildLine[1]}`, { keyFile: founder.keyFile });
    assert.equal(explained.code, 0, explained.stderr);
    assert.match(explained.stdout, /^from 1 ledger entry:$/m);
    assert.match(explained.stdout, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+thrifty\s+\d+ build seconds\s+build:\d+$/m);

    // The PDF, over SSH to a file, read the way a person would.
    const pdf = join(work, "invoice.pdf");
    const args = deck.sshArgs();
    args[1] = founder.keyFile;
    await writeFile(pdf, execFileSync("ssh", [...args, "deck@127.0.0.1", `billing:invoice lean ${number} --pdf`]));
    assert.equal((await readFile(pdf)).subarray(0, 5).toString(), "%PDF-");
    const text = execFileSync("pdftotext", ["-layout", pdf, "-"], { encoding: "utf8" });
    assert.match(text, new RegExp(number));
    assert.match(text, /Lean Ltd/);
    assert.match(text, new RegExp(`\\$${m[2]!.replace(".", "\\.")}`));

    // Without Stripe, a platform admin records the payment.
    assert.match((await deck.ssh(`billing:mark lean ${number} paid`, { keyFile: founder.keyFile })).stderr, /only a platform admin/);
    const paid = await deck.ssh(`billing:mark lean ${number} paid`);
    assert.equal(paid.stdout.trim(), `${number} is paid`);
    const again = await deck.ssh(`billing:mark lean ${number} void`);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /paid/);
  });
});
