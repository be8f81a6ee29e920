export type {
  BillingProvider, StripeMeter, StripePlan, StripeCatalogue, CustomerInput, SubscriptionOptions, SubscriptionResult, UsageEvent, UsageReport,
  DeckInvoiceRef, InvoiceLink, StripeInvoiceStatus, WebhookIntent, WebhookEvent, WebhookResult,
} from "./provider.ts";
export { STRIPE_METERS } from "./provider.ts";
export { createStripeProvider, type StripeProviderOptions } from "./stripe-provider.ts";
export { parseWebhook, shouldApply, type AppliedStatus } from "./webhook.ts";
export { METER_EVENT_NAMES, planLookupKey, meterLookupKey } from "./catalogue.ts";
export { STRIPE_ERRORS } from "./errors.ts";
