import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type Stripe from "stripe";
import { planItemChanges } from "./stripe-provider.ts";

type Item = { id: string; price: { id: string; recurring: { usage_type: string; meter: string | null } } };
const fee = (id: string, price: string): Item => ({ id, price: { id: price, recurring: { usage_type: "licensed", meter: null } } });
const metered = (id: string, price: string, meter: string): Item => ({ id, price: { id: price, recurring: { usage_type: "metered", meter } } });
const subscription = (items: Item[]) => ({ items: { data: items } }) as unknown as Pick<Stripe.Subscription, "items">;

const METERS = { build_minutes: "mtr_build", bandwidth_gb: "mtr_bw", storage_gb_month: "mtr_st" };
const PRO = { priceId: "price_pro", meterPriceIds: { build_minutes: "price_pro_build", bandwidth_gb: "price_pro_bw", storage_gb_month: "price_pro_st" } };

describe("planItemChanges", () => {
  it("moves the fee and each meter's item to the new plan's price in place, so Stripe prorates them", () => {
    const free = subscription([fee("si_fee", "price_free"), metered("si_build", "price_free_build", "mtr_build"), metered("si_bw", "price_free_bw", "mtr_bw"), metered("si_st", "price_pro_st", "mtr_st")]);
    assert.deepEqual(planItemChanges(free, PRO, METERS), [
      { id: "si_fee", price: "price_pro" },
      { id: "si_build", price: "price_pro_build" },
      { id: "si_bw", price: "price_pro_bw" },
    ]);
  });

  it("adds the items a subscription lacks and removes those the plan has no place for", () => {
    const odd = subscription([metered("si_bw", "price_pro_bw", "mtr_bw"), metered("si_old", "price_x", "mtr_retired"), metered("si_bw2", "price_pro_bw", "mtr_bw")]);
    assert.deepEqual(planItemChanges(odd, PRO, METERS), [
      { id: "si_old", deleted: true },
      { id: "si_bw2", deleted: true },
      { price: "price_pro" },
      { price: "price_pro_build" },
      { price: "price_pro_st" },
    ]);
  });

  it("changes nothing on a subscription already on the plan", () => {
    const pro = subscription([fee("a", "price_pro"), metered("b", "price_pro_build", "mtr_build"), metered("c", "price_pro_bw", "mtr_bw"), metered("d", "price_pro_st", "mtr_st")]);
    assert.deepEqual(planItemChanges(pro, PRO, METERS), []);
  });
});
