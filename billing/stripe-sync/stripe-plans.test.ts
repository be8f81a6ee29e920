import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DEFAULT_CATALOGUE, findPlan, type Plan } from "../../core/index.ts";
import { formatCentsDecimal, listCatalogueStripePlans, toStripePlan } from "./stripe-plans.ts";

describe("deck's plans as Stripe plans", () => {
  it("gives each meter the plan's allowance (none when left out, unlimited as unlimited) and the catalogue's price beyond it", () => {
    assert.deepEqual(toStripePlan(DEFAULT_CATALOGUE, findPlan(DEFAULT_CATALOGUE, "pro")!), {
      code: "pro", name: "Pro", monthlyCents: 2000,
      meters: [
        { meter: "build_minutes", unitCentsDecimal: "1", freeUnits: 1000 },
        { meter: "bandwidth_gb", unitCentsDecimal: "10", freeUnits: 1000 },
        { meter: "storage_gb_month", unitCentsDecimal: "2", freeUnits: 0 },
        { meter: "custom_domains", unitCentsDecimal: "500", freeUnits: 0 },
      ],
    });
    assert.deepEqual(toStripePlan(DEFAULT_CATALOGUE, findPlan(DEFAULT_CATALOGUE, "business")!).meters[0], { meter: "build_minutes", unitCentsDecimal: "1", freeUnits: null });
  });

  it("makes the catalogue's shared plans, and an Enterprise org's terms into prices of that org alone", () => {
    assert.deepEqual(listCatalogueStripePlans(DEFAULT_CATALOGUE).map((p) => p.code), ["free", "pro", "business"]);
    const terms: Plan = { code: "enterprise", name: "Enterprise", monthlyCents: 50_000, allowances: { build_minutes: null, bandwidth_gb: 50_000 }, prices: { bandwidth_gb: 0.5 }, custom: true };
    const plan = toStripePlan(DEFAULT_CATALOGUE, terms, { id: 17, slug: "bigco" });
    assert.equal(plan.code, "enterprise-org17");
    assert.equal(plan.name, "Enterprise (bigco)");
    assert.equal(plan.monthlyCents, 50_000);
    assert.deepEqual(plan.meters[1], { meter: "bandwidth_gb", unitCentsDecimal: "0.5", freeUnits: 50_000 });
    assert.throws(() => toStripePlan(DEFAULT_CATALOGUE, terms), /plan enterprise is set per organisation/);
  });

  it("writes prices as plain decimals, however small", () => {
    assert.equal(formatCentsDecimal(0.000001), "0.000001");
    assert.equal(formatCentsDecimal(0.0000005), "0.0000005");
    assert.equal(formatCentsDecimal(12.5), "12.5");
    assert.throws(() => formatCentsDecimal(-1), /a price of -1 cents/);
  });
});
