import { allocateCents } from "./allocation.ts";
import { BILLING_METERS, METERS, type BillingMeter, type Catalogue } from "./catalogue.ts";
import { collectUsage, countLedgerUnitsPerBillingUnit, type MeterUsage, type UsageEntry } from "./ledger-usage.ts";
import { parsePeriod, type Period } from "./period.ts";
import { prorate, splitByPlan, type PlanChange, type PlanSegment } from "./plan-segments.ts";
import { add, compare, divide, formatDecimal, multiply, roundHalfUp, subtract, toRational, toSafeNumber, ZERO, type Rational } from "./rational.ts";

/** Money an org is owed (goodwill, a refund, a promotion), taken off an invoice's total. */
export interface Credit {
  id: string;
  cents: number;
  reason: string;
}

export interface RatingInput {
  orgId: number;
  catalogue: Catalogue;
  /** Every plan change of the org; the plan at an instant is the latest change at or before it. */
  planHistory: readonly PlanChange[];
  /** The billing month: first of the month 00:00 UTC to the first of the next. */
  period: Period;
  /** The org's ledger entries; entries outside the period are ignored, repeated ids count once. */
  entries: Iterable<UsageEntry>;
  credits?: readonly Credit[];
  /**
   * "ids" (the default) keeps on every usage line the ids of the entries it came from; "count" keeps
   * only their number, for rating many orgs at once; `traceLine` finds the ids again.
   */
  trace?: "ids" | "count";
}

/** What one plan segment's monthly fee comes to: `monthlyCents × seconds / periodSeconds`. */
export interface FeeLine {
  kind: "fee";
  /** Which plan segment of the period (0 = the first). */
  segment: number;
  plan: string;
  planName: string;
  from: string;
  to: string;
  seconds: number;
  periodSeconds: number;
  monthlyCents: number;
  amountCents: number;
}

/** One app's part of a usage line. */
export interface AppShare {
  app: string | null;
  ledgerQuantity: string;
  used: string;
  /** The app's part of the line's amount, in proportion to its usage; the parts add up to the line. */
  amountCents: number;
}

/**
 * One meter in one plan segment. Quantities are decimals in billing units (at most 6 places, for
 * display); the amount is computed from the exact values and rounded to the cent once, half up.
 */
export interface UsageLine {
  kind: "usage";
  segment: number;
  plan: string;
  planName: string;
  from: string;
  to: string;
  seconds: number;
  periodSeconds: number;
  meter: BillingMeter;
  unit: string;
  /** The sum of the entries in ledger units (seconds, bytes, byte-hours, domain-days). */
  ledgerQuantity: string;
  used: string;
  /** The plan's monthly allowance × seconds / periodSeconds; null is unlimited. */
  allowance: string | null;
  included: string;
  overage: string;
  unitCents: number;
  amountCents: number;
  entryCount: number;
  /** The ledger ids the line came from, sorted; absent when rated with `trace: "count"`. */
  entryIds?: string[];
  /** Apps by name, usage of the org as a whole (app null) last. */
  apps: AppShare[];
}

export interface CreditLine {
  kind: "credit";
  creditId: string;
  reason: string;
  grantedCents: number;
  /** What the credit takes off (≤ 0): never more than what is left of the total. */
  amountCents: number;
  unusedCents: number;
}

export type InvoiceLine = FeeLine | UsageLine | CreditLine;

/** An app's usage and usage cost over the whole period (`billing:usage ORG`). */
export interface AppUsageSummary {
  app: string | null;
  used: Record<BillingMeter, string>;
  amountCents: number;
}

export interface RatedInvoice {
  orgId: number;
  period: Period;
  periodSeconds: number;
  /** Per plan segment in time order: its fee, then each meter; then the credits. */
  lines: InvoiceLine[];
  /** Fees and usage. */
  subtotalCents: number;
  /** Credit applied (≥ 0). */
  creditCents: number;
  /** subtotal − credit: the sum of all lines, never below zero. */
  totalCents: number;
  unusedCredits: Array<{ id: string; cents: number }>;
  apps: AppUsageSummary[];
}

/** Apps by name, the org's own usage (null) last: the order lines list them and ties split in. */
function compareApps(a: string | null, b: string | null): number {
  if (a === b) return 0;
  if (a === null) return 1;
  if (b === null) return -1;
  return a < b ? -1 : 1;
}

function pickSmaller(a: Rational, b: Rational): Rational {
  return compare(a, b) <= 0 ? a : b;
}

interface AppTotals {
  used: Record<BillingMeter, Rational>;
  cents: bigint;
}

function rateUsage(options: { segment: PlanSegment; index: number; meter: BillingMeter; usage: MeterUsage; periodSeconds: number; appTotals: Map<string | null, AppTotals> }): UsageLine {
  const { segment, index, meter, usage, periodSeconds } = options;
  const { terms } = segment;
  const seconds = (segment.toMs - segment.fromMs) / 1000;
  const perUnit = countLedgerUnitsPerBillingUnit(meter, periodSeconds);
  const apps = [...usage.apps].sort((a, b) => compareApps(a[0], b[0]));
  const quantity = apps.reduce((s, [, q]) => add(s, q), ZERO);
  const used = divide(quantity, perUnit);
  const monthly = terms.allowances[meter];
  const allowance = monthly === null ? null : prorate(monthly, seconds, periodSeconds);
  const included = allowance === null ? used : pickSmaller(used, allowance);
  const overage = subtract(used, included);
  const amount = roundHalfUp(multiply(overage, terms.prices[meter]));
  const shares = allocateCents(amount, apps.map(([, q]) => q));
  const line: UsageLine = {
    kind: "usage", segment: index, plan: terms.code, planName: terms.name,
    from: new Date(segment.fromMs).toISOString(), to: new Date(segment.toMs).toISOString(), seconds, periodSeconds,
    meter, unit: METERS[meter].unit,
    ledgerQuantity: formatDecimal(quantity), used: formatDecimal(used),
    allowance: allowance === null ? null : formatDecimal(allowance), included: formatDecimal(included), overage: formatDecimal(overage),
    unitCents: terms.unitCents[meter], amountCents: toSafeNumber(amount), entryCount: usage.count,
    apps: apps.map(([app, q], i) => ({ app, ledgerQuantity: formatDecimal(q), used: formatDecimal(divide(q, perUnit)), amountCents: toSafeNumber(shares[i]!) })),
  };
  if (usage.ids) line.entryIds = usage.ids;
  for (const [i, [app, q]] of apps.entries()) {
    let t = options.appTotals.get(app);
    if (!t) options.appTotals.set(app, (t = { used: Object.fromEntries(BILLING_METERS.map((m) => [m, ZERO])) as Record<BillingMeter, Rational>, cents: 0n }));
    t.used[meter] = add(t.used[meter], divide(q, perUnit));
    t.cents += shares[i]!;
  }
  return line;
}

