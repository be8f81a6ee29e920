/**
 * deck's plans and usage reaching Stripe, against a real PostgreSQL and the stateful fake Stripe
 * (test/helpers/fake-stripe.ts): what Stripe ends up holding is read from the fake's state and the
 * requests deck sent it.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  addMember, insertOrganization, insertPlanChange, insertUser, loadBillingAccount, planHistoryOf, q, recordUsage, type NewUsageEntry,
} from "../../store/queries/index.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../../test/helpers/database.ts";
import { startFakeStripe, type FakeStripe } from "../../test/helpers/fake-stripe.ts";
import { createStripeProvider } from "../stripe/index.ts";
import { StripeSync, type StripeSyncOptions } from "./index.ts";

const HOUR = 3_600_000;

/** Hours and days of the UTC month `at` falls in, counted from the calendar. */
function monthLength(at: Date): { hours: number; days: number } {
  const ms = Date.UTC(at.getUTCFullYear(), at.getUTCMonth() + 1, 1) - Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), 1);
  return { hours: ms / HOUR, days: ms / (24 * HOUR) };
}

for (const backend of await databaseBackends()) {
  describe(`deck's plans and usage in Stripe (${backend.name} PostgreSQL)`, () => {
    let t: TestDatabase;
    let fake: FakeStripe;
    let sync: StripeSync;
    const logs: string[] = [];
    /** Turned on by a test to make the fake fail what it matches; every test turns its own off again. */
    const outage = { subscriptions: false, prices: false, meterEvent: new Map<string, number>() };

    const newSync = (extra: Partial<StripeSyncOptions> = {}) => new StripeSync({
      db: t.db.pool,
      provider: createStripeProvider({ secretKey: fake.secretKey, host: fake.host, port: fake.port, protocol: fake.protocol, maxNetworkRetries: 0 }),
      webhookSecret: null,
      log: (line) => logs.push(line),
      ...extra,
    });

    before(async () => {
      t = await openTestDatabase(backend);
      fake = await startFakeStripe();
      fake.failWhen((r) => {
        if (outage.subscriptions && r.method === "POST" && r.path.startsWith("/v1/subscriptions")) return 503;
        if (outage.prices && r.path === "/v1/prices") return 503;
        return r.path === "/v1/billing/meter_events" ? outage.meterEvent.get(String(r.params.identifier)) : undefined;
      });
      sync = newSync();
    });
    after(async () => {
      await fake?.close();
      await t?.cleanup();
    });

    /** An org with an owner (who joined after a member: the owner is still the one billed). */
    const newOrg = async (slug: string): Promise<number> => {
      const db = t.db.pool;
      const org = await insertOrganization(db, { name: `${slug} & Co`, slug });
      const member = await insertUser(db, { email: `dev@${slug}.test`, isAdmin: false });
      const owner = await insertUser(db, { email: `boss@${slug}.test`, isAdmin: false });
      await addMember(db, org.id, member.id, "member");
      await addMember(db, org.id, owner.id, "owner");
      return org.id;
    };
    const customerOf = (orgId: number) => fake.state.customers.filter((c) => c.metadata?.deck_org_id === String(orgId));
    const subscriptionsOf = (customerId: string) => fake.state.subscriptions.filter((s) => s.customer === customerId);
    const lookupKeys = (subscription: Record<string, any>) => (subscription.items.data as Array<{ price: { lookup_key: string } }>).map((i) => i.price.lookup_key).sort();

    it("a plan change makes the org a Stripe customer, billed to its owner, with one subscription on the plan", async () => {
      const orgId = await newOrg("acme");
      await insertPlanChange(t.db.pool, { orgId, plan: "pro", createdBy: null });
      const r = await sync.onPlanChanged(orgId);
      assert.equal(r.ok, true, r.ok ? "" : r.error.message);
      const customers = customerOf(orgId);
      assert.equal(customers.length, 1);
      assert.equal(customers[0].name, "acme & Co");
      assert.equal(customers[0].email, "boss@acme.test");
      const subscriptions = subscriptionsOf(customers[0].id);
      assert.equal(subscriptions.length, 1);
      assert.deepEqual(lookupKeys(subscriptions[0]), [
        "deck_plan_pro", "deck_plan_pro_bandwidth_gb", "deck_plan_pro_build_minutes", "deck_plan_pro_custom_domains", "deck_plan_pro_storage_gb_month",
      ]);
      const fee = subscriptions[0].items.data.find((i: { price: { lookup_key: string } }) => i.price.lookup_key === "deck_plan_pro").price;
      assert.equal(fee.unit_amount, 2000);
      const account = await loadBillingAccount(t.db.pool, orgId);
      assert.equal(account.stripeCustomerId, customers[0].id);
      assert.equal(account.stripeSubscriptionId, subscriptions[0].id);
      assert.equal(account.stripeStatus, "active");

      // Moving to Business changes that subscription, prorated from the second deck changed the plan.
      const change = await insertPlanChange(t.db.pool, { orgId, plan: "business", createdBy: null });
      assert.equal((await sync.onPlanChanged(orgId)).ok, true);
      assert.equal(subscriptionsOf(customers[0].id).length, 1);
      assert.ok(lookupKeys(subscriptionsOf(customers[0].id)[0]).includes("deck_plan_business"));
      assert.ok(!lookupKeys(subscriptionsOf(customers[0].id)[0]).includes("deck_plan_pro"));
      const update = fake.paramsOf("POST", new RegExp(`^/v1/subscriptions/${subscriptions[0].id}$`)).at(-1)!;
      assert.equal(update.proration_behavior, "create_prorations");
      assert.equal(update.proration_date, String(Math.floor(Date.parse(change.from) / 1000)));
    });

    it("gives an Enterprise org prices of its own terms", async () => {
      const orgId = await newOrg("bigco");
      const terms = { code: "enterprise", name: "Enterprise", monthlyCents: 50_000, allowances: { build_minutes: null, bandwidth_gb: 50_000 }, custom: true };
      await insertPlanChange(t.db.pool, { orgId, plan: "enterprise", customPlan: terms, createdBy: null });
      assert.equal((await sync.onPlanChanged(orgId)).ok, true);
      const [subscription] = subscriptionsOf(customerOf(orgId)[0].id);
      const code = `enterprise-org${orgId}`;
      assert.ok(lookupKeys(subscription).includes(`deck_plan_${code}`), lookupKeys(subscription).join(" "));
      const fee = fake.state.prices.find((p) => p.lookup_key === `deck_plan_${code}` && p.active);
      assert.equal(fee?.unit_amount, 50_000);
    });

    it("keeps the plan change when Stripe fails, says so once, and puts it in Stripe at the next billing round", async () => {
      const orgId = await newOrg("retry");
      await insertPlanChange(t.db.pool, { orgId, plan: "business", createdBy: null });
      outage.subscriptions = true;
      logs.length = 0;
      const r = await sync.onPlanChanged(orgId);
      assert.equal(r.ok, false);
      await sync.onPlanChanged(orgId);
      assert.equal((await planHistoryOf(t.db.pool, orgId)).at(-1)?.plan, "business", "the plan change stands");
      assert.equal(logs.filter((l) => l.includes("could not put retry on plan business in Stripe")).length, 1, logs.join("\n"));
      const [customer] = customerOf(orgId);
      assert.deepEqual(subscriptionsOf(customer.id), []);

      outage.subscriptions = false;
      const round = await sync.tick();
      assert.ok(round.orgsSynced >= 1, JSON.stringify(round));
      const subscriptions = subscriptionsOf(customer.id);
      assert.equal(subscriptions.length, 1);
      assert.ok(lookupKeys(subscriptions[0]).includes("deck_plan_business"));
      // In step now: the next round leaves the org alone.
      const requests = fake.requests.length;
      await sync.tick();
      assert.ok(!fake.requests.slice(requests).some((r) => r.path.startsWith("/v1/subscriptions")), "no subscription call for orgs in step");
    });

    it("opens a Checkout page and the billing portal for an org, making it a customer first", async () => {
      const orgId = await newOrg("payer");
      const url = await sync.paymentLink(orgId, "https://deck.example.com/billing");
      const [customer] = customerOf(orgId);
      const session = fake.state.checkoutSessions.find((s) => s.url === url);
      assert.ok(session, url);
      assert.equal(session.customer, customer.id);
      assert.equal(session.mode, "setup");
      assert.equal(session.success_url, "https://deck.example.com/billing");
      assert.equal(subscriptionsOf(customer.id).length, 1, "on its plan (Free) already");
      const portal = await sync.portalLink(orgId, "https://deck.example.com/billing");
      assert.equal(fake.state.portalSessions.find((s) => s.url === portal)?.customer, customer.id);
    });

    describe("usage", () => {
      const entry = (key: string, orgId: number, meter: NewUsageEntry["meter"], quantity: number, at: Date): NewUsageEntry => ({ key, orgId, appId: null, app: "web", meter, quantity, at });
      const sentFor = (customerId: string) => fake.requests
        .filter((r) => r.method === "POST" && r.path === "/v1/billing/meter_events")
        .map((r) => ({ status: r.status, params: new URLSearchParams(r.body) }))
        .filter((r) => r.params.get("payload[stripe_customer_id]") === customerId)
        .map((r) => ({ status: r.status, identifier: r.params.get("identifier")!, event: r.params.get("event_name")!, value: r.params.get("payload[value]")! }));

      it("sends each entry of a subscribed org once, in its plan's units, from the moment it was subscribed", async () => {
        const orgId = await newOrg("metered");
        const loner = (await insertOrganization(t.db.pool, { name: "Nobody", slug: "nobody" })).id;
        const earlier = new Date(Date.now() - 60_000);
        assert.equal((await sync.onPlanChanged(orgId)).ok, true);
        const at = new Date();
        const month = monthLength(at);
        await recordUsage(t.db.pool, [
          entry("m:build", orgId, "build_seconds", 90, at),
          entry("m:bw", orgId, "bandwidth_bytes", 2_500_000_000, at),
          entry("m:storage", orgId, "storage_byte_hours", 2e9 * month.hours, at),
          entry("m:domain", orgId, "domain_days", month.days, at),
          entry("m:nothing", orgId, "build_seconds", 0, at),
          entry("m:before-subscribing", orgId, "build_seconds", 60, earlier),
          // An org Stripe cannot bill (no members, so never a customer).
          entry("m:loner", loner, "build_seconds", 60, at),
        ]);
        await sync.tick();
        await sync.tick();
        const customerId = customerOf(orgId)[0].id;
        const sent = sentFor(customerId).sort((a, b) => a.identifier.localeCompare(b.identifier));
        assert.deepEqual(sent, [
          { status: 200, identifier: "m:build", event: "deck_build_minutes", value: "1.5" },
          { status: 200, identifier: "m:bw", event: "deck_bandwidth_gb", value: "2.5" },
          { status: 200, identifier: "m:domain", event: "deck_custom_domains", value: "1" },
          { status: 200, identifier: "m:storage", event: "deck_storage_gb_month", value: "2" },
        ]);
        assert.equal(fake.paramsOf("POST", "/v1/billing/meter_events").filter((p) => String(p.identifier).startsWith("m:loner")).length, 0);
        assert.deepEqual(customerOf(loner), []);
        assert.equal(logs.filter((l) => l.includes("nobody has no members")).length, 1, "the org Stripe cannot bill is named once");
      });

      it("stops at an event Stripe cannot take and sends it next round; one Stripe refuses is logged once and never sent again", async () => {
        const orgId = await newOrg("flaky");
        assert.equal((await sync.onPlanChanged(orgId)).ok, true);
        const at = new Date();
        await recordUsage(t.db.pool, ["f:1", "f:2", "f:3", "f:4"].map((key) => entry(key, orgId, "build_seconds", 120, at)));
        outage.meterEvent.set("f:2", 503);
        outage.meterEvent.set("f:3", 400);
        logs.length = 0;
        const first = await sync.tick();
        assert.deepEqual(first.usage?.failed.map((f) => f.identifier), ["f:2"]);
        assert.equal(first.usage?.accepted, 2);
        assert.equal(logs.filter((l) => /stripe: usage: Stripe could not take 1 usage event/.test(l)).length, 1, logs.join("\n"));
        outage.meterEvent.delete("f:2");
        await sync.tick();
        await sync.tick();
        const customerId = customerOf(orgId)[0].id;
        const tries = (id: string) => sentFor(customerId).filter((s) => s.identifier === id).map((s) => s.status);
        assert.deepEqual(tries("f:1"), [200]);
        assert.deepEqual(tries("f:2"), [503, 200], "sent again after Stripe failed");
        assert.deepEqual(tries("f:3"), [400], "never sent again after Stripe refused it");
        assert.deepEqual(tries("f:4"), [200]);
        assert.equal(logs.filter((l) => /Stripe refused 1 usage event\(s\), which deck will not send again; the first, f:3: /.test(l)).length, 1, logs.join("\n"));
        assert.ok(logs.some((l) => l === "stripe: usage in step with Stripe again"), logs.join("\n"));
        outage.meterEvent.clear();
      });

      it("sends an entry whose transaction committed after later entries were sent", async () => {
        const orgId = await newOrg("late");
        assert.equal((await sync.onPlanChanged(orgId)).ok, true);
        let inserted!: () => void;
        let commit!: () => void;
        const insertedNow = new Promise<void>((resolve) => (inserted = resolve));
        const committing = new Promise<void>((resolve) => (commit = resolve));
        const slow = t.db.pool.transaction(async (tx) => {
          await recordUsage(tx, [entry("l:slow", orgId, "build_seconds", 30, new Date())]);
          inserted();
          await committing;
        });
        await insertedNow;
        await recordUsage(t.db.pool, [entry("l:quick", orgId, "build_seconds", 30, new Date())]);
        await sync.tick();
        const customerId = customerOf(orgId)[0].id;
        assert.deepEqual(sentFor(customerId).map((s) => s.identifier), ["l:quick"]);
        commit();
        await slow;
        await sync.tick();
        assert.deepEqual(sentFor(customerId).map((s) => s.identifier), ["l:quick", "l:slow"]);
      });

      it("once the cursor moves past what was sent, nothing is sent twice, and new usage still goes", async () => {
        const orgId = await newOrg("later");
        assert.equal((await sync.onPlanChanged(orgId)).ok, true);
        await recordUsage(t.db.pool, [entry("c:1", orgId, "build_seconds", 60, new Date())]);
        await sync.tick();
        // Hours on (deck's clock; Stripe's is real): the ids seen an hour ago and more are passed.
        let hoursOn = 2;
        const later = newSync({ now: () => new Date(Date.now() + hoursOn * HOUR) });
        const before = fake.requests.filter((r) => r.path === "/v1/billing/meter_events").length;
        await later.tick();
        hoursOn = 4;
        await later.tick();
        const cursor = await t.db.pool.one(q`SELECT through_id, (SELECT count(*) FROM stripe_usage_sent WHERE usage_id <= through_id)::int AS kept FROM stripe_usage_cursor`);
        assert.ok(Number(cursor.through_id) > 0, "the cursor moved");
        assert.equal(cursor.kept, 0, "marks behind the cursor are dropped");
        assert.equal(fake.requests.filter((r) => r.path === "/v1/billing/meter_events").length, before, "nothing sent again");
        await recordUsage(t.db.pool, [entry("c:2", orgId, "build_seconds", 60, new Date())]);
        await later.tick();
        assert.deepEqual(sentFor(customerOf(orgId)[0].id).map((s) => s.identifier), ["c:1", "c:2"]);
      });

      it("does not send usage older than Stripe takes, and says how much", async () => {
        const orgId = await newOrg("stale");
        assert.equal((await sync.onPlanChanged(orgId)).ok, true);
        // As if deck had been subscribed long ago and had not reported for 40 days.
        await t.db.pool.query(q`UPDATE stripe_org_sync SET usage_from = now() - interval '60 days' WHERE org_id = ${orgId}`);
        await recordUsage(t.db.pool, [entry("s:old", orgId, "build_seconds", 60, new Date(Date.now() - 40 * 24 * HOUR)), entry("s:new", orgId, "build_seconds", 60, new Date())]);
        logs.length = 0;
        await sync.tick();
        await sync.tick();
        assert.deepEqual(sentFor(customerOf(orgId)[0].id).map((s) => s.identifier), ["s:new"]);
        assert.deepEqual(logs.filter((l) => /older than the 35 days Stripe takes/.test(l)), ["stripe: 1 usage entry was older than the 35 days Stripe takes and was not sent"]);
      });
    });

    it("makes the catalogue's prices in Stripe once a server, trying again next round when Stripe fails", async () => {
      const fresh = newSync();
      outage.prices = true;
      logs.length = 0;
      await fresh.tick();
      await fresh.tick();
      assert.equal(logs.filter((l) => l.startsWith("stripe: catalogue: ")).length, 1, logs.join("\n"));
      outage.prices = false;
      await fresh.tick();
      assert.ok(logs.includes("stripe: catalogue in step with Stripe again"), logs.join("\n"));
      for (const code of ["free", "pro", "business"]) assert.ok(fake.state.prices.some((p) => p.lookup_key === `deck_plan_${code}` && p.active), code);
      const seen = fake.requests.length;
      await fresh.tick();
      assert.ok(!fake.requests.slice(seen).some((r) => r.path === "/v1/billing/meters" || r.path === "/v1/prices"), "not made again");
    });
  });
}
