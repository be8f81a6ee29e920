/**
 * What deck does with a verified Stripe webhook (billing/stripe/webhook.ts reads it), inside the
 * transaction that records the event's id, so an event is applied exactly once or not at all:
 * - an invoice: its status is kept with the `created` time of the event that set it, and a status
 *   from an older event than the one kept is ignored (`shouldApply`: Stripe does not deliver in order,
 *   and a paid invoice never goes back to open). It is matched to deck's invoice — the one linked to
 *   it, else the one named in its metadata, else the org's invoice for the month ending when Stripe's
 *   period ends — linked to it, and deck's invoice follows through the invoice state machine: paid,
 *   void or uncollectible. When deck has not closed that month yet, the billing round links it later.
 * - a subscription: its status is saved on the org's billing account, with the same ordering rule.
 * - a card saved through a payment link: it becomes the one the org's invoices charge.
 */
import { toMonthlyPeriod, type Period } from "../../core/index.ts";
import type { InvoiceAction } from "../../core/billing/invoice-state.ts";
import {
  findInvoice, findInvoiceByStripeId, findInvoiceOfPeriod, findOrgByStripeCustomer, insertOrLockStripeInvoice, linkStripeInvoice,
  lockStripeSubscriptionStatus, saveStripeLink, setStripeInvoiceDeckInvoice, updateStripeInvoice, type Db, type Invoice, type StripeInvoiceRow,
} from "../../store/queries/index.ts";
import { changeInvoiceStatus } from "../invoices/index.ts";
import { shouldApply, type BillingProvider, type WebhookIntent } from "../stripe/index.ts";

/** What a Stripe status asks of deck's invoice; an open Stripe invoice asks nothing (deck's opens when its month closes). */
const ACTION_OF: Readonly<Record<string, InvoiceAction | undefined>> = { paid: "pay", void: "void", uncollectible: "uncollectible" };

/** Subscription statuses after which the subscription is over. */
const ENDED = new Set(["canceled", "incomplete_expired"]);

const isoOf = (unixSeconds: number) => new Date(unixSeconds * 1000).toISOString();
const secondsOf = (iso: string) => Math.floor(Date.parse(iso) / 1000);

export interface ApplyOptions {
  provider: BillingProvider;
  now: Date;
}

/** Applies what the event asks; returns one line saying what became of it (Stripe shows it with the delivery). */
export async function applyStripeIntent(tx: Db, intent: WebhookIntent, o: ApplyOptions): Promise<string> {
  if (intent.kind === "ignored") return `deck does not act on ${intent.type}`;
  const orgId = await findOrgByStripeCustomer(tx, intent.customerId);
  if (orgId === null) return `customer ${intent.customerId} is no deck organisation's; ignored`;
  if (intent.kind === "invoice") return applyInvoice(tx, orgId, intent, o.now);
  if (intent.kind === "subscription") return applySubscription(tx, orgId, intent);
  await o.provider.useSavedPaymentMethod(intent.customerId, intent.setupIntentId);
  return `the card saved at checkout (${intent.setupIntentId}) now pays the invoices of customer ${intent.customerId}`;
}

async function applyInvoice(tx: Db, orgId: number, intent: Extract<WebhookIntent, { kind: "invoice" }>, now: Date): Promise<string> {
  const incoming = {
    id: intent.stripeInvoiceId, customerId: intent.customerId, orgId, periodStart: isoOf(intent.periodStart), periodEnd: isoOf(intent.periodEnd),
    status: intent.status, statusAt: intent.at, amountDueCents: intent.amountDueCents, hostedUrl: intent.hostedUrl,
  };
  const stored = await insertOrLockStripeInvoice(tx, incoming);
  if (stored) {
    if (!shouldApply({ status: stored.status, at: stored.statusAt }, { status: intent.status, at: intent.at })) {
      return `Stripe invoice ${intent.stripeInvoiceId} stays ${stored.status} (set by an event of ${isoOf(stored.statusAt)}): this ${intent.status} is from ${isoOf(intent.at)}`;
    }
    await updateStripeInvoice(tx, incoming);
  }
  return applyToDeckInvoice(tx, { ...incoming, deckInvoiceId: stored?.deckInvoiceId ?? null }, { ...(intent.deckInvoice ? { deckNumber: intent.deckInvoice } : {}), now });
}