function applyCredits(credits: readonly Credit[], subtotal: bigint): { lines: CreditLine[]; applied: bigint } {
  const seen = new Set<string>();
  const lines: CreditLine[] = [];
  let left = subtotal;
  let applied = 0n;
  for (const c of credits) {
    if (seen.has(c.id)) continue;
    seen.add(c.id);
    if (!Number.isSafeInteger(c.cents) || c.cents <= 0) throw new RangeError(`credit ${c.id}: ${c.cents} is not a whole number of cents above 0`);
    const granted = BigInt(c.cents);
    const take = granted < left ? granted : left;
    left -= take;
    applied += take;
    lines.push({ kind: "credit", creditId: c.id, reason: c.reason, grantedCents: c.cents, amountCents: toSafeNumber(-take), unusedCents: toSafeNumber(granted - take) });
  }
  return { lines, applied };
}

/** Lines and totals for segments whose usage is already summed (exact ledger units per app). */
export function buildInvoice(options: { input: RatingInput; segments: PlanSegment[]; usage: MeterUsage[][]; periodSeconds: number }): RatedInvoice {
  const { input, segments, usage, periodSeconds } = options;
  const lines: InvoiceLine[] = [];
  const appTotals = new Map<string | null, AppTotals>();
  let subtotal = 0n;
  for (const [index, segment] of segments.entries()) {
    const seconds = (segment.toMs - segment.fromMs) / 1000;
    const fee = roundHalfUp(prorate(toRational(segment.terms.monthlyCents), seconds, periodSeconds));
    subtotal += fee;
    lines.push({
      kind: "fee", segment: index, plan: segment.terms.code, planName: segment.terms.name,
      from: new Date(segment.fromMs).toISOString(), to: new Date(segment.toMs).toISOString(), seconds, periodSeconds,
      monthlyCents: toSafeNumber(segment.terms.monthlyCents), amountCents: toSafeNumber(fee),
    });
    for (const [m, meter] of BILLING_METERS.entries()) {
      const line = rateUsage({ segment, index, meter, usage: usage[index]![m]!, periodSeconds, appTotals });
      subtotal += BigInt(line.amountCents);
      lines.push(line);
    }
  }
  const credits = applyCredits(input.credits ?? [], subtotal);
  lines.push(...credits.lines);
  const { startMs, endMs } = parsePeriod(input.period);
  return {
    orgId: input.orgId,
    period: { start: new Date(startMs).toISOString(), end: new Date(endMs).toISOString() },
    periodSeconds,
    lines,
    subtotalCents: toSafeNumber(subtotal),
    creditCents: toSafeNumber(credits.applied),
    totalCents: toSafeNumber(subtotal - credits.applied),
    unusedCredits: credits.lines.filter((l) => l.unusedCents > 0).map((l) => ({ id: l.creditId, cents: l.unusedCents })),
    apps: [...appTotals]
      .sort((a, b) => compareApps(a[0], b[0]))
      .map(([app, t]) => ({ app, used: Object.fromEntries(BILLING_METERS.map((m) => [m, formatDecimal(t.used[m])])) as Record<BillingMeter, string>, amountCents: toSafeNumber(t.cents) })),
  };
}

/**
 * The invoice for one org and one period: per plan segment its prorated fee and, per meter, the
 * usage, the prorated allowance, the overage and its price; then credits, never past zero. Every
 * amount is exact until it is rounded half-up to the cent, once per line, so the total is exactly
 * the sum of the lines. Throws on input that breaks the ledger's or catalogue's rules.
 */
export function rateInvoice(input: RatingInput): RatedInvoice {
  const { startMs, endMs } = parsePeriod(input.period);
  const periodSeconds = (endMs - startMs) / 1000;
  const segments = splitByPlan({ catalogue: input.catalogue, planHistory: input.planHistory, fromMs: startMs, toMs: endMs });
  const usage = collectUsage({ entries: input.entries, orgId: input.orgId, segments, fromMs: startMs, toMs: endMs, keepIds: input.trace !== "count" });
  return buildInvoice({ input, segments, usage, periodSeconds });
}

/**
 * The ledger ids an invoice's usage line came from (for `billing:explain`), also when the invoice
 * was rated with counts only: it rates the same input again, so `entries` must be readable twice (an
 * array, not a one-shot iterator).
 */
export function traceLine(input: RatingInput, line: Pick<UsageLine, "segment" | "meter">): string[] {
  const again = rateInvoice({ ...input, trace: "ids" });
  const found = again.lines.find((l): l is UsageLine => l.kind === "usage" && l.segment === line.segment && l.meter === line.meter);
  return found?.entryIds ?? [];
}
