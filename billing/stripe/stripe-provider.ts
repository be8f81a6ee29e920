/**
 * deck's Stripe adapter: the `BillingProvider` that collects money through Stripe. deck uses it only
 * when STRIPE_SECRET_KEY is set; without it deck still rates usage and issues its own invoices.
 *
 * # Who carries the money
 * When Stripe is on, **Stripe's subscription invoices carry the money**; deck's invoices are the
 * record of what deck rated and are linked to them, never charged a second time.
 * - Each org (a Stripe customer, metadata `deck_org_id`) has one subscription: the plan's fee price
 *   (licensed, billed monthly in advance) plus one metered price per usage meter (graduated tiers: the
 *   allowance free, then the unit price; billed in arrears). Billing periods are anchored to the 1st
 *   of the month, 00:00 UTC, the same periods deck rates. Plan changes are prorated by Stripe.
 * - An org is best subscribed when it is made, to Free: its first invoice is $0, so no card is needed.
 *   An upgrade is then a change whose prorations go on the next invoice, and a card saved through
 *   `checkoutLink` before the period ends is enough. (A new subscription to a paid plan charges at
 *   once; without a card it stays `incomplete`, and Stripe expires it after 23 hours.)
 * - deck sends its usage to Stripe's meters (`reportUsage`), converted to the plan's units.
 * - At the end of a period Stripe issues the invoice for it (that period's usage, the next period's
 *   fee and any prorations) and collects it with the card saved through `checkoutLink`.
 * - `syncInvoice` never creates a Stripe invoice: it finds the Stripe invoice of the same customer
 *   whose period ends with deck's period and stores deck's invoice number on it (metadata
 *   `deck_invoice`), so webhooks about it name deck's invoice. Until Stripe issues it, syncInvoice
 *   answers `no_stripe_invoice` and the caller tries again later (or on the invoice's webhook).
 * - The two totals need not be equal for a period: Stripe bills the fee a month in advance and deck
 *   rates it for the month it covers. Over the life of a subscription they agree.
 * - Webhooks (webhook.ts) tell deck when a Stripe invoice is paid, voided or uncollectible and when a
 *   subscription changes; the caller dedups by event id and orders by `created` (see webhook.ts).
 *
 * # Finding deck's objects again
 * Meters by event name (`deck_build_minutes`, …), prices by lookup key (`deck_plan_<code>` and
 * `deck_plan_<code>_<meter>`), customers by `metadata['deck_org_id']`. Every call can be repeated.
 */
import Stripe from "stripe";
import { DeckError } from "../../core/index.ts";
import "./errors.ts";
import {
  buildMeterParams, buildPriceParams, feeTerms, meterLookupKey, meterTerms, planLookupKey, sameTerms, termsOfPrice, METER_EVENT_NAMES, CUSTOMER_PAYLOAD_KEY, VALUE_PAYLOAD_KEY,
} from "./catalogue.ts";
import type {
  BillingProvider, CustomerInput, DeckInvoiceRef, InvoiceLink, StripeCatalogue, StripeMeter, StripePlan, SubscriptionOptions, SubscriptionResult, UsageEvent, UsageReport,
} from "./provider.ts";
import { parseWebhook } from "./webhook.ts";

export interface StripeProviderOptions {
  secretKey: string;
  /** Where the Stripe API is; tests point these at a fake Stripe or stripe-mock. */
  host?: string;
  port?: number;
  protocol?: "http" | "https";
  /** Retries of a request that failed on the network or with a 5xx / 429 (the SDK adds idempotency keys). */
  maxNetworkRetries?: number;
  timeoutMs?: number;
}

/** Meter events in flight at once: Stripe's meter event endpoint is rate limited per account. */
const USAGE_CONCURRENCY = 8;

/** Subscription statuses after which a customer has no subscription left. */
const ENDED = new Set(["canceled", "incomplete_expired"]);

