/**
 * deck's plans as the Stripe adapter takes them (pure). The catalogue's plans become Stripe prices
 * shared by every org on them. A custom plan (Enterprise: fee and allowances set per org) gets prices
 * of its own per org, under the code `<plan>-org<id>`: its terms are the org's, and when a platform
 * admin changes them the adapter replaces that org's prices (their lookup keys stay the same).
 */
import { BILLING_METERS, type Catalogue, type Plan } from "../../core/index.ts";
import type { StripePlan } from "../stripe/index.ts";

/** A price in cents as a decimal string, never in exponent form ("0.5", "10", "0.000001"). */
export function formatCentsDecimal(cents: number): string {
  if (!Number.isFinite(cents) || cents < 0) throw new RangeError(`a price of ${cents} cents`);
  const plain = String(cents);
  return /e/i.test(plain) ? cents.toFixed(12).replace(/0+$/, "").replace(/\.$/, "") : plain;
}

/** The Stripe plan code of an org's custom plan: its prices are that org's alone. */
export function customPlanCode(plan: Pick<Plan, "code">, orgId: number): string {
  return `${plan.code}-org${orgId}`;
}

/**
 * One plan as Stripe's prices: the fee, and per meter what is included (unlimited stays unlimited; a
 * meter the plan leaves out includes nothing) and the price beyond it (the plan's own, else the
 * catalogue's). A custom plan needs the org it belongs to.
 */
export function toStripePlan(catalogue: Catalogue, plan: Plan, org?: { id: number; slug: string }): StripePlan {
  if (plan.custom && !org) throw new Error(`plan ${plan.code} is set per organisation: say which organisation's terms these are`);
  return {
    code: plan.custom && org ? customPlanCode(plan, org.id) : plan.code,
    name: plan.custom && org ? `${plan.name} (${org.slug})` : plan.name,
    monthlyCents: plan.monthlyCents,
    meters: BILLING_METERS.map((meter) => {
      const allowance = plan.allowances[meter];
      return { meter, unitCentsDecimal: formatCentsDecimal(plan.prices?.[meter] ?? catalogue.prices[meter]), freeUnits: allowance === undefined ? 0 : allowance };
    }),
  };
}

/** The catalogue's shared plans as Stripe plans; custom plans get their prices per org when an org is put on one. */
export function listCatalogueStripePlans(catalogue: Catalogue): StripePlan[] {
  return catalogue.plans.filter((p) => !p.custom).map((p) => toStripePlan(catalogue, p));
}
