/**
 * deck's plans as Stripe objects, built by pure functions: the request bodies for meters and prices,
 * and the comparison that tells whether an existing price still says what a plan says. The names here
 * (meter event names, price lookup keys) are how deck finds its objects again in a Stripe account, so
 * they never change.
 */
import Stripe from "stripe";
import type { StripeMeter, StripePlan } from "./provider.ts";

/** The Stripe meter each deck meter reports to, found again by this event name. */
export const METER_EVENT_NAMES: Readonly<Record<StripeMeter, string>> = {
  build_minutes: "deck_build_minutes",
  bandwidth_gb: "deck_bandwidth_gb",
  storage_gb_month: "deck_storage_gb_month",
  custom_domains: "deck_custom_domains",
};

const METER_LABELS: Readonly<Record<StripeMeter, { name: string; unit: string }>> = {
  build_minutes: { name: "Build minutes", unit: "minute" },
  bandwidth_gb: { name: "Bandwidth", unit: "GB" },
  storage_gb_month: { name: "Storage", unit: "GB-month" },
  custom_domains: { name: "Custom domains", unit: "domain" },
};

/** Payload keys of deck's meters: Stripe's defaults, spelt out so a meter made elsewhere is not mistaken for ours. */
export const CUSTOMER_PAYLOAD_KEY = "stripe_customer_id";
export const VALUE_PAYLOAD_KEY = "value";

const PRICE_PREFIX = "deck_plan_";

/** The lookup key of a plan's monthly fee price. */
export function planLookupKey(code: string): string {
  return `${PRICE_PREFIX}${code}`;
}

/** The lookup key of a plan's price for one meter. */
export function meterLookupKey(code: string, meter: StripeMeter): string {
  return `${PRICE_PREFIX}${code}_${meter}`;
}

/** The plan code in a fee price's lookup key, or null for a key deck did not make. */
export function planCodeFromLookupKey(key: string | null | undefined): string | null {
  if (!key || !key.startsWith(PRICE_PREFIX)) return null;
  return key.slice(PRICE_PREFIX.length) || null;
}

export function buildMeterParams(meter: StripeMeter): Stripe.Billing.MeterCreateParams {
  return {
    display_name: `deck ${METER_LABELS[meter].name.toLowerCase()}`,
    event_name: METER_EVENT_NAMES[meter],
    default_aggregation: { formula: "sum" },
    customer_mapping: { type: "by_id", event_payload_key: CUSTOMER_PAYLOAD_KEY },
    value_settings: { event_payload_key: VALUE_PAYLOAD_KEY },
  };
}

/**
 * What a price charges, reduced to what deck decides. Stripe has several ways to say one thing, so
 * comparing these (not whole price objects) is how ensureCatalogue knows a price is still right.
 */
export type PriceTerms =
  | { kind: "fee"; cents: number }
  /** freeUnits null: unlimited, never charged. */
  | { kind: "metered"; meterId: string; freeUnits: number | null; unitCentsDecimal: string };

export function feeTerms(plan: StripePlan): PriceTerms {
  if (!Number.isInteger(plan.monthlyCents) || plan.monthlyCents < 0) throw new Error(`plan ${plan.code}: monthlyCents must be a whole number of cents, not ${plan.monthlyCents}`);
  return { kind: "fee", cents: plan.monthlyCents };
}

/**
 * Stripe tiers end at whole units, so a fractional allowance is rounded up: Stripe then never charges
 * for a unit deck's own rating counts as included.
 */
export function meterTerms(spec: StripePlan["meters"][number], meterId: string): PriceTerms {
  const unitCentsDecimal = normaliseDecimal(spec.unitCentsDecimal);
  // Nothing to charge beyond the allowance is the same price as no limit at all.
  if (spec.freeUnits === null || unitCentsDecimal === "0") return { kind: "metered", meterId, freeUnits: null, unitCentsDecimal: "0" };
  return { kind: "metered", meterId, freeUnits: Math.ceil(spec.freeUnits), unitCentsDecimal };
}

/** "10.000" and "10" are one price: the canonical spelling Stripe also answers with. */
export function normaliseDecimal(value: string): string {
  return Stripe.Decimal.from(value).toString();
}

