/**
 * Billing with Stripe, end to end against a real deck server started with STRIPE_SECRET_KEY. No real
 * Stripe account is used: DECK_STRIPE_API_URL points deck's Stripe client at the stateful fake Stripe
 * of test/helpers/fake-stripe.ts, which this test also reads to see what deck told Stripe, and the
 * webhooks are signed with the test's own STRIPE_WEBHOOK_SECRET the way Stripe signs them.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { addUser, apiClient, deckDatabaseUrl, queryDeckDatabase, type Api, type TestUser } from "./helpers/accounts.ts";
import { Deck } from "./helpers/deck.ts";
import { signWebhook, startFakeStripe, type FakeStripe } from "./helpers/fake-stripe.ts";

const WEBHOOK_SECRET = "whsec_deck_end_to_end";

/** Waits until `probe` returns something, for what deck does in the background. */
async function waitFor<T>(what: string, probe: () => T | undefined | null, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = probe();
    if (found !== undefined && found !== null) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

describe("billing with Stripe", () => {
  let fake: FakeStripe;
  let deck: Deck;
  let work: string;
  let api: Api;
  let owner: TestUser;
  let member: TestUser;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), "deck-billing-stripe-"));
    fake = await startFakeStripe();
    deck = await Deck.start({
      backend: { name: "embedded" },
      env: {
        STRIPE_SECRET_KEY: fake.secretKey,
        STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
        DECK_STRIPE_API_URL: `http://${fake.host}:${fake.port}`,
        DECK_BILLING_INTERVAL: "1",
      },
    });
    api = apiClient(deck);
    assert.equal((await api("POST", "/orgs", { slug: "acme", name: "Acme & Co" })).status, 201);
    owner = await addUser(api, work, { email: "owner@acme.test", org: "acme", role: "owner" });
    member = await addUser(api, work, { email: "dev@acme.test", org: "acme", role: "member" });
  });
  after(async () => {
    await deck?.stop();
    await fake?.close();
    await rm(work, { recursive: true, force: true });
  });

  const acmeCustomer = () => fake.state.customers.find((c) => c.name === "Acme & Co");
  const feeOf = (subscription: Record<string, any>) => (subscription.items.data as Array<{ price: { lookup_key: string; recurring: { usage_type: string } } }>)
    .find((i) => i.price.recurring.usage_type === "licensed")?.price.lookup_key;

  it("an owner's plan change puts the org's Stripe subscription on that plan, billed to the org's first owner", async () => {
    const r = await api("PUT", "/orgs/acme/billing/plan", { plan: "pro" }, { token: owner.apiToken });
    assert.equal(r.status, 200, r.text);
    const subscription = await waitFor("acme's Stripe subscription on Pro", () => {
      const customer = acmeCustomer();
      return fake.state.subscriptions.find((s) => s.customer === customer?.id && feeOf(s) === "deck_plan_pro");
    });
    // The platform admin who made the org became its first owner.
    assert.equal(acmeCustomer()?.email, "admin@example.com");
    assert.equal(fake.state.subscriptions.filter((s) => s.customer === subscription.customer).length, 1, "one subscription per org");
  });

  it("gives an owner a Stripe Checkout page to save a card, and refuses a member", async () => {
    const denied = await api("POST", "/orgs/acme/billing/payment-link", {}, { token: member.apiToken });
    assert.equal(denied.status, 403, denied.text);
    assert.equal(denied.json.error.message, "permission denied: billing:manage in acme needs the owner role");
    const r = await api("POST", "/orgs/acme/billing/payment-link", { returnUrl: "https://deck.example.com/billing/acme" }, { token: owner.apiToken });
    assert.equal(r.status, 200, r.text);
    assert.match(r.json.url, /^https:\/\/checkout\.stripe\.com\//);
    const session = fake.state.checkoutSessions.find((s) => s.url === r.json.url);
    assert.equal(session?.customer, acmeCustomer()?.id);
    assert.equal(session?.success_url, "https://deck.example.com/billing/acme");
    // The same over SSH, and Stripe's billing portal.
    const pay = await deck.ssh("billing:pay acme", { keyFile: owner.keyFile });
    assert.equal(pay.code, 0, pay.stderr);
    assert.match(pay.stdout.trim(), /^acme: open https:\/\/checkout\.stripe\.com\/\S+$/);
    const portal = await deck.ssh("billing:pay acme --portal", { keyFile: owner.keyFile });
    assert.match(portal.stdout.trim(), /^acme: open https:\/\/\S+$/, portal.stderr);
    const refused = await deck.ssh("billing:pay acme", { keyFile: member.keyFile });
    assert.match(refused.stderr.trim(), /^deck: error \(forbidden\): permission denied: billing:manage in acme needs the owner role$/);
  });

  it("Stripe's webhook marks the month's invoice paid, once; a delivery deck did not sign for is refused", async () => {
    // A month passes: the org's history moves back a month, and a platform admin closes that month.
    const url = deckDatabaseUrl(deck, { name: "embedded" });
    const [org] = await queryDeckDatabase<{ id: string }>(url, "SELECT id FROM organizations WHERE slug = 'acme'");
    await queryDeckDatabase(url, "UPDATE organizations SET created_at = created_at - interval '1 month' WHERE id = $1", [org!.id]);
    await queryDeckDatabase(url, "UPDATE subscriptions SET starts_at = starts_at - interval '1 month' WHERE org_id = $1", [org!.id]);
    const now = new Date();
    const start = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1));
    const end = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
    const month = start.toISOString().slice(0, 7);
    const closed = await deck.ssh(`billing:close acme ${month}`);
    assert.equal(closed.code, 0, closed.stderr);
    const number = /^(DECK-\d{4}-\d{6}) issued for acme/m.exec(closed.stdout)?.[1];
    assert.ok(number, closed.stdout);

    // Stripe bills the month when it ends and charges the saved card.
    const invoice = fake.issueInvoice({ customer: acmeCustomer()!.id, periodStart: start.getTime() / 1000, periodEnd: end.getTime() / 1000, amountDue: 2000, status: "paid" });
    const payload = JSON.stringify(fake.event("invoice.paid", invoice));
    const post = (signature: string) => fetch(`http://127.0.0.1:${deck.ports.api}/api/v1/billing/stripe/webhook`, {
      method: "POST", headers: { "content-type": "application/json", "stripe-signature": signature }, body: payload,
    });

    const forged = await post(signWebhook(payload, "whsec_not_decks"));
    assert.equal(forged.status, 400);
    assert.match(((await forged.json()) as { error: string }).error, /^the webhook is not signed with deck's STRIPE_WEBHOOK_SECRET: [^\n]+$/);
    assert.match((await deck.ssh("billing:invoices acme", { keyFile: owner.keyFile })).stdout, new RegExp(`^${number}\\s+${month}\\s+open\\s`, "m"));

    const delivered = await post(signWebhook(payload, WEBHOOK_SECRET));
    assert.equal(delivered.status, 200);
    assert.deepEqual(await delivered.json(), { ok: true, result: `${number} is now paid (Stripe invoice ${invoice.id} is paid)` });
    assert.match((await deck.ssh("billing:invoices acme", { keyFile: owner.keyFile })).stdout, new RegExp(`^${number}\\s+${month}\\s+paid\\s`, "m"));

    const repeated = await post(signWebhook(payload, WEBHOOK_SECRET));
    assert.equal(repeated.status, 200);
    assert.deepEqual(await repeated.json(), { ok: true, duplicate: true });
  });
});