export function createStripeProvider(options: StripeProviderOptions): BillingProvider {
  const stripe = new Stripe(options.secretKey, {
    ...(options.host ? { host: options.host } : {}),
    ...(options.port ? { port: options.port } : {}),
    ...(options.protocol ? { protocol: options.protocol } : {}),
    maxNetworkRetries: options.maxNetworkRetries ?? 2,
    timeout: options.timeoutMs ?? 30_000,
    appInfo: { name: "deck" },
  });

  async function ensureMeters(meters: StripeMeter[]): Promise<Partial<Record<StripeMeter, string>>> {
    const byEventName = new Map<string, Stripe.Billing.Meter>();
    for await (const meter of stripe.billing.meters.list({ limit: 100 })) {
      // An active meter wins over an inactive one of the same name (Stripe allows only one active).
      const seen = byEventName.get(meter.event_name);
      if (!seen || seen.status !== "active") byEventName.set(meter.event_name, meter);
    }
    const ids: Partial<Record<StripeMeter, string>> = {};
    for (const meter of meters) {
      const found = byEventName.get(METER_EVENT_NAMES[meter]);
      if (found && found.status !== "active") {
        ids[meter] = (await stripe.billing.meters.reactivate(found.id)).id;
      } else {
        ids[meter] = found ? found.id : (await stripe.billing.meters.create(buildMeterParams(meter))).id;
      }
    }
    return ids;
  }

  /** Active prices by lookup key (Stripe answers for at most 10 keys per request). */
  async function findPrices(keys: string[]): Promise<Map<string, Stripe.Price>> {
    const found = new Map<string, Stripe.Price>();
    for (let i = 0; i < keys.length; i += 10) {
      const chunk = keys.slice(i, i + 10);
      const page = await stripe.prices.list({ lookup_keys: chunk, active: true, limit: 100, expand: ["data.tiers"] });
      // Filtered again here: a price only counts when its key is exactly one deck asked for.
      for (const price of page.data) if (price.lookup_key && chunk.includes(price.lookup_key)) found.set(price.lookup_key, price);
    }
    return found;
  }

  async function ensureCatalogue(plans: StripePlan[]): Promise<StripeCatalogue> {
    const used = [...new Set(plans.flatMap((p) => p.meters.map((m) => m.meter)))];
    const meters = await ensureMeters(used);
    const keys = plans.flatMap((p) => [planLookupKey(p.code), ...p.meters.map((m) => meterLookupKey(p.code, m.meter))]);
    const existing = await findPrices(keys);

    async function ensurePrice(plan: StripePlan, lookupKey: string, terms: ReturnType<typeof feeTerms>, meter?: StripeMeter): Promise<string> {
      const price = existing.get(lookupKey);
      if (price && sameTerms(termsOfPrice(price), terms)) return price.id;
      const productId = price ? (typeof price.product === "string" ? price.product : price.product.id) : null;
      const created = await stripe.prices.create(buildPriceParams({ plan, lookupKey, terms, productId, ...(meter ? { meter } : {}) }));
      return created.id;
    }

    const catalogue: StripeCatalogue = { meters, plans: {} };
    for (const plan of plans) {
      const priceId = await ensurePrice(plan, planLookupKey(plan.code), feeTerms(plan));
      const meterPriceIds: Partial<Record<StripeMeter, string>> = {};
      for (const spec of plan.meters) {
        meterPriceIds[spec.meter] = await ensurePrice(plan, meterLookupKey(plan.code, spec.meter), meterTerms(spec, meters[spec.meter]!), spec.meter);
      }
      catalogue.plans[plan.code] = { priceId, meterPriceIds };
    }
    return catalogue;
  }

  async function ensureCustomer(input: CustomerInput): Promise<string> {
    const orgId = String(input.orgId);
    if (!/^[A-Za-z0-9_-]+$/.test(orgId)) throw new Error(`org id ${JSON.stringify(orgId)} cannot be used in a Stripe search`);
    const found = await stripe.customers.search({ query: `metadata['deck_org_id']:'${orgId}'`, limit: 1 });
    const customer = found.data.find((c) => c.metadata?.deck_org_id === orgId);
    if (customer) {
      if (customer.name !== input.orgName || customer.email !== input.email) await stripe.customers.update(customer.id, { name: input.orgName, email: input.email });
      return customer.id;
    }
    // Search lags creation by up to a minute; the idempotency key makes a quick second call get the same customer.
    const created = await stripe.customers.create(
      { name: input.orgName, email: input.email, metadata: { deck_org_id: orgId } },
      { idempotencyKey: `deck-customer-${orgId}` },
    );
    return created.id;
  }

  async function setSubscription(customerId: string, plan: StripePlan, options: SubscriptionOptions = {}): Promise<SubscriptionResult> {
    const catalogue = await ensureCatalogue([plan]);
    const prices = catalogue.plans[plan.code];
    const subscriptions = await stripe.subscriptions.list({ customer: customerId, status: "all", limit: 10 });
    const current = subscriptions.data.find((s) => !ENDED.has(s.status));
    if (!current) {
      const created = await stripe.subscriptions.create(
        {
          customer: customerId,
          items: [{ price: prices.priceId }, ...Object.values(prices.meterPriceIds).map((price) => ({ price }))],
          billing_cycle_anchor_config: { day_of_month: 1, hour: 0, minute: 0, second: 0 },
          proration_behavior: "create_prorations",
          metadata: { deck_plan: plan.code },
        },
        // Keyed on the customer's newest subscription too, so subscribing again after a cancellation is a new request.
        { idempotencyKey: `deck-subscription-${customerId}-${plan.code}-${subscriptions.data[0]?.id ?? "first"}` },
      );
      return { subscriptionId: created.id, status: created.status };
    }
    const items = planItemChanges(current, prices, catalogue.meters);
    if (items.length === 0 && current.metadata?.deck_plan === plan.code) return { subscriptionId: current.id, status: current.status };
    const updated = await stripe.subscriptions.update(current.id, {
      items,
      proration_behavior: "create_prorations",
      ...(options.prorationDate !== undefined ? { proration_date: options.prorationDate } : {}),
      metadata: { deck_plan: plan.code },
    });
    return { subscriptionId: updated.id, status: updated.status };
  }

  async function reportUsage(events: UsageEvent[]): Promise<UsageReport> {
    type Outcome = { accepted: true } | { rejected: UsageReport["rejected"][number] } | { failed: UsageReport["failed"][number] };
    const outcomes = await mapLimited(events, USAGE_CONCURRENCY, async (event): Promise<Outcome> => {
      let value: string;
      try {
        value = Stripe.Decimal.from(event.value).round("half-up", { mode: "decimal-places", value: 12 }).toString();
      } catch (e) {
        return { rejected: { identifier: event.identifier, status: 0, code: "invalid_value", message: `value ${event.value}: ${(e as Error).message}` } };
      }
      try {
        await stripe.billing.meterEvents.create(
          { event_name: METER_EVENT_NAMES[event.meter], identifier: event.identifier, timestamp: event.timestamp, payload: { [CUSTOMER_PAYLOAD_KEY]: event.customerId, [VALUE_PAYLOAD_KEY]: value } },
          // A retry within 24 hours gets Stripe's first answer; the identifier guards longer gaps.
          { idempotencyKey: `deck-usage-${event.identifier}` },
        );
        return { accepted: true };
      } catch (e) {
        if (!(e instanceof Stripe.errors.StripeError)) throw e;
        const status = e.statusCode ?? 0;
        if (status >= 400 && status < 500 && status !== 429) return { rejected: { identifier: event.identifier, status, code: e.code ?? null, message: e.message } };
        return { failed: { identifier: event.identifier, message: e.message } };
      }
    });
    // In the order deck sent them, whatever order Stripe answered in.
    const report: UsageReport = { accepted: [], rejected: [], failed: [] };
    outcomes.forEach((outcome, i) => {
      if ("accepted" in outcome) report.accepted.push(events[i].identifier);
      else if ("rejected" in outcome) report.rejected.push(outcome.rejected);
      else report.failed.push(outcome.failed);
    });
    return report;
  }

  async function checkoutLink(customerId: string, returnUrl: string): Promise<string> {
    const session = await stripe.checkout.sessions.create({ mode: "setup", customer: customerId, currency: "usd", success_url: returnUrl, cancel_url: returnUrl });
    if (!session.url) throw new Error(`Stripe made checkout session ${session.id} without a URL`);
    return session.url;
  }

  async function portalLink(customerId: string, returnUrl: string): Promise<string> {
    const session = await stripe.billingPortal.sessions.create({ customer: customerId, return_url: returnUrl });
    return session.url;
  }

  async function useSavedPaymentMethod(customerId: string, setupIntentId: string): Promise<void> {
    const intent = await stripe.setupIntents.retrieve(setupIntentId);
    const owner = typeof intent.customer === "string" ? intent.customer : intent.customer?.id;
    if (owner !== customerId) throw new Error(`setup intent ${setupIntentId} belongs to ${owner ?? "no customer"}, not ${customerId}`);
    const method = typeof intent.payment_method === "string" ? intent.payment_method : intent.payment_method?.id;
    if (!method) throw new Error(`setup intent ${setupIntentId} has no payment method (status ${intent.status})`);
    await stripe.customers.update(customerId, { invoice_settings: { default_payment_method: method } });
  }

  async function syncInvoice(customerId: string, invoice: DeckInvoiceRef): Promise<InvoiceLink> {
    const start = unixSeconds(invoice.periodStart);
    const end = unixSeconds(invoice.periodEnd);
    let match: Stripe.Invoice | undefined;
    for await (const candidate of stripe.invoices.list({ customer: customerId, created: { gte: start }, limit: 100 })) {
      // Stripe's period for the invoice may start later than deck's (a subscription begun mid-month).
      if (candidate.period_end !== end || candidate.period_start < start || candidate.period_start >= end) continue;
      if (!match || (match.status === "void" && candidate.status !== "void")) match = candidate;
    }
    if (!match?.id) return { ok: false, reason: "no_stripe_invoice" };
    if (match.metadata?.deck_invoice !== invoice.number) {
      match = await stripe.invoices.update(match.id, { metadata: { deck_invoice: invoice.number } });
    }
    return { ok: true, stripeInvoiceId: match.id!, hostedUrl: match.hosted_invoice_url ?? null, status: match.status, amountDueCents: match.amount_due };
  }

  return {
    ensureCatalogue: (plans) => calling("ensure the Stripe catalogue", () => ensureCatalogue(plans)),
    ensureCustomer: (input) => calling("find or create the Stripe customer", () => ensureCustomer(input)),
    setSubscription: (customerId, plan, options) => calling("set the Stripe subscription", () => setSubscription(customerId, plan, options)),
    reportUsage: (events) => calling("report usage to Stripe", () => reportUsage(events)),
    checkoutLink: (customerId, returnUrl) => calling("open a Stripe checkout session", () => checkoutLink(customerId, returnUrl)),
    portalLink: (customerId, returnUrl) => calling("open a Stripe billing portal session", () => portalLink(customerId, returnUrl)),
    useSavedPaymentMethod: (customerId, setupIntentId) => calling("save the default payment method", () => useSavedPaymentMethod(customerId, setupIntentId)),
    syncInvoice: (customerId, invoice) => calling("link the Stripe invoice", () => syncInvoice(customerId, invoice)),
    parseWebhook,
  };
}

