/**
 * Stripe webhooks: verified with the SDK (Stripe's v1 signature scheme, the `Stripe-Signature`
 * header: HMAC-SHA256 of "timestamp.body", five minutes' tolerance), then read into what deck should
 * do about them.
 *
 * What the caller (the webhook route) must do, since this file keeps no state:
 * - Stripe delivers each event at least once and retries until it gets a 2xx. Record every applied
 *   `event.id` (a unique key) and answer 2xx without doing anything for one already recorded.
 * - Stripe does not deliver events in order. Keep, with each invoice and subscription, the status and
 *   the `at` (the event's `created`) that set it, and write a new status only when
 *   `shouldApply(current, incoming)` says so; answer 2xx either way, so Stripe stops resending.
 * - `{ ok: false }` means the body was not signed with the secret (or is too old): answer 400.
 */
import Stripe from "stripe";
import { planCodeFromLookupKey } from "./catalogue.ts";
import type { StripeInvoiceStatus, WebhookIntent, WebhookResult } from "./provider.ts";

const INVOICE_STATUSES: ReadonlySet<string> = new Set<StripeInvoiceStatus>(["open", "paid", "void", "uncollectible"]);

export function parseWebhook(rawBody: Buffer | string, signatureHeader: string, secret: string): WebhookResult {
  let event: Stripe.Event;
  try {
    event = Stripe.webhooks.constructEvent(rawBody, signatureHeader, secret);
  } catch (e) {
    return { ok: false, error: e instanceof Error ? e.message : String(e) };
  }
  return {
    ok: true,
    event: { id: event.id, created: event.created, type: event.type, livemode: event.livemode },
    intent: intentOf(event.type, event.data.object as unknown as Record<string, unknown>, event.created),
  };
}

/** What one event asks for, from the object it carries as it was when the event happened. */
export function intentOf(type: string, object: Record<string, unknown>, at: number): WebhookIntent {
  if (object.object === "invoice" && type.startsWith("invoice.")) return invoiceIntent(type, object as unknown as Stripe.Invoice, at);
  if (object.object === "subscription" && type.startsWith("customer.subscription.")) return subscriptionIntent(type, object as unknown as Stripe.Subscription, at);
  if (object.object === "checkout.session" && type === "checkout.session.completed") {
    const session = object as unknown as Stripe.Checkout.Session;
    const customerId = idOf(session.customer);
    const setupIntentId = idOf(session.setup_intent);
    if (session.mode === "setup" && customerId && setupIntentId) return { kind: "payment_method", customerId, setupIntentId, at };
  }
  return { kind: "ignored", type };
}

function invoiceIntent(type: string, invoice: Stripe.Invoice, at: number): WebhookIntent {
  const customerId = idOf(invoice.customer);
  // Drafts are Stripe's own business until they are finalized.
  if (!invoice.status || !INVOICE_STATUSES.has(invoice.status) || !customerId) return { kind: "ignored", type };
  const deckInvoice = invoice.metadata?.deck_invoice;
  return {
    kind: "invoice",
    stripeInvoiceId: invoice.id ?? "",
    customerId,
    status: invoice.status as StripeInvoiceStatus,
    ...(deckInvoice ? { deckInvoice } : {}),
    periodStart: invoice.period_start,
    periodEnd: invoice.period_end,
    amountDueCents: invoice.amount_due,
    hostedUrl: invoice.hosted_invoice_url ?? null,
    at,
  };
}

function subscriptionIntent(type: string, subscription: Stripe.Subscription, at: number): WebhookIntent {
  const customerId = idOf(subscription.customer);
  if (!customerId) return { kind: "ignored", type };
  // The fee price is the subscription's one licensed item; the metered ones follow the plan.
  const fee = subscription.items?.data?.find((item) => item.price?.recurring?.usage_type === "licensed");
  return {
    kind: "subscription",
    subscriptionId: subscription.id,
    customerId,
    status: subscription.status,
    planCode: planCodeFromLookupKey(fee?.price?.lookup_key),
    at,
  };
}

function idOf(value: string | { id?: string } | null | undefined): string | null {
  if (!value) return null;
  return typeof value === "string" ? value : (value.id ?? null);
}

/** A status deck keeps for an invoice or subscription, and the event time that set it. */
export interface AppliedStatus {
  status: string;
  at: number;
}

/** Statuses nothing follows: a paid or void invoice, a canceled or expired subscription. */
const FINAL_STATUSES: ReadonlySet<string> = new Set(["paid", "void", "canceled", "incomplete_expired"]);

/**
 * Whether an event's status may replace the one deck holds. An older event never overrides a newer
 * one; a final status never changes; and an invoice never returns to open once it left it (Stripe's
 * invoices go draft → open → paid | void | uncollectible, and uncollectible → paid | void). Events of
 * the same second (Stripe's `created` has one-second resolution) apply, except such a step back.
 */
export function shouldApply(current: AppliedStatus | null, incoming: AppliedStatus): boolean {
  if (current === null) return true;
  if (incoming.at < current.at) return false;
  if (FINAL_STATUSES.has(current.status)) return false;
  if (incoming.status === "open" && current.status !== "open") return false;
  return true;
}
