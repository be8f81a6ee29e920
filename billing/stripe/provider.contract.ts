/**
 * The `BillingProvider` contract (provider.ts): one suite, registered by provider.test.ts against the
 * fake Stripe (test/helpers/fake-stripe.ts) and against stripe-mock. stripe-mock validates every
 * request against Stripe's published OpenAPI spec but keeps no state and answers fixtures, so there
 * the suite checks that each call goes through (a request of the wrong shape is a 400, which fails the
 * call); what several calls leave behind is checked where a harness has `fake`.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { isDeckError } from "../../core/index.ts";
import { signWebhook, type FakeStripe } from "../../test/helpers/fake-stripe.ts";
import { METER_EVENT_NAMES, meterLookupKey, planLookupKey } from "./catalogue.ts";
import type { BillingProvider, StripePlan, UsageEvent } from "./provider.ts";
import { shouldApply } from "./webhook.ts";

export interface BillingProviderHarness {
  /** A provider talking to this Stripe; `secretKey` replaces the harness's valid key. */
  connect(options?: { secretKey?: string; maxNetworkRetries?: number }): BillingProvider;
  /** The fake's state and Stripe-side helpers, when this Stripe keeps state; null for stripe-mock. */
  fake: FakeStripe | null;
  close(): Promise<void>;
}

/** deck's default plans, written out as Stripe needs them (cents; Business has unlimited build minutes). */
export const FREE: StripePlan = {
  code: "free", name: "Free", monthlyCents: 0,
  meters: [
    { meter: "build_minutes", unitCentsDecimal: "1", freeUnits: 100 },
    { meter: "bandwidth_gb", unitCentsDecimal: "10", freeUnits: 100 },
    { meter: "storage_gb_month", unitCentsDecimal: "2", freeUnits: 0 },
    { meter: "custom_domains", unitCentsDecimal: "500", freeUnits: 0 },
  ],
};
export const PRO: StripePlan = {
  code: "pro", name: "Pro", monthlyCents: 2000,
  meters: [
    { meter: "build_minutes", unitCentsDecimal: "1", freeUnits: 1000 },
    { meter: "bandwidth_gb", unitCentsDecimal: "10", freeUnits: 1000 },
    { meter: "storage_gb_month", unitCentsDecimal: "2", freeUnits: 0 },
    { meter: "custom_domains", unitCentsDecimal: "500", freeUnits: 0 },
  ],
};
export const BUSINESS: StripePlan = {
  code: "business", name: "Business", monthlyCents: 9900,
  meters: [
    { meter: "build_minutes", unitCentsDecimal: "1", freeUnits: null },
    { meter: "bandwidth_gb", unitCentsDecimal: "10", freeUnits: 10_000 },
    { meter: "storage_gb_month", unitCentsDecimal: "2", freeUnits: 0 },
    { meter: "custom_domains", unitCentsDecimal: "500", freeUnits: 0 },
  ],
};

const WEBHOOK_SECRET = "whsec_deck_contract";
const nowSeconds = () => Math.floor(Date.now() / 1000);
let orgCounter = 0;
/** A deck org of this run: ids differ between runs, so a Stripe that keeps state never mixes them. */
const newOrg = (name: string) => ({ orgId: `${process.pid}-${Date.now()}-${++orgCounter}`, orgName: name, email: `billing+${orgCounter}@example.test` });