/**
 * The item changes that put a subscription on a plan's prices: the fee item and each meter's item
 * change price in place (so Stripe prorates the fee), missing ones are added, others removed.
 */
export function planItemChanges(
  subscription: Pick<Stripe.Subscription, "items">,
  prices: StripeCatalogue["plans"][string],
  meterIds: StripeCatalogue["meters"],
): Stripe.SubscriptionUpdateParams.Item[] {
  const changes: Stripe.SubscriptionUpdateParams.Item[] = [];
  const wantedByMeterId = new Map<string, string>();
  for (const [meter, priceId] of Object.entries(prices.meterPriceIds) as Array<[StripeMeter, string]>) {
    const meterId = meterIds[meter];
    if (meterId) wantedByMeterId.set(meterId, priceId);
  }
  let feeSeen = false;
  const metersSeen = new Set<string>();
  for (const item of subscription.items.data) {
    const recurring = item.price.recurring;
    // One item per role: the first licensed item is the fee, the first item of a meter is that meter's.
    let wanted: string | undefined;
    if (recurring?.usage_type === "licensed") {
      wanted = feeSeen ? undefined : prices.priceId;
      feeSeen = true;
    } else if (recurring?.meter && !metersSeen.has(recurring.meter)) {
      wanted = wantedByMeterId.get(recurring.meter);
      metersSeen.add(recurring.meter);
    }
    if (wanted === undefined) changes.push({ id: item.id, deleted: true });
    else if (wanted !== item.price.id) changes.push({ id: item.id, price: wanted });
  }
  if (!feeSeen) changes.push({ price: prices.priceId });
  for (const [meterId, priceId] of wantedByMeterId) if (!metersSeen.has(meterId)) changes.push({ price: priceId });
  return changes;
}

function unixSeconds(iso: string): number {
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) throw new Error(`not an ISO timestamp: ${iso}`);
  return Math.floor(ms / 1000);
}

async function mapLimited<T, R>(items: T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await work(items[i]);
    }
  });
  await Promise.all(workers);
  return results;
}

/** Stripe's own failures become deck errors with a stable code; deck's broken invariants stay as they are. */
async function calling<T>(what: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (e) {
    if (!(e instanceof Stripe.errors.StripeError)) throw e;
    const data = { status: e.statusCode ?? null, stripeCode: e.code ?? null, requestId: e.requestId ?? null };
    const transient = e instanceof Stripe.errors.StripeConnectionError || e instanceof Stripe.errors.StripeRateLimitError || (e.statusCode ?? 0) >= 500;
    throw new DeckError(transient ? "stripe_unavailable" : "stripe_refused", `could not ${what}: ${e.message}`, data, { cause: e });
  }
}
