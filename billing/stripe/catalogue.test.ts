import assert from "node:assert/strict";
import { describe, it } from "node:test";
import Stripe from "stripe";
import { buildMeterParams, buildPriceParams, meterTerms, planCodeFromLookupKey, sameTerms, termsOfPrice } from "./catalogue.ts";
import type { StripePlan } from "./provider.ts";

const PRO: StripePlan = {
  code: "pro", name: "Pro", monthlyCents: 2000,
  meters: [
    { meter: "bandwidth_gb", unitCentsDecimal: "10", freeUnits: 1000 },
    { meter: "storage_gb_month", unitCentsDecimal: "2", freeUnits: 0 },
    { meter: "build_minutes", unitCentsDecimal: "1", freeUnits: null },
  ],
};
const [bandwidth, storage, unlimited] = PRO.meters;

/** A price as the SDK hands it back from Stripe (decimal amounts as Decimal). */
function stripePrice(fields: Partial<Stripe.Price> & Pick<Stripe.Price, "billing_scheme">): Stripe.Price {
  return {
    id: "price_1", object: "price", active: true, currency: "usd", created: 0, livemode: false, lookup_key: null, metadata: {}, nickname: null, product: "prod_1",
    recurring: { interval: "month", interval_count: 1, meter: "mtr_bw", usage_type: "metered", trial_period_days: null } as Stripe.Price.Recurring,
    tax_behavior: "unspecified", tiers_mode: null, transform_quantity: null, type: "recurring", unit_amount: null, unit_amount_decimal: null,
    ...fields,
  } as Stripe.Price;
}

describe("the Stripe catalogue", () => {
  it("sums each meter's events, reading the customer and value from Stripe's default payload keys", () => {
    assert.deepEqual(buildMeterParams("bandwidth_gb"), {
      display_name: "deck bandwidth",
      event_name: "deck_bandwidth_gb",
      default_aggregation: { formula: "sum" },
      customer_mapping: { type: "by_id", event_payload_key: "stripe_customer_id" },
      value_settings: { event_payload_key: "value" },
    });
  });

  it("prices a meter with an allowance as two graduated tiers: the allowance free, then the unit price", () => {
    const params = buildPriceParams({ plan: PRO, lookupKey: "deck_plan_pro_bandwidth_gb", terms: meterTerms(bandwidth, "mtr_bw"), productId: null, meter: "bandwidth_gb" });
    assert.deepEqual(params, {
      currency: "usd",
      lookup_key: "deck_plan_pro_bandwidth_gb",
      transfer_lookup_key: true,
      nickname: "Bandwidth (Pro)",
      metadata: { deck_plan: "pro", deck_meter: "bandwidth_gb" },
      product_data: { name: "Bandwidth (Pro)", unit_label: "GB", metadata: { deck_plan: "pro", deck_meter: "bandwidth_gb" } },
      recurring: { interval: "month", usage_type: "metered", meter: "mtr_bw" },
      billing_scheme: "tiered",
      tiers_mode: "graduated",
      tiers: [{ up_to: 1000, unit_amount: 0 }, { up_to: "inf", unit_amount_decimal: Stripe.Decimal.from("10") }],
    });
  });

  it("prices a meter without allowance per unit, an unlimited one at zero, and the fee as a licensed monthly price", () => {
    const storageParams = buildPriceParams({ plan: PRO, lookupKey: "k", terms: meterTerms(storage, "mtr_st"), productId: "prod_st", meter: "storage_gb_month" });
    assert.deepEqual([storageParams.product, storageParams.billing_scheme, storageParams.unit_amount_decimal, storageParams.tiers], ["prod_st", "per_unit", Stripe.Decimal.from("2"), undefined]);
    const free = buildPriceParams({ plan: PRO, lookupKey: "k", terms: meterTerms(unlimited, "mtr_bm"), productId: "prod_bm", meter: "build_minutes" });
    assert.deepEqual([free.billing_scheme, free.unit_amount, free.unit_amount_decimal], ["per_unit", 0, undefined]);
    const fee = buildPriceParams({ plan: PRO, lookupKey: "deck_plan_pro", terms: { kind: "fee", cents: 2000 }, productId: null });
    assert.deepEqual([fee.unit_amount, fee.recurring, fee.product_data?.name], [2000, { interval: "month", usage_type: "licensed" }, "Pro plan"]);
  });

  it("knows a price it made when Stripe shows it back, however the decimals are spelt", () => {
    const tiered = stripePrice({
      billing_scheme: "tiered", tiers_mode: "graduated",
      tiers: [
        { up_to: 1000, unit_amount: 0, unit_amount_decimal: Stripe.Decimal.from("0"), flat_amount: null, flat_amount_decimal: null },
        { up_to: null, unit_amount: 10, unit_amount_decimal: Stripe.Decimal.from("10.000000000000"), flat_amount: null, flat_amount_decimal: null },
      ],
    });
    assert.ok(sameTerms(termsOfPrice(tiered), meterTerms({ ...bandwidth, unitCentsDecimal: "10.0" }, "mtr_bw")));
    assert.ok(!sameTerms(termsOfPrice(tiered), meterTerms({ ...bandwidth, freeUnits: 2000 }, "mtr_bw")), "another allowance is another price");
    assert.ok(!sameTerms(termsOfPrice(tiered), meterTerms(bandwidth, "mtr_other")), "another meter is another price");
    const perUnit = stripePrice({ billing_scheme: "per_unit", unit_amount_decimal: Stripe.Decimal.from("0.5") });
    assert.deepEqual(termsOfPrice(perUnit), { kind: "metered", meterId: "mtr_bw", freeUnits: 0, unitCentsDecimal: "0.5" });
    const yearly = stripePrice({ billing_scheme: "per_unit", unit_amount: 5, recurring: { interval: "year", interval_count: 1, meter: "mtr_bw", usage_type: "metered" } as Stripe.Price.Recurring });
    assert.equal(termsOfPrice(yearly), null, "a yearly price is not one deck made");
  });

  it("rounds a fractional allowance up, and treats a zero unit price as unlimited", () => {
    assert.deepEqual(meterTerms({ meter: "bandwidth_gb", unitCentsDecimal: "10", freeUnits: 99.2 }, "m"), { kind: "metered", meterId: "m", freeUnits: 100, unitCentsDecimal: "10" });
    assert.deepEqual(meterTerms({ meter: "bandwidth_gb", unitCentsDecimal: "0.00", freeUnits: 5 }, "m"), { kind: "metered", meterId: "m", freeUnits: null, unitCentsDecimal: "0" });
  });

  it("reads the plan code back from a fee price's lookup key", () => {
    assert.deepEqual(["deck_plan_pro", "deck_plan_enterprise_acme", "other_key", "deck_plan_", null].map(planCodeFromLookupKey), ["pro", "enterprise_acme", null, null, null]);
  });
});
