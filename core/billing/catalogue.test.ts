import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DEFAULT_CATALOGUE, findPlan, parseCatalogue, parsePlan } from "./catalogue.ts";

describe("the default catalogue", () => {
  it("sells what the product spec lists", () => {
    assert.deepEqual(DEFAULT_CATALOGUE.prices, { build_minutes: 1, bandwidth_gb: 10, storage_gb_month: 2, custom_domains: 500 });
    assert.deepEqual(findPlan(DEFAULT_CATALOGUE, "free"), { code: "free", name: "Free", monthlyCents: 0, allowances: { build_minutes: 100, bandwidth_gb: 100 } });
    assert.deepEqual(findPlan(DEFAULT_CATALOGUE, "pro"), { code: "pro", name: "Pro", monthlyCents: 2000, allowances: { build_minutes: 1000, bandwidth_gb: 1000 } });
    assert.deepEqual(findPlan(DEFAULT_CATALOGUE, "business"), { code: "business", name: "Business", monthlyCents: 9900, allowances: { build_minutes: null, bandwidth_gb: 10_000 } });
    assert.equal(findPlan(DEFAULT_CATALOGUE, "enterprise")?.custom, true);
  });

  it("is what an empty JSON object gives", () => {
    assert.deepEqual(parseCatalogue({}), { ok: true, catalogue: DEFAULT_CATALOGUE });
  });
});

describe("parseCatalogue", () => {
  it("keeps the default for every price left out and replaces the plan list when one is given", () => {
    const r = parseCatalogue({ prices: { bandwidth_gb: 8.5 }, plans: [{ code: "team", name: "Team", monthlyCents: 4900, allowances: { build_minutes: 3000, storage_gb_month: 50 } }] });
    assert.ok(r.ok);
    assert.deepEqual(r.catalogue.prices, { build_minutes: 1, bandwidth_gb: 8.5, storage_gb_month: 2, custom_domains: 500 });
    assert.deepEqual(r.catalogue.plans, [{ code: "team", name: "Team", monthlyCents: 4900, allowances: { build_minutes: 3000, storage_gb_month: 50 } }]);
  });

  const bad: [string, unknown, string][] = [
    ["not an object", "pro", "catalogue: expected a JSON object"],
    ["a misspelt meter", { prices: { build_minute: 1 } }, 'prices: unknown field "build_minute"'],
    ["a negative price", { prices: { build_minutes: -1 } }, "prices.build_minutes: expected a number of cents ≥ 0"],
    ["a price as text", { prices: { bandwidth_gb: "10" } }, "prices.bandwidth_gb: expected a number of cents"],
    ["a price finer than a millionth", { prices: { storage_gb_month: 0.0000001 } }, "prices.storage_gb_month: expected at most 6 decimal places"],
    ["a fee in fractions of a cent", { plans: [{ code: "x", name: "X", monthlyCents: 1.5 }] }, "plans[0].monthlyCents: expected a whole number of cents"],
    ["a plan without a fee", { plans: [{ code: "x", name: "X" }] }, "plans[0].monthlyCents: required"],
    ["an allowance as text", { plans: [{ code: "x", name: "X", monthlyCents: 0, allowances: { bandwidth_gb: "100" } }] }, "plans[0].allowances.bandwidth_gb: expected a number of units ≥ 0, or null for unlimited"],
    ["a plan code twice", { plans: [{ code: "x", name: "X", monthlyCents: 0 }, { code: "x", name: "Y", monthlyCents: 0 }] }, 'plans[1].code: plan code "x" appears twice'],
    ["a bad plan code", { plans: [{ code: "Pro Plan", name: "X", monthlyCents: 0 }] }, "plans[0].code: expected lowercase letters, digits, - or _ (up to 32), starting with a letter"],
    ["another currency", { currency: "eur" }, 'currency: expected "usd" (the only currency deck bills in)'],
    ["no plans", { plans: [] }, "plans: expected at least one plan"],
  ];
  for (const [what, json, error] of bad) {
    it(`refuses ${what} in one line naming the field`, () => {
      assert.deepEqual(parseCatalogue(json), { ok: false, error });
    });
  }
});

describe("parsePlan", () => {
  it("reads an Enterprise org's terms, prices included", () => {
    assert.deepEqual(parsePlan({ code: "enterprise", name: "Enterprise (Acme)", monthlyCents: 150_000, allowances: { build_minutes: null }, prices: { bandwidth_gb: 5 } }), {
      ok: true, plan: { code: "enterprise", name: "Enterprise (Acme)", monthlyCents: 150_000, allowances: { build_minutes: null }, prices: { bandwidth_gb: 5 } },
    });
    assert.deepEqual(parsePlan({ code: "enterprise", name: "", monthlyCents: 0 }), { ok: false, error: "name: expected a name" });
  });
});
