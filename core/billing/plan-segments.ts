import { BILLING_METERS, findPlan, startingPlan, type BillingMeter, type Catalogue, type Plan } from "./catalogue.ts";
import { floorToSecond, parseInstant } from "./period.ts";
import { parseDecimal, toRational, type Rational } from "./rational.ts";

/** One entry of an org's plan history: from `from` on, the org is on `plan`. */
export interface PlanChange {
  plan: string;
  from: string;
  /** The org's own fee and allowances, for a plan the catalogue marks `custom` (Enterprise). */
  customPlan?: Plan;
}

/** A plan with every number exact and every meter filled in from the catalogue. */
export interface PlanTerms {
  code: string;
  name: string;
  monthlyCents: bigint;
  /** Free billing units for a whole month; null is unlimited. */
  allowances: Record<BillingMeter, Rational | null>;
  /** Cents per billing unit beyond the allowance. */
  prices: Record<BillingMeter, Rational>;
  unitCents: Record<BillingMeter, number>;
}

/** A stretch of time with one plan in force. */
export interface PlanSegment {
  fromMs: number;
  toMs: number;
  terms: PlanTerms;
}

function resolveTerms(catalogue: Catalogue, change: PlanChange): { terms: PlanTerms; identity: string } {
  const listed = findPlan(catalogue, change.plan);
  if (!listed) throw new RangeError(`plan history names plan "${change.plan}", which the catalogue does not have`);
  if (listed.custom && !change.customPlan) throw new RangeError(`plan "${change.plan}" from ${change.from} is set per org but the change carries no terms`);
  if (!listed.custom && change.customPlan) throw new RangeError(`plan "${change.plan}" from ${change.from} is not a custom plan but the change carries terms`);
  const plan = change.customPlan ?? listed;
  const allowances = {} as Record<BillingMeter, Rational | null>;
  const prices = {} as Record<BillingMeter, Rational>;
  const unitCents = {} as Record<BillingMeter, number>;
  for (const m of BILLING_METERS) {
    const a = plan.allowances[m];
    allowances[m] = a === null ? null : parseDecimal(a ?? 0);
    unitCents[m] = plan.prices?.[m] ?? catalogue.prices[m];
    prices[m] = parseDecimal(unitCents[m]);
  }
  const terms: PlanTerms = { code: listed.code, name: plan.name, monthlyCents: BigInt(plan.monthlyCents), allowances, prices, unitCents };
  return { terms, identity: JSON.stringify([listed.code, change.customPlan ?? null]) };
}

/**
 * The plans in force over [fromMs, toMs), in time order. The plan at an instant is the latest change
 * at or before it (changes at the same second: the later in the list wins); changes are cut to the
 * second. A change to the plan already in force starts no new segment, so re-saving a plan never
 * splits the fee. Time before an org's first change has no plan and no fee.
 */
export function splitByPlan(options: { catalogue: Catalogue; planHistory: readonly PlanChange[]; fromMs: number; toMs: number }): PlanSegment[] {
  const { catalogue, fromMs, toMs } = options;
  const changes = options.planHistory
    .map((c, i) => ({ c, i, at: floorToSecond(parseInstant(c.from, `plan change to "${c.plan}"`)) }))
    .sort((a, b) => a.at - b.at || a.i - b.i);
  const segments: (PlanSegment & { identity: string })[] = [];
  let current: { at: number; change: PlanChange } | undefined;
  const close = (until: number) => {
    if (!current || until <= fromMs) return;
    const start = Math.max(current.at, fromMs);
    if (until <= start) return;
    const { terms, identity } = resolveTerms(catalogue, current.change);
    const last = segments.at(-1);
    if (last && last.identity === identity && last.toMs === start) last.toMs = until;
    else segments.push({ fromMs: start, toMs: until, terms, identity });
  };
  for (const { c, at } of changes) {
    if (at >= toMs) break;
    close(at);
    current = { at, change: c };
  }
  close(toMs);
  if (segments.length === 0) throw new RangeError(`no plan is in force between ${new Date(fromMs).toISOString()} and ${new Date(toMs).toISOString()}`);
  return segments.map(({ fromMs, toMs, terms }) => ({ fromMs, toMs, terms }));
}

/** A monthly amount (fee or allowance) for `seconds` of a period of `periodSeconds`, exact. */
export function prorate(amount: Rational, seconds: number, periodSeconds: number): Rational {
  return toRational(amount.n * BigInt(seconds), amount.d * BigInt(periodSeconds));
}

/**
 * The plan in force at `atMs` under an org's history (the latest change at or before it; before the
 * first, the first): an Enterprise org's own terms, else the catalogue's plan, else the starting plan.
 */
export function planInForce(catalogue: Catalogue, history: readonly PlanChange[], atMs: number): Plan {
  const change = [...history].reverse().find((h) => Date.parse(h.from) <= atMs) ?? history[0];
  return change?.customPlan ?? (change ? findPlan(catalogue, change.plan) : undefined) ?? startingPlan(catalogue);
}
