// deck's billing math: the catalogue, rating a period into an invoice, forecasts and line texts.
// Pure: no I/O; the ledger, invoices, PDFs and Stripe live in billing/ and call these.
export * from "./catalogue.ts";
export * from "./period.ts";
export { allocateCents } from "./allocation.ts";
export { planInForce, splitByPlan, type PlanChange, type PlanSegment, type PlanTerms } from "./plan-segments.ts";
export { countLedgerUnitsPerBillingUnit, type UsageEntry } from "./ledger-usage.ts";
export type { Rational } from "./rational.ts";
export {
  rateInvoice, traceLine,
  type AppShare, type AppUsageSummary, type Credit, type CreditLine, type FeeLine, type InvoiceLine, type RatedInvoice, type RatingInput, type UsageLine,
} from "./rating.ts";
export { forecastPeriod, type Forecast } from "./forecast.ts";
export * from "./line-description.ts";
export * from "./invoice-state.ts";
