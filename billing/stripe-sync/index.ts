// deck's billing kept in step with Stripe when STRIPE_SECRET_KEY is set: plans as subscriptions, usage
// on Stripe's meters, Stripe's webhooks on deck's invoices, and the pages where owners pay.
export {
  StripeSync, stripeSyncFromConfig, toStripeEndpoint, NO_STRIPE_MESSAGE,
  type OrgSyncResult, type StripeRound, type StripeSyncOptions, type WebhookAnswer,
} from "./stripe-sync.ts";
export { paymentLinkFor, portalLinkFor, type StripePageRequest } from "./payment-link.ts";
export { customPlanCode, listCatalogueStripePlans, toStripePlan } from "./stripe-plans.ts";
export { advanceCursor, planUsageEvent, toBillingUnits, toUsageIdentifier, STRIPE_USAGE_MAX_AGE_MS, type CursorState } from "./usage-events.ts";
export type { UsageRound } from "./usage-report.ts";
export { findDeckPeriodEndingAt } from "./webhook-handler.ts";