/** What an existing Stripe price charges, or null when it is not a monthly USD price deck could have made. */
export function termsOfPrice(price: Stripe.Price): PriceTerms | null {
  if (price.currency !== "usd" || price.recurring?.interval !== "month" || price.recurring.interval_count !== 1) return null;
  if (price.recurring.usage_type === "licensed") {
    return price.billing_scheme === "per_unit" && price.unit_amount !== null ? { kind: "fee", cents: price.unit_amount } : null;
  }
  const meterId = price.recurring.meter;
  if (price.recurring.usage_type !== "metered" || !meterId) return null;
  if (price.billing_scheme === "per_unit") {
    const unit = decimalOf(price.unit_amount, price.unit_amount_decimal);
    if (unit === null) return null;
    return unit === "0" ? { kind: "metered", meterId, freeUnits: null, unitCentsDecimal: "0" } : { kind: "metered", meterId, freeUnits: 0, unitCentsDecimal: unit };
  }
  const tiers = price.tiers ?? [];
  if (price.tiers_mode !== "graduated" || tiers.length !== 2) return null;
  const [free, paid] = tiers;
  if (free.up_to === null || decimalOf(free.unit_amount, free.unit_amount_decimal) !== "0" || free.flat_amount || paid.up_to !== null || paid.flat_amount) return null;
  const unit = decimalOf(paid.unit_amount, paid.unit_amount_decimal);
  return unit === null ? null : { kind: "metered", meterId, freeUnits: free.up_to, unitCentsDecimal: unit };
}

function decimalOf(amount: number | null, decimal: Stripe.Decimal | string | null): string | null {
  if (decimal !== null && decimal !== undefined) return normaliseDecimal(String(decimal));
  return amount === null ? null : String(amount);
}

export function sameTerms(a: PriceTerms | null, b: PriceTerms): boolean {
  return a !== null && JSON.stringify(a) === JSON.stringify(b);
}

export interface PriceParamsInput {
  plan: StripePlan;
  lookupKey: string;
  terms: PriceTerms;
  /** The product of the price this one replaces, so a plan keeps one product across price changes. */
  productId: string | null;
  /** For a meter price: which meter (names the product). */
  meter?: StripeMeter;
}

/**
 * The body that creates a price. `transfer_lookup_key` moves the key from a price whose amounts
 * changed to the new one; subscriptions on the old price keep it until setSubscription moves them.
 */
export function buildPriceParams(input: PriceParamsInput): Stripe.PriceCreateParams {
  const { plan, terms, meter } = input;
  const label = meter ? `${METER_LABELS[meter].name} (${plan.name})` : `${plan.name} plan`;
  const product: Pick<Stripe.PriceCreateParams, "product" | "product_data"> = input.productId
    ? { product: input.productId }
    : { product_data: { name: label, ...(meter ? { unit_label: METER_LABELS[meter].unit } : {}), metadata: { deck_plan: plan.code, ...(meter ? { deck_meter: meter } : {}) } } };
  const common = {
    currency: "usd",
    lookup_key: input.lookupKey,
    transfer_lookup_key: true,
    nickname: label,
    metadata: { deck_plan: plan.code, ...(meter ? { deck_meter: meter } : {}) },
    ...product,
  };
  if (terms.kind === "fee") {
    return { ...common, unit_amount: terms.cents, recurring: { interval: "month", usage_type: "licensed" } };
  }
  const recurring: Stripe.PriceCreateParams.Recurring = { interval: "month", usage_type: "metered", meter: terms.meterId };
  if (terms.freeUnits === null) return { ...common, recurring, billing_scheme: "per_unit", unit_amount: 0 };
  if (terms.freeUnits === 0) return { ...common, recurring, billing_scheme: "per_unit", unit_amount_decimal: Stripe.Decimal.from(terms.unitCentsDecimal) };
  return {
    ...common,
    recurring,
    billing_scheme: "tiered",
    tiers_mode: "graduated",
    tiers: [
      { up_to: terms.freeUnits, unit_amount: 0 },
      { up_to: "inf", unit_amount_decimal: Stripe.Decimal.from(terms.unitCentsDecimal) },
    ],
  };
}
