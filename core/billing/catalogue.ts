import { z } from "zod/v4";

/**
 * What deck sells: plans (a monthly fee and monthly allowances) and the price of usage beyond a
 * plan's allowance. A platform admin can replace any of it with a JSON object (a file or the admin
 * API); whatever the object leaves out keeps the value in `DEFAULT_CATALOGUE`.
 */

/** The units an invoice shows and prices are set in. */
export const BILLING_METERS = ["build_minutes", "bandwidth_gb", "storage_gb_month", "custom_domains"] as const;
export type BillingMeter = (typeof BILLING_METERS)[number];

/** The units the usage ledger records (integers). */
export const LEDGER_METERS = ["build_seconds", "bandwidth_bytes", "storage_byte_hours", "domain_days"] as const;
export type LedgerMeter = (typeof LEDGER_METERS)[number];

export interface MeterInfo {
  /** What the ledger counts for this meter. */
  readonly ledger: LedgerMeter;
  /** The billing unit as shown after a quantity: "1,234.5 min". */
  readonly unit: string;
  /** What the meter is, as the first words of an invoice line. */
  readonly label: string;
}

/**
 * How each billing unit is made from ledger units (`countLedgerUnitsPerBillingUnit`):
 * - build minutes = build seconds / 60, to the exact fraction;
 * - bandwidth GB = bytes in and out / 10^9;
 * - storage GB-month = byte-hours / (10^9 × hours in the billing period): the average number of GB
 *   held over the period, so 10 GB kept all month is 10 GB-month whether the month has 28 or 31 days;
 * - custom domain-months = domain-days / days in the period: two domains all month are 2.
 */
export const METERS: Readonly<Record<BillingMeter, MeterInfo>> = {
  build_minutes: { ledger: "build_seconds", unit: "min", label: "Build minutes" },
  bandwidth_gb: { ledger: "bandwidth_bytes", unit: "GB", label: "Bandwidth" },
  storage_gb_month: { ledger: "storage_byte_hours", unit: "GB-month", label: "Storage" },
  custom_domains: { ledger: "domain_days", unit: "domain-months", label: "Custom domains" },
};

/** A plan as the catalogue (or, for Enterprise, a platform admin per org) defines it. */
export interface Plan {
  /** Stable code stored with an org's plan: `free`, `pro`, … */
  code: string;
  name: string;
  /** The fee for a whole billing month, in cents. */
  monthlyCents: number;
  /** Free units per month in billing units; a meter left out has none, `null` is unlimited. */
  allowances: Partial<Record<BillingMeter, number | null>>;
  /** Cents per billing unit for this plan where it differs from the catalogue's. */
  prices?: Partial<Record<BillingMeter, number>>;
  /** Fee and allowances are set per org (Enterprise): the org's plan change carries them. */
  custom?: boolean;
}

export interface Catalogue {
  currency: "usd";
  /** Cents per billing unit beyond a plan's allowance (fractions of a cent allowed). */
  prices: Record<BillingMeter, number>;
  plans: Plan[];
}

export const DEFAULT_CATALOGUE: Catalogue = {
  currency: "usd",
  prices: { build_minutes: 1, bandwidth_gb: 10, storage_gb_month: 2, custom_domains: 500 },
  plans: [
    { code: "free", name: "Free", monthlyCents: 0, allowances: { build_minutes: 100, bandwidth_gb: 100 } },
    { code: "pro", name: "Pro", monthlyCents: 2000, allowances: { build_minutes: 1000, bandwidth_gb: 1000 } },
    { code: "business", name: "Business", monthlyCents: 9900, allowances: { build_minutes: null, bandwidth_gb: 10_000 } },
    { code: "enterprise", name: "Enterprise", monthlyCents: 0, allowances: {}, custom: true },
  ],
};

/** Decimals beyond a millionth of a unit or cent are a typo, not a price. */
const MAX_DECIMALS = 6;

function countDecimals(n: number): number {
  const [digits, exponent] = String(n).split("e");
  const fraction = digits!.split(".")[1]?.length ?? 0;
  return Math.max(0, fraction - Number(exponent ?? 0));
}

const makeAmountSchema = (what: string) =>
  z.number({ error: `expected a number of ${what}` })
    .refine((n) => n >= 0, { error: `expected a number of ${what} ≥ 0`, abort: true })
    .refine((n) => n <= 1e12, { error: `expected at most 10^12 ${what}`, abort: true })
    .refine((n) => countDecimals(n) <= MAX_DECIMALS, { error: `expected at most ${MAX_DECIMALS} decimal places` });

const ALLOWANCE_SCHEMA = z.union([makeAmountSchema("units"), z.null()], { error: "expected a number of units ≥ 0, or null for unlimited" });

const makeMeterShape = <T extends z.ZodType>(value: T) =>
  Object.fromEntries(BILLING_METERS.map((m) => [m, value.optional()])) as Record<BillingMeter, z.ZodOptional<T>>;

