/**
 * Stripe's webhooks applied to deck's invoices and billing accounts, against a real PostgreSQL and the
 * fake Stripe (test/helpers/fake-stripe.ts), events signed the way Stripe signs them.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { toMonthlyPeriod } from "../../core/index.ts";
import { addMember, findInvoice, insertOrganization, insertPlanChange, insertUser, loadBillingAccount, q } from "../../store/queries/index.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../../test/helpers/database.ts";
import { signWebhook, startFakeStripe, type FakeStripe } from "../../test/helpers/fake-stripe.ts";
import { closePeriod } from "../invoices/index.ts";
import { createStripeProvider } from "../stripe/index.ts";
import { StripeSync } from "./index.ts";

const SECRET = "whsec_deck_webhook_test";
const unix = (iso: string) => Date.parse(iso) / 1000;

for (const backend of await databaseBackends()) {
  describe(`Stripe webhooks (${backend.name} PostgreSQL)`, () => {
    let t: TestDatabase;
    let fake: FakeStripe;
    let sync: StripeSync;
    const logs: string[] = [];
    let setupIntentsDown = false;

    const newSync = (webhookSecret: string | null) => new StripeSync({
      db: t.db.pool,
      provider: createStripeProvider({ secretKey: fake.secretKey, host: fake.host, port: fake.port, protocol: fake.protocol, maxNetworkRetries: 0 }),
      webhookSecret,
      log: (line) => logs.push(line),
    });

    before(async () => {
      t = await openTestDatabase(backend);
      fake = await startFakeStripe();
      fake.failWhen((r) => (setupIntentsDown && r.path.startsWith("/v1/setup_intents/") ? 503 : undefined));
      sync = newSync(SECRET);
    });
    after(async () => {
      await fake?.close();
      await t?.cleanup();
    });

    const deliver = (event: object, secret = SECRET) => {
      const payload = JSON.stringify(event);
      return sync.handleWebhook(payload, signWebhook(payload, secret));
    };
    const countEvents = async () => Number(await t.db.pool.oneFirst(q`SELECT count(*) FROM stripe_events`));

    /** An org on Pro since December 2025, a Stripe customer, with deck's invoice for `month` when asked. */
    const newOrg = async (slug: string): Promise<{ orgId: number; customerId: string }> => {
      const db = t.db.pool;
      const org = await insertOrganization(db, { name: `${slug} Ltd`, slug });
      const owner = await insertUser(db, { email: `owner@${slug}.test`, isAdmin: false });
      await addMember(db, org.id, owner.id, "owner");
      await db.query(q`UPDATE organizations SET created_at = '2025-12-01T00:00:00Z' WHERE id = ${org.id}`);
      await insertPlanChange(db, { orgId: org.id, plan: "pro", startsAt: new Date("2025-12-01T00:00:00Z"), createdBy: null });
      const synced = await sync.onPlanChanged(org.id);
      if (!synced.ok) throw synced.error;
      return { orgId: org.id, customerId: synced.customerId };
    };
    const closeMonth = async (orgId: number, month: string) => {
      const r = await closePeriod(t.db.pool, { orgId, period: toMonthlyPeriod(`${month}-01T00:00:00Z`), now: new Date() });
      assert.equal(r.outcome, "opened");
      return (r as { invoice: { number: string } }).invoice.number;
    };
    /** Stripe's invoice for the month (Stripe bills a month's usage when it ends). */
    const stripeInvoice = (customer: string, month: string, status: "open" | "paid" = "open") => {
      const period = toMonthlyPeriod(`${month}-01T00:00:00Z`);
      return fake.issueInvoice({ customer, periodStart: unix(period.start), periodEnd: unix(period.end), amountDue: 2000, status });
    };

    it("refuses a delivery not signed with deck's secret, in one line, and records nothing", async () => {
      const event = fake.event("invoice.paid", { object: "invoice", id: "in_x", customer: "cus_x", status: "paid" });
      const forged = await deliver(event, "whsec_someone_else");
      assert.equal(forged.status, 400);
      assert.equal(forged.body.ok, false);
      assert.match((forged.body as { error: string }).error, /^the webhook is not signed with deck's STRIPE_WEBHOOK_SECRET: [^\n]+$/);
      const unsigned = await sync.handleWebhook(JSON.stringify(event), undefined);
      assert.deepEqual(unsigned, { status: 400, body: { ok: false, error: "no Stripe-Signature header: deck takes only webhooks Stripe signed" } });
      const payload = JSON.stringify(event);
      const withoutSecret = await newSync(null).handleWebhook(payload, signWebhook(payload, SECRET));
      assert.equal(withoutSecret.status, 400);
      assert.match((withoutSecret.body as { error: string }).error, /^deck has no Stripe webhook signing secret configured \(STRIPE_WEBHOOK_SECRET\)/);
      assert.equal(await countEvents(), 0);
    });

    it("invoice.paid for the org's month marks deck's invoice paid and links it; the same delivery again changes nothing", async () => {
      const { orgId, customerId } = await newOrg("paying");
      const number = await closeMonth(orgId, "2026-01");
      const invoice = stripeInvoice(customerId, "2026-01", "paid");
      const paid = fake.event("invoice.paid", invoice);
      const r = await deliver(paid);
      assert.equal(r.status, 200);
      assert.deepEqual(r.body, { ok: true, result: `${number} is now paid (Stripe invoice ${invoice.id} is paid)` });
      const deck = await findInvoice(t.db.pool, { number });
      assert.equal(deck?.status, "paid");
      assert.equal(deck?.stripeInvoiceId, invoice.id);
      assert.equal(deck?.hostedUrl, invoice.hosted_invoice_url);
      assert.ok(deck?.paidAt);

      assert.deepEqual(await deliver(paid), { status: 200, body: { ok: true, duplicate: true } });
      assert.equal((await findInvoice(t.db.pool, { number }))?.paidAt, deck?.paidAt);

      // invoice.finalized (open) was sent before invoice.paid but arrives after it: deck's invoice stays paid.
      const finalized = fake.event("invoice.finalized", { ...invoice, status: "open" }, paid.created - 30);
      const late = await deliver(finalized);
      assert.equal(late.status, 200);
      assert.match((late.body as { result: string }).result, new RegExp(`^Stripe invoice ${invoice.id} stays paid `));
      assert.equal((await findInvoice(t.db.pool, { number }))?.status, "paid");
    });

    it("a Stripe invoice that comes before deck closed the month is linked, and applied, by the next billing round", async () => {
      const { orgId, customerId } = await newOrg("early");
      const invoice = stripeInvoice(customerId, "2026-02", "paid");
      const r = await deliver(fake.event("invoice.paid", invoice));
      assert.deepEqual(r.body, { ok: true, result: `Stripe invoice ${invoice.id} is paid; deck has no invoice for the month ending 2026-03-01 yet, and links it once it does` });
      const number = await closeMonth(orgId, "2026-02");
      assert.equal((await findInvoice(t.db.pool, { number }))?.status, "open");
      const round = await sync.tick();
      assert.equal(round.invoicesLinked, 1);
      const deck = await findInvoice(t.db.pool, { number });
      assert.equal(deck?.status, "paid");
      assert.equal(deck?.stripeInvoiceId, invoice.id);
      assert.equal((await sync.tick()).invoicesLinked, 0, "linked once");
    });

    it("an invoice Stripe gives up on is uncollectible in deck too, until it is paid late", async () => {
      const { orgId, customerId } = await newOrg("slow-payer");
      const number = await closeMonth(orgId, "2026-01");
      const invoice = stripeInvoice(customerId, "2026-01");
      const at = Math.floor(Date.now() / 1000);
      await deliver(fake.event("invoice.finalized", invoice, at));
      assert.equal((await findInvoice(t.db.pool, { number }))?.status, "open");
      await deliver(fake.event("invoice.marked_uncollectible", { ...invoice, status: "uncollectible" }, at + 60));
      assert.equal((await findInvoice(t.db.pool, { number }))?.status, "uncollectible");
      await deliver(fake.event("invoice.paid", { ...invoice, status: "paid" }, at + 120));
      assert.equal((await findInvoice(t.db.pool, { number }))?.status, "paid");
    });

    it("keeps the newest subscription status: an older event does not override it", async () => {
      const { orgId, customerId } = await newOrg("subscribed");
      const subscription = fake.state.subscriptions.find((s) => s.customer === customerId)!;
      const at = Math.floor(Date.now() / 1000) + 10;
      await deliver(fake.event("customer.subscription.updated", { ...subscription, status: "past_due" }, at));
      assert.equal((await loadBillingAccount(t.db.pool, orgId)).stripeStatus, "past_due");
      const older = await deliver(fake.event("customer.subscription.updated", { ...subscription, status: "active" }, at - 5));
      assert.match((older.body as { result: string }).result, /stays past_due: this active is from an older event$/);
      assert.equal((await loadBillingAccount(t.db.pool, orgId)).stripeStatus, "past_due");
      await deliver(fake.event("customer.subscription.updated", { ...subscription, status: "active" }, at + 5));
      const account = await loadBillingAccount(t.db.pool, orgId);
      assert.equal(account.stripeStatus, "active");
      assert.equal(account.stripeStatusAt, new Date((at + 5) * 1000).toISOString());
    });

    it("makes the card saved at checkout the one the org's invoices charge; if Stripe fails meanwhile, answers 500 and applies it when Stripe sends it again", async () => {
      const { orgId, customerId } = await newOrg("carded");
      const url = await sync.paymentLink(orgId, "https://deck.example.com/billing");
      const session = fake.completeCheckout(fake.state.checkoutSessions.find((s) => s.url === url)!.id);
      const completed = fake.event("checkout.session.completed", session);
      setupIntentsDown = true;
      const failed = await deliver(completed);
      setupIntentsDown = false;
      assert.equal(failed.status, 500);
      assert.equal(fake.state.customers.find((c) => c.id === customerId)?.invoice_settings.default_payment_method, null);
      const again = await deliver(completed);
      assert.equal(again.status, 200);
      assert.equal(again.body.ok && "duplicate" in again.body, false, "not taken for a repeat: the failed delivery left no trace");
      const intent = fake.state.setupIntents.find((s) => s.id === session.setup_intent)!;
      assert.equal(fake.state.customers.find((c) => c.id === customerId)?.invoice_settings.default_payment_method, intent.payment_method);
      assert.ok(logs.some((l) => l.startsWith(`stripe: webhook ${completed.id} (checkout.session.completed) not applied; Stripe sends it again:`)), logs.join("\n"));
    });

    it("acknowledges events it has nothing to do with", async () => {
      const stranger = await deliver(fake.event("invoice.paid", fake.issueInvoice({ customer: "cus_not_deck", periodStart: 0, periodEnd: 1, amountDue: 1, status: "paid" })));
      assert.deepEqual(stranger.body, { ok: true, result: "customer cus_not_deck is no deck organisation's; ignored" });
      const other = await deliver(fake.event("charge.refunded", { object: "charge", id: "ch_1" }));
      assert.deepEqual(other.body, { ok: true, result: "deck does not act on charge.refunded" });
    });
  });
}
