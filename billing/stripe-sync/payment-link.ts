/**
 * Stripe pages for an org's owners: Checkout, to save the card Stripe charges the org's invoices to,
 * and Stripe's billing portal (cards, invoices, receipts). Who may ask is decided as for every billing
 * change (`orgForBilling`: the org's owners and platform admins).
 */
import { DeckError } from "../../core/index.ts";
import type { DeployDeps } from "../../deploy/index.ts";
import type { Caller } from "../../ops/access.ts";
import { orgForBilling } from "../../ops/billing.ts";
import { NO_STRIPE_MESSAGE, type StripeSync } from "./stripe-sync.ts";

export interface StripePageRequest {
  deps: DeployDeps;
  caller: Caller;
  /** The org's slug. */
  org: string;
  /** null on a deck without STRIPE_SECRET_KEY. */
  stripe: StripeSync | null;
  /** Where Stripe sends the browser back to. */
  returnUrl: string;
}

/** A Stripe Checkout page where the org saves a card for its invoices. */
export async function paymentLinkFor(r: StripePageRequest): Promise<{ url: string }> {
  const org = await orgForBilling(r.deps, r.caller, r.org);
  if (!r.stripe) throw new DeckError("not_found", NO_STRIPE_MESSAGE);
  return { url: await r.stripe.paymentLink(org.id, r.returnUrl) };
}

/** Stripe's billing portal for the org. */
export async function portalLinkFor(r: StripePageRequest): Promise<{ url: string }> {
  const org = await orgForBilling(r.deps, r.caller, r.org);
  if (!r.stripe) throw new DeckError("not_found", NO_STRIPE_MESSAGE);
  return { url: await r.stripe.portalLink(org.id, r.returnUrl) };
}