/** deck's monthly period that ends when Stripe's period ends, or null when Stripe's does not end on a month's first. */
export function findDeckPeriodEndingAt(periodEnd: string): Period | null {
  const period = toMonthlyPeriod(new Date(Date.parse(periodEnd) - 1000).toISOString());
  return Date.parse(period.end) === Date.parse(periodEnd) ? period : null;
}

async function findDeckInvoice(tx: Db, s: StripeInvoiceRow, deckNumber: string | undefined): Promise<Invoice | null> {
  const linked = await findInvoiceByStripeId(tx, s.id);
  if (linked) return linked;
  if (s.orgId === null) return null;
  const named = deckNumber ? await findInvoice(tx, { number: deckNumber, orgId: s.orgId }) : null;
  if (named) return named;
  const period = findDeckPeriodEndingAt(s.periodEnd);
  return period ? findInvoiceOfPeriod(tx, s.orgId, period.start) : null;
}

/**
 * Links Stripe's invoice (as deck now holds it) to deck's invoice of the same org and month and moves
 * deck's invoice to Stripe's status where the state machine allows it.
 */
export async function applyToDeckInvoice(tx: Db, s: StripeInvoiceRow, o: { deckNumber?: string; now: Date }): Promise<string> {
  const deck = await findDeckInvoice(tx, s, o.deckNumber);
  if (!deck) return `Stripe invoice ${s.id} is ${s.status}; deck has no invoice for the month ending ${s.periodEnd.slice(0, 10)} yet, and links it once it does`;
  if (deck.stripeInvoiceId !== null && deck.stripeInvoiceId !== s.id) return `${deck.number} is collected by Stripe invoice ${deck.stripeInvoiceId}, not ${s.id}; ignored`;
  if (deck.stripeInvoiceId === null || (s.hostedUrl !== null && deck.hostedUrl !== s.hostedUrl)) {
    await linkStripeInvoice(tx, { id: deck.id, stripeInvoiceId: s.id, hostedUrl: s.hostedUrl ?? deck.hostedUrl });
  }
  if (s.deckInvoiceId !== deck.id) await setStripeInvoiceDeckInvoice(tx, { id: s.id, deckInvoiceId: deck.id });
  const action = ACTION_OF[s.status];
  // deck's statuses are named as Stripe's: a paid Stripe invoice asks for a paid deck invoice.
  if (!action || deck.status === s.status) return `${deck.number} is ${deck.status}; Stripe invoice ${s.id} is ${s.status}`;
  const moved = await changeInvoiceStatus(tx, { number: deck.number, action, now: o.now });
  if (moved.ok) return `${deck.number} is now ${moved.invoice.status} (Stripe invoice ${s.id} is ${s.status})`;
  // Another writer moved it between reading and writing: fail, and Stripe delivers the event again.
  if (moved.code === "invoice_changed") throw new Error(moved.reason);
  return `${deck.number} stays ${deck.status} although Stripe invoice ${s.id} is ${s.status}: ${moved.reason}`;
}

async function applySubscription(tx: Db, orgId: number, intent: Extract<WebhookIntent, { kind: "subscription" }>): Promise<string> {
  const current = await lockStripeSubscriptionStatus(tx, orgId);
  const held = current?.status && current.statusAt ? { status: current.status, at: secondsOf(current.statusAt) } : null;
  const incoming = { status: intent.status, at: intent.at };
  if (current?.subscriptionId && current.subscriptionId !== intent.subscriptionId) {
    // Another subscription than the one deck follows: only a live one, newer than what deck holds, replaces it.
    if (ENDED.has(intent.status) || (held && intent.at < held.at)) return `subscription ${intent.subscriptionId} is ${intent.status}; deck follows ${current.subscriptionId}`;
  } else if (!shouldApply(held, incoming)) {
    return `subscription ${intent.subscriptionId} stays ${held!.status}: this ${intent.status} is from an older event`;
  }
  await saveStripeLink(tx, orgId, { customerId: intent.customerId, subscriptionId: intent.subscriptionId, status: intent.status, statusAt: isoOf(intent.at) });
  return `subscription ${intent.subscriptionId} is ${intent.status}`;
}
