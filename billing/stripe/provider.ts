/**
 * What deck needs from a payment provider, and nothing more. deck rates usage itself (core/billing);
 * the provider only collects the money. deck code depends on this interface, never on the `stripe`
 * package: `createStripeProvider` (stripe-provider.ts) is the one implementation, and
 * provider.contract.ts is the suite every implementation passes.
 */

/** deck's usage meters as Stripe sees them: already converted to billing units (minutes, GB, …). */
export type StripeMeter = "build_minutes" | "bandwidth_gb" | "storage_gb_month" | "custom_domains";

export const STRIPE_METERS: readonly StripeMeter[] = ["build_minutes", "bandwidth_gb", "storage_gb_month", "custom_domains"];

/** One plan as Stripe needs it: the monthly fee and, per meter, the free allowance and the price beyond it. */
export interface StripePlan {
  /** deck's plan code (free, pro, business, or an org's enterprise code); names the Stripe prices. */
  code: string;
  name: string;
  /** The monthly fee in whole cents. */
  monthlyCents: number;
  meters: Array<{
    meter: StripeMeter;
    /** Cents per unit beyond the allowance, as a decimal string ("0.5", "10", "1"). */
    unitCentsDecimal: string;
    /** Units included each month; null means unlimited (never charged). */
    freeUnits: number | null;
  }>;
}

/** The Stripe ids ensureCatalogue found or made. */
export interface StripeCatalogue {
  meters: Partial<Record<StripeMeter, string>>;
  plans: Record<string, { priceId: string; meterPriceIds: Partial<Record<StripeMeter, string>> }>;
}

export interface CustomerInput {
  orgId: number | string;
  orgName: string;
  email: string;
}

export interface SubscriptionOptions {
  /** Unix seconds the plan change takes effect from, for proration; Stripe's "now" when left out. */
  prorationDate?: number;
}

export interface SubscriptionResult {
  subscriptionId: string;
  /** Stripe's subscription status: active, past_due, incomplete (a first payment failed; see stripe-provider.ts), … */
  status: string;
}

/** One quantity of usage for one customer, as deck reports it to a Stripe meter. */
export interface UsageEvent {
  /** Stable for the same usage, so that a retry is recognised rather than counted twice. */
  identifier: string;
  meter: StripeMeter;
  customerId: string;
  /** In the meter's unit; may be fractional. */
  value: number;
  /** Unix seconds the usage happened; Stripe takes up to 35 days back. */
  timestamp: number;
}

/**
 * What became of each reported event. `rejected`: Stripe refused it (4xx) and resending it as it is
 * cannot help. `failed`: Stripe could not be reached or failed (5xx) even after the SDK's retries;
 * resending it later with the same identifier is safe.
 */
export interface UsageReport {
  accepted: string[];
  /** `status` 0: refused before sending (a value that is not a finite number). */
  rejected: Array<{ identifier: string; status: number; code: string | null; message: string }>;
  failed: Array<{ identifier: string; message: string }>;
}

/** deck's invoice for one period, as far as Stripe needs to know it (see the money model in stripe-provider.ts). */
export interface DeckInvoiceRef {
  number: string;
  /** ISO timestamps (UTC) of the period, as deck rates it: first of the month to first of the next. */
  periodStart: string;
  periodEnd: string;
  /** Not sent to Stripe, whose own invoice carries the money; deck shows these beside Stripe's. */
  lines: Array<{ description: string; amountCents: number }>;
}

export type InvoiceLink =
  | { ok: true; stripeInvoiceId: string; hostedUrl: string | null; status: string | null; amountDueCents: number }
  /** Stripe has not issued the invoice for that period yet (it does so when the period ends). */
  | { ok: false; reason: "no_stripe_invoice" };

export type StripeInvoiceStatus = "open" | "paid" | "void" | "uncollectible";

/** What a verified webhook asks deck to do. */
export type WebhookIntent =
  | {
      kind: "invoice";
      stripeInvoiceId: string;
      customerId: string;
      status: StripeInvoiceStatus;
      /** deck's invoice number, once syncInvoice linked the two. */
      deckInvoice?: string;
      /** Unix seconds of the usage period the invoice bills; deck matches its own invoice by customer + period. */
      periodStart: number;
      periodEnd: number;
      amountDueCents: number;
      hostedUrl: string | null;
      at: number;
    }
  | { kind: "subscription"; subscriptionId: string; customerId: string; status: string; planCode: string | null; at: number }
  /** A card was saved through checkoutLink: pass it to useSavedPaymentMethod so invoices charge it. */
  | { kind: "payment_method"; customerId: string; setupIntentId: string; at: number }
  | { kind: "ignored"; type: string };

export interface WebhookEvent {
  id: string;
  /** Unix seconds Stripe created the event: the order of events, since delivery order is not. */
  created: number;
  type: string;
  livemode: boolean;
}

export type WebhookResult = { ok: false; error: string } | { ok: true; event: WebhookEvent; intent: WebhookIntent };

export interface BillingProvider {
  /** Makes the meters and prices the plans need (idempotent: finds what exists, replaces prices whose amounts changed). */
  ensureCatalogue(plans: StripePlan[]): Promise<StripeCatalogue>;
  /** The Stripe customer of a deck org, made on first call. */
  ensureCustomer(input: CustomerInput): Promise<string>;
  /** Puts the customer on `plan`: creates its one subscription, or changes it with proration. */
  setSubscription(customerId: string, plan: StripePlan, options?: SubscriptionOptions): Promise<SubscriptionResult>;
  /** Sends usage to the meters; one refused event does not stop the rest. */
  reportUsage(events: UsageEvent[]): Promise<UsageReport>;
  /** A Stripe Checkout page where the org saves a payment method; returns its URL. */
  checkoutLink(customerId: string, returnUrl: string): Promise<string>;
  /** A Stripe billing portal page (payment methods, receipts); returns its URL. */
  portalLink(customerId: string, returnUrl: string): Promise<string>;
  /** Makes the payment method saved at checkout the one the customer's invoices charge. */
  useSavedPaymentMethod(customerId: string, setupIntentId: string): Promise<void>;
  /** Links deck's invoice to the Stripe invoice of the same customer and period. */
  syncInvoice(customerId: string, invoice: DeckInvoiceRef): Promise<InvoiceLink>;
  /** Verifies a webhook's signature and says what it asks for; never throws for a bad request. */
  parseWebhook(rawBody: Buffer | string, signatureHeader: string, secret: string): WebhookResult;
}