export const PLAN_SCHEMA = z.strictObject({
  code: z.string().regex(/^[a-z][a-z0-9_-]{0,31}$/, { error: "expected lowercase letters, digits, - or _ (up to 32), starting with a letter" }),
  name: z.string().min(1, { error: "expected a name" }).max(60, { error: "expected at most 60 characters" }),
  monthlyCents: z.number({ error: "expected a whole number of cents" }).int({ error: "expected a whole number of cents" }).min(0, { error: "expected a whole number of cents ≥ 0" }).max(1e10, { error: "expected at most 10^10 cents" }),
  allowances: z.strictObject(makeMeterShape(ALLOWANCE_SCHEMA)).default({}),
  prices: z.strictObject(makeMeterShape(makeAmountSchema("cents"))).optional(),
  custom: z.boolean({ error: "expected true or false" }).optional(),
}, { error: "expected a JSON object" });

export const CATALOGUE_SCHEMA = z.strictObject({
  currency: z.literal("usd", { error: "expected \"usd\" (the only currency deck bills in)" }).default("usd"),
  prices: z.strictObject(makeMeterShape(makeAmountSchema("cents"))).default({}),
  plans: z.array(PLAN_SCHEMA, { error: "expected a list of plans" }).min(1, { error: "expected at least one plan" }).optional(),
}, { error: "expected a JSON object" }).superRefine((value, ctx) => {
  const seen = new Set<string>();
  for (const [i, plan] of (value.plans ?? []).entries()) {
    if (seen.has(plan.code)) ctx.addIssue({ code: "custom", input: plan.code, path: ["plans", i, "code"], message: `plan code "${plan.code}" appears twice` });
    seen.add(plan.code);
  }
});

export type CatalogueResult = { ok: true; catalogue: Catalogue } | { ok: false; error: string };
export type PlanResult = { ok: true; plan: Plan } | { ok: false; error: string };

/** The first problem as one line naming the field: `plans[1].monthlyCents: expected a whole number of cents`. */
function describeIssue(error: z.ZodError, json: unknown, what: string): string {
  const issue = error.issues[0]!;
  const path = issue.path.map((p, i) => (typeof p === "number" ? `[${p}]` : `${i ? "." : ""}${String(p)}`)).join("") || what;
  if (issue.code === "unrecognized_keys") return `${path}: unknown field${issue.keys.length > 1 ? "s" : ""} ${issue.keys.map((k) => JSON.stringify(k)).join(", ")}`;
  if (issue.path.length && readPath(json, issue.path) === undefined) return `${path}: required`;
  return `${path}: ${issue.message}`;
}

function readPath(json: unknown, path: readonly PropertyKey[]): unknown {
  let v = json;
  for (const key of path) v = v !== null && typeof v === "object" ? (v as Record<PropertyKey, unknown>)[key] : undefined;
  return v;
}

/** A catalogue from JSON an admin supplied; prices and plans it leaves out are the defaults. */
export function parseCatalogue(json: unknown): CatalogueResult {
  const r = CATALOGUE_SCHEMA.safeParse(json);
  if (!r.success) return { ok: false, error: describeIssue(r.error, json, "catalogue") };
  return {
    ok: true,
    catalogue: {
      currency: r.data.currency,
      prices: { ...DEFAULT_CATALOGUE.prices, ...dropUndefined(r.data.prices) },
      plans: r.data.plans ? r.data.plans.map(toPlan) : DEFAULT_CATALOGUE.plans,
    },
  };
}

/** One plan from JSON: an Enterprise org's terms as a platform admin sets them. */
export function parsePlan(json: unknown): PlanResult {
  const r = PLAN_SCHEMA.safeParse(json);
  return r.success ? { ok: true, plan: toPlan(r.data) } : { ok: false, error: describeIssue(r.error, json, "plan") };
}

function toPlan(p: z.infer<typeof PLAN_SCHEMA>): Plan {
  const plan: Plan = { code: p.code, name: p.name, monthlyCents: p.monthlyCents, allowances: dropUndefined(p.allowances) };
  if (p.prices) plan.prices = dropUndefined(p.prices);
  if (p.custom !== undefined) plan.custom = p.custom;
  return plan;
}

function dropUndefined<T extends object>(o: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as { [K in keyof T]?: Exclude<T[K], undefined> };
}

/** The catalogue's plan with this code, or undefined. */
export function findPlan(catalogue: Catalogue, code: string): Plan | undefined {
  return catalogue.plans.find((p) => p.code === code);
}

/**
 * The plan an org is on before any plan change of its own (and the one whose limits stop builds and
 * throttle traffic): the catalogue's first plan without a fee that is not custom.
 */
export function startingPlan(catalogue: Catalogue): Plan {
  return catalogue.plans.find((p) => p.monthlyCents === 0 && !p.custom) ?? catalogue.plans[0]!;
}