export function describeBillingProviderContract(name: string, setup: () => Promise<BillingProviderHarness>, options: { skip?: string } = {}): void {
  describe(`BillingProvider contract: ${name}`, { skip: options.skip ?? false }, () => {
    let harness: BillingProviderHarness | undefined;
    let shared: BillingProvider | undefined;
    async function start(): Promise<{ provider: BillingProvider; fake: FakeStripe | null; h: BillingProviderHarness }> {
      harness ??= await setup();
      shared ??= harness.connect();
      return { provider: shared, fake: harness.fake, h: harness };
    }
    after(async () => {
      await harness?.close();
    });

    it("makes a meter per usage meter and a price per plan and meter, and a second run makes nothing new", async () => {
      const { provider, fake } = await start();
      const first = await provider.ensureCatalogue([FREE, PRO, BUSINESS]);
      for (const plan of [FREE, PRO, BUSINESS]) {
        assert.match(first.plans[plan.code].priceId, /^price_/);
        for (const m of plan.meters) assert.match(first.plans[plan.code].meterPriceIds[m.meter] ?? "", /^price_/, `${plan.code} ${m.meter}`);
      }
      for (const m of PRO.meters) assert.ok(first.meters[m.meter], `a meter for ${m.meter}`);
      if (!fake) return;

      const meters = fake.state.meters.filter((m) => m.status === "active").map((m) => [m.event_name, m.default_aggregation.formula]);
      assert.deepEqual(meters.sort(), Object.values(METER_EVENT_NAMES).map((n) => [n, "sum"]).sort());
      const byKey = (key: string) => fake.state.prices.find((p) => p.lookup_key === key);
      const proFee = byKey(planLookupKey("pro"));
      assert.deepEqual([proFee?.unit_amount, proFee?.currency, proFee?.recurring], [2000, "usd", { interval: "month", interval_count: 1, meter: null, usage_type: "licensed" }]);
      assert.equal(byKey(planLookupKey("free"))?.unit_amount, 0, "the Free plan's fee is a $0 price");
      const bandwidth = byKey(meterLookupKey("pro", "bandwidth_gb"));
      assert.equal(bandwidth?.recurring.meter, first.meters.bandwidth_gb);
      assert.deepEqual(bandwidth?.tiers.map((t: any) => [t.up_to, t.unit_amount_decimal]), [[1000, "0"], [null, "10"]], "1,000 GB free, then 10 cents a GB");
      const storage = byKey(meterLookupKey("pro", "storage_gb_month"));
      assert.deepEqual([storage?.billing_scheme, storage?.unit_amount_decimal], ["per_unit", "2"], "no storage allowance: 2 cents a GB-month from the first");
      const unlimited = byKey(meterLookupKey("business", "build_minutes"));
      assert.deepEqual([unlimited?.billing_scheme, unlimited?.unit_amount], ["per_unit", 0], "Business build minutes are never charged");

      const created = fake.requests.filter((r) => r.method === "POST").length;
      const second = await provider.ensureCatalogue([FREE, PRO, BUSINESS]);
      assert.deepEqual(second, first);
      assert.equal(fake.requests.filter((r) => r.method === "POST").length, created, "nothing created the second time");
    });

    it("reactivates a deck meter someone deactivated instead of making a second one", async () => {
      const { provider, fake } = await start();
      if (!fake) return; // stripe-mock lists one fixture meter, never deck's
      const before = await provider.ensureCatalogue([PRO]);
      const meter = fake.state.meters.find((m) => m.id === before.meters.storage_gb_month)!;
      meter.status = "inactive";
      const afterReactivation = await provider.ensureCatalogue([PRO]);
      assert.equal(afterReactivation.meters.storage_gb_month, meter.id);
      assert.equal(meter.status, "active");
      assert.equal(fake.state.meters.filter((m) => m.event_name === METER_EVENT_NAMES.storage_gb_month).length, 1);
    });

    it("replaces a price whose amounts changed, moving its lookup key and keeping its product", async () => {
      const { provider, fake } = await start();
      const plan: StripePlan = { ...PRO, code: `custom${process.pid}${Date.now()}`, name: "Enterprise (Acme)", monthlyCents: 50_000 };
      const before = await provider.ensureCatalogue([plan]);
      const raised: StripePlan = { ...plan, monthlyCents: 60_000, meters: plan.meters.map((m) => (m.meter === "bandwidth_gb" ? { ...m, freeUnits: 5000 } : m)) };
      const afterChange = await provider.ensureCatalogue([raised]);
      assert.match(afterChange.plans[plan.code].priceId, /^price_/);
      if (!fake) return;
      assert.notEqual(afterChange.plans[plan.code].priceId, before.plans[plan.code].priceId);
      assert.notEqual(afterChange.plans[plan.code].meterPriceIds.bandwidth_gb, before.plans[plan.code].meterPriceIds.bandwidth_gb);
      assert.equal(afterChange.plans[plan.code].meterPriceIds.build_minutes, before.plans[plan.code].meterPriceIds.build_minutes, "an unchanged meter price stays");
      const oldFee = fake.state.prices.find((p) => p.id === before.plans[plan.code].priceId);
      const newFee = fake.state.prices.find((p) => p.id === afterChange.plans[plan.code].priceId);
      assert.deepEqual([oldFee?.lookup_key, newFee?.lookup_key, newFee?.unit_amount], [null, planLookupKey(plan.code), 60_000]);
      assert.equal(newFee?.product, oldFee?.product);
    });

    it("finds an org's customer again instead of making a second one, and keeps its name and e-mail current", async () => {
      const { provider, fake } = await start();
      const org = newOrg("Acme");
      const id = await provider.ensureCustomer(org);
      assert.match(id, /^cus_/);
      if (!fake) return;
      assert.equal(await provider.ensureCustomer(org), id);
      assert.equal(await provider.ensureCustomer({ ...org, orgName: "Acme Inc." }), id);
      const mine = fake.state.customers.filter((c) => c.metadata.deck_org_id === org.orgId);
      assert.deepEqual(mine.map((c) => [c.id, c.name, c.email]), [[id, "Acme Inc.", org.email]]);
    });

    it("subscribes a customer to a plan, then changes the same subscription with proration", async () => {
      const { provider, fake } = await start();
      const customer = await provider.ensureCustomer(newOrg("Globex"));
      const first = await provider.setSubscription(customer, FREE);
      assert.match(first.subscriptionId, /^sub_/);
      assert.equal(typeof first.status, "string");
      const prorationDate = nowSeconds() - 60;
      const changed = await provider.setSubscription(customer, PRO, { prorationDate });
      assert.match(changed.subscriptionId, /^sub_/);
      if (!fake) return;
      assert.equal(changed.subscriptionId, first.subscriptionId, "one subscription per customer");
      const catalogue = await provider.ensureCatalogue([PRO]);
      const subscription = fake.state.subscriptions.find((s) => s.id === first.subscriptionId);
      const prices = subscription?.items.data.map((i: any) => i.price.id).sort();
      assert.deepEqual(prices, [catalogue.plans.pro.priceId, ...Object.values(catalogue.plans.pro.meterPriceIds)].sort());
      const [created] = fake.paramsOf("POST", "/v1/subscriptions").slice(-1);
      assert.deepEqual(created.billing_cycle_anchor_config, { day_of_month: "1", hour: "0", minute: "0", second: "0" }, "periods start on the 1st, 00:00 UTC, as deck's do");
      const [update] = fake.paramsOf("POST", `/v1/subscriptions/${first.subscriptionId}`);
      assert.deepEqual([update.proration_behavior, update.proration_date], ["create_prorations", String(prorationDate)]);

      const updates = fake.paramsOf("POST", `/v1/subscriptions/${first.subscriptionId}`).length;
      await provider.setSubscription(customer, PRO);
      assert.equal(fake.paramsOf("POST", `/v1/subscriptions/${first.subscriptionId}`).length, updates, "already on the plan: no change sent");
      assert.equal(fake.state.subscriptions.filter((s) => s.customer === customer).length, 1);
    });

    it("reports usage to the meters; a repeated batch is counted once", async () => {
      const { provider, fake } = await start();
      await provider.ensureCatalogue([PRO]);
      const customer = await provider.ensureCustomer(newOrg("Initech"));
      await provider.setSubscription(customer, PRO);
      const tag = `${process.pid}-${Date.now()}`;
      const events: UsageEvent[] = [
        { identifier: `${tag}-build`, meter: "build_minutes", customerId: customer, value: 12.5, timestamp: nowSeconds() - 3600 },
        { identifier: `${tag}-bw`, meter: "bandwidth_gb", customerId: customer, value: 0.000123, timestamp: nowSeconds() - 60 },
        { identifier: `${tag}-dom`, meter: "custom_domains", customerId: customer, value: 2, timestamp: nowSeconds() },
      ];
      const report = await provider.reportUsage(events);
      assert.deepEqual(report, { accepted: events.map((e) => e.identifier), rejected: [], failed: [] });
      if (!fake) return;
      const retry = await provider.reportUsage(events);
      assert.deepEqual(retry.accepted.sort(), events.map((e) => e.identifier).sort(), "a retry of the same events is not an error");
      const stored = fake.state.meterEvents.filter((e) => e.identifier.startsWith(tag));
      assert.deepEqual(stored.map((e) => [e.event_name, e.payload.stripe_customer_id, e.payload.value]).sort(), [
        ["deck_bandwidth_gb", customer, "0.000123"],
        ["deck_build_minutes", customer, "12.5"],
        ["deck_custom_domains", customer, "2"],
      ]);
    });

    it("reports what Stripe refused without stopping the rest of the batch", async () => {
      const { provider, fake } = await start();
      if (!fake) return; // stripe-mock accepts any well-formed event
      const customer = await provider.ensureCustomer(newOrg("Umbrella"));
      const tag = `${process.pid}-${Date.now()}-refused`;
      const old: UsageEvent = { identifier: `${tag}-old`, meter: "build_minutes", customerId: customer, value: 3, timestamp: nowSeconds() - 40 * 86_400 };
      const good: UsageEvent = { identifier: `${tag}-good`, meter: "build_minutes", customerId: customer, value: 3, timestamp: nowSeconds() };
      const twice: UsageEvent = { ...good, value: 4 };
      const report = await provider.reportUsage([old, good]);
      assert.deepEqual(report.accepted, [good.identifier]);
      assert.deepEqual(report.rejected.map((r) => [r.identifier, r.status]), [[old.identifier, 400]]);
      const again = await provider.reportUsage([twice]);
      assert.deepEqual([again.accepted, again.rejected.map((r) => r.identifier)], [[], [good.identifier]], "the same identifier with another value is refused, not counted");
      assert.deepEqual(fake.state.meterEvents.filter((e) => e.identifier.startsWith(tag)).map((e) => e.payload.value), ["3"]);
    });

    it("reports events Stripe failed on as failed, to be sent again", async () => {
      const { h, fake } = await start();
      if (!fake) return;
      const provider = h.connect({ maxNetworkRetries: 0 });
      const customer = await provider.ensureCustomer(newOrg("Hooli"));
      const tag = `${process.pid}-${Date.now()}-outage`;
      fake.failWhen((r) => (r.path === "/v1/billing/meter_events" && r.params.identifier === `${tag}-down` ? 503 : undefined));
      const report = await provider.reportUsage([
        { identifier: `${tag}-down`, meter: "bandwidth_gb", customerId: customer, value: 1, timestamp: nowSeconds() },
        { identifier: `${tag}-up`, meter: "bandwidth_gb", customerId: customer, value: 1, timestamp: nowSeconds() },
      ]);
      assert.deepEqual([report.accepted, report.failed.map((f) => f.identifier), report.rejected], [[`${tag}-up`], [`${tag}-down`], []]);
    });

    it("opens a checkout page that saves a payment method, and a billing portal page", async () => {
      const { provider, fake } = await start();
      const customer = await provider.ensureCustomer(newOrg("Soylent"));
      const checkout = await provider.checkoutLink(customer, "https://deck.example.test/orgs/soylent/billing");
      const portal = await provider.portalLink(customer, "https://deck.example.test/orgs/soylent/billing");
      assert.match(checkout, /^https:\/\//);
      assert.match(portal, /^https:\/\//);
      if (!fake) return;
      const session = fake.state.checkoutSessions.find((s) => s.url === checkout);
      assert.deepEqual([session?.mode, session?.customer, session?.success_url], ["setup", customer, "https://deck.example.test/orgs/soylent/billing"]);
      assert.equal(fake.state.portalSessions.find((s) => s.url === portal)?.customer, customer);
    });

    it("makes the card saved at checkout the one the customer's invoices charge", async () => {
      const { provider, fake } = await start();
      if (!fake) return; // needs a checkout that was completed
      const customer = await provider.ensureCustomer(newOrg("Wonka"));
      const link = await provider.checkoutLink(customer, "https://deck.example.test/billing");
      const session = fake.completeCheckout(fake.state.checkoutSessions.find((s) => s.url === link)!.id);
      const payload = JSON.stringify(fake.event("checkout.session.completed", session));
      const parsed = provider.parseWebhook(payload, signWebhook(payload, WEBHOOK_SECRET), WEBHOOK_SECRET);
      assert.ok(parsed.ok && parsed.intent.kind === "payment_method", JSON.stringify(parsed));
      await provider.useSavedPaymentMethod(parsed.intent.customerId, parsed.intent.setupIntentId);
      const intent = fake.state.setupIntents.find((s) => s.id === session.setup_intent);
      assert.equal(fake.state.customers.find((c) => c.id === customer)?.invoice_settings.default_payment_method, intent?.payment_method);
    });

    it("links deck's invoice to Stripe's invoice for the same customer and period, once Stripe issued it", async () => {
      const { provider, fake } = await start();
      const customer = await provider.ensureCustomer(newOrg("Stark"));
      // Last month: Stripe issues a period's invoice once the period is over.
      const today = new Date();
      const month = { start: Date.UTC(today.getUTCFullYear(), today.getUTCMonth() - 1, 1) / 1000, end: Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), 1) / 1000 };
      const deckInvoice = {
        number: `DECK-${Date.now()}`, periodStart: new Date(month.start * 1000).toISOString(), periodEnd: new Date(month.end * 1000).toISOString(),
        lines: [{ description: "Pro plan", amountCents: 2000 }],
      };
      const early = await provider.syncInvoice(customer, deckInvoice);
      if (!fake) {
        assert.equal(typeof early.ok, "boolean");
        return;
      }
      assert.deepEqual(early, { ok: false, reason: "no_stripe_invoice" });
      await provider.setSubscription(customer, PRO);
      fake.issueInvoice({ customer, periodStart: month.start - 86_400 * 28, periodEnd: month.start, amountDue: 2000 }); // the month before's
      // The subscription began on the 10th, so Stripe's period starts then.
      const issued = fake.issueInvoice({ customer, periodStart: month.start + 9 * 86_400, periodEnd: month.end, amountDue: 2412 });
      const link = await provider.syncInvoice(customer, deckInvoice);
      assert.deepEqual(link, { ok: true, stripeInvoiceId: issued.id, hostedUrl: issued.hosted_invoice_url, status: "open", amountDueCents: 2412 });
      assert.equal(fake.state.invoices.find((i) => i.id === issued.id)?.metadata.deck_invoice, deckInvoice.number);
      assert.deepEqual(fake.state.invoices.filter((i) => i.customer === customer && i.metadata.deck_invoice).map((i) => i.id), [issued.id], "the month before's invoice is left alone");
      const updates = fake.requests.filter((r) => r.method === "POST" && r.path === `/v1/invoices/${issued.id}`).length;
      await provider.syncInvoice(customer, deckInvoice);
      assert.equal(fake.requests.filter((r) => r.method === "POST" && r.path === `/v1/invoices/${issued.id}`).length, updates, "already linked: nothing sent");
    });

    it("answers a key Stripe refuses with stripe_refused, and an outage with stripe_unavailable", async () => {
      const { h, fake } = await start();
      const refused = await h.connect({ secretKey: "not-a-stripe-key" }).ensureCustomer(newOrg("Refused")).then(() => null, (e: unknown) => e);
      assert.ok(isDeckError(refused) && refused.code === "stripe_refused", String(refused));
      if (!fake) return;
      const provider = h.connect({ maxNetworkRetries: 0 });
      fake.failWhen((r) => (r.path === "/v1/billing_portal/sessions" ? 500 : undefined));
      const customer = await provider.ensureCustomer(newOrg("Outage"));
      const down = await provider.portalLink(customer, "https://deck.example.test/").then(() => null, (e: unknown) => e);
      assert.ok(isDeckError(down) && down.code === "stripe_unavailable", String(down));
    });

    describe("webhooks", () => {
      const invoice = (status: string, extra: Record<string, unknown> = {}) => ({
        id: "in_contract1", object: "invoice", customer: "cus_contract1", status, period_start: 1801440000, period_end: 1803859200,
        amount_due: 2412, hosted_invoice_url: "https://invoice.stripe.com/i/in_contract1", metadata: { deck_invoice: "DECK-2027-02-0001" }, ...extra,
      });
      const signed = (event: Record<string, unknown>) => {
        const payload = JSON.stringify(event);
        return { payload, header: signWebhook(payload, WEBHOOK_SECRET) };
      };
      const event = (id: string, type: string, object: Record<string, unknown>, created: number) => ({ id, object: "event", created, livemode: false, type, data: { object }, api_version: "2026-10-28.endive", pending_webhooks: 1, request: null });

      it("reads a paid invoice, naming deck's invoice and the period it bills", async () => {
        const { provider } = await start();
        const { payload, header } = signed(event("evt_paid", "invoice.paid", invoice("paid"), 1803862800));
        assert.deepEqual(provider.parseWebhook(Buffer.from(payload), header, WEBHOOK_SECRET), {
          ok: true,
          event: { id: "evt_paid", created: 1803862800, type: "invoice.paid", livemode: false },
          intent: {
            kind: "invoice", stripeInvoiceId: "in_contract1", customerId: "cus_contract1", status: "paid", deckInvoice: "DECK-2027-02-0001",
            periodStart: 1801440000, periodEnd: 1803859200, amountDueCents: 2412, hostedUrl: "https://invoice.stripe.com/i/in_contract1", at: 1803862800,
          },
        });
      });

      it("refuses a body whose signature does not match, or signed with another secret", async () => {
        const { provider } = await start();
        const { payload, header } = signed(event("evt_x", "invoice.paid", invoice("paid"), nowSeconds()));
        const tampered = payload.replace('"amount_due":2412', '"amount_due":1');
        const results = [
          provider.parseWebhook(tampered, header, WEBHOOK_SECRET),
          provider.parseWebhook(payload, header, "whsec_another"),
          provider.parseWebhook(payload, "", WEBHOOK_SECRET),
          provider.parseWebhook(payload, signWebhook(payload, WEBHOOK_SECRET, nowSeconds() - 3600), WEBHOOK_SECRET),
        ];
        for (const r of results) assert.equal(r.ok, false, JSON.stringify(r));
        for (const r of results) assert.ok(!r.ok && r.error.length > 0);
      });

      it("reads a subscription change with the plan from its fee price's lookup key", async () => {
        const { provider } = await start();
        const subscription = {
          id: "sub_contract1", object: "subscription", customer: "cus_contract1", status: "active",
          items: { object: "list", data: [
            { id: "si_1", object: "subscription_item", price: { id: "price_m", object: "price", lookup_key: meterLookupKey("business", "build_minutes"), recurring: { interval: "month", usage_type: "metered", meter: "mtr_1" } } },
            { id: "si_2", object: "subscription_item", price: { id: "price_f", object: "price", lookup_key: planLookupKey("business"), recurring: { interval: "month", usage_type: "licensed", meter: null } } },
          ] },
        };
        const { payload, header } = signed(event("evt_sub", "customer.subscription.updated", subscription, 1800000000));
        const result = provider.parseWebhook(payload, header, WEBHOOK_SECRET);
        assert.deepEqual(result.ok && result.intent, { kind: "subscription", subscriptionId: "sub_contract1", customerId: "cus_contract1", status: "active", planCode: "business", at: 1800000000 });
      });

      it("ignores events deck does not act on, and invoices still in draft", async () => {
        const { provider } = await start();
        for (const [type, object] of [["customer.created", { id: "cus_1", object: "customer" }], ["invoice.created", invoice("draft")]] as const) {
          const { payload, header } = signed(event("evt_i", type, object, nowSeconds()));
          const result = provider.parseWebhook(payload, header, WEBHOOK_SECRET);
          assert.deepEqual(result.ok && result.intent, { kind: "ignored", type });
        }
      });

      it("keeps a paid invoice paid when an older 'open' event arrives after it", async () => {
        const { provider } = await start();
        const paid = signed(event("evt_2", "invoice.paid", invoice("paid"), 1803862800));
        const open = signed(event("evt_1", "invoice.finalized", invoice("open"), 1803859300));
        const results = [paid, open].map((e) => provider.parseWebhook(e.payload, e.header, WEBHOOK_SECRET));
        // What a caller keeps per invoice: the status and the event time that set it.
        let held: { status: string; at: number } | null = null;
        const applied: string[] = [];
        for (const r of results) {
          assert.ok(r.ok && r.intent.kind === "invoice");
          const incoming = { status: r.intent.status, at: r.intent.at };
          if (shouldApply(held, incoming)) {
            held = incoming;
            applied.push(r.event.id);
          }
        }
        assert.deepEqual([held, applied], [{ status: "paid", at: 1803862800 }, ["evt_2"]]);
      });

      it("gives a redelivered event the same id, which the caller records to act once", async () => {
        const { provider } = await start();
        const e = event("evt_again", "invoice.voided", invoice("void"), 1803862800);
        const first = provider.parseWebhook(signed(e).payload, signed(e).header, WEBHOOK_SECRET);
        const redelivered = signed(e); // Stripe signs each delivery anew
        const second = provider.parseWebhook(redelivered.payload, redelivered.header, WEBHOOK_SECRET);
        assert.ok(first.ok && second.ok);
        assert.deepEqual([first.event.id, second.event.id], ["evt_again", "evt_again"]);
        assert.deepEqual(second.intent, first.intent);
      });
    });
  });
}
