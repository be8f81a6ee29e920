import { z } from "zod/v4";
import { NO_STRIPE_MESSAGE, paymentLinkFor, portalLinkFor, type StripeSync } from "../../billing/stripe-sync/index.ts";
import { DeckError } from "../../core/index.ts";
import { publicBaseUrl } from "../auth/oidc-providers.ts";
import { readRawBody } from "../body.ts";
import { defineRoute, type ApiDeps } from "../registry.ts";
import { orgParams } from "../schemas.ts";

/** API routes for Stripe (billing/stripe-sync): its webhooks, and the Stripe pages an org's owners pay on. */

/** Stripe's events are a few kilobytes; this leaves room and stops a flood at the door. */
export const STRIPE_WEBHOOK_MAX_BODY = 1024 * 1024;

/** deck's Stripe sync as the server passes it (`extra.stripe`); null on a deck without STRIPE_SECRET_KEY. */
function stripeOf(deps: ApiDeps): StripeSync | null {
  return (deps.extra.stripe as StripeSync | null | undefined) ?? null;
}

defineRoute({
  method: "post", path: "/billing/stripe/webhook", scope: "public", tag: "billing", raw: true,
  summary: "Stripe's webhook endpoint (register it in Stripe with STRIPE_WEBHOOK_SECRET): invoices paid, voided or uncollectible, subscription changes, cards saved at checkout; verified by the Stripe-Signature header",
  handler: async ({ ctx, deps }) => {
    const stripe = stripeOf(deps);
    if (!stripe) throw new DeckError("not_found", NO_STRIPE_MESSAGE);
    // The signature covers the body byte for byte, so it is read raw, never parsed first.
    const rawBody = await readRawBody(ctx, STRIPE_WEBHOOK_MAX_BODY);
    const r = await stripe.handleWebhook(rawBody, ctx.get("stripe-signature") || undefined);
    ctx.status = r.status;
    ctx.body = r.body;
  },
});

const stripePage = {
  params: orgParams,
  body: z.object({
    returnUrl: z.url({ protocol: /^https?$/ }).max(2048).optional().describe("where Stripe sends the browser back to; deck's public URL by default"),
  }).strict(),
  response: z.object({ url: z.string().describe("the Stripe page; open it in a browser") }),
} as const;

defineRoute({
  method: "post", path: "/orgs/:org/billing/payment-link", scope: "admin", tag: "billing", ...stripePage,
  summary: "A Stripe Checkout page where an owner saves the card the organisation's invoices are charged to (decks with Stripe)",
  handler: async ({ deps, caller, params, body }) =>
    paymentLinkFor({ deps, caller, org: params.org, stripe: stripeOf(deps), returnUrl: body.returnUrl ?? publicBaseUrl(deps.config) }),
});

defineRoute({
  method: "post", path: "/orgs/:org/billing/portal-link", scope: "admin", tag: "billing", ...stripePage,
  summary: "Stripe's billing portal for the organisation: its cards, invoices and receipts (owners; decks with Stripe)",
  handler: async ({ deps, caller, params, body }) =>
    portalLinkFor({ deps, caller, org: params.org, stripe: stripeOf(deps), returnUrl: body.returnUrl ?? publicBaseUrl(deps.config) }),
});
