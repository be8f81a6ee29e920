import { BILLING_METERS, METERS, type BillingMeter, type LedgerMeter } from "./catalogue.ts";
import { parseInstant } from "./period.ts";
import type { PlanSegment } from "./plan-segments.ts";
import { add, multiply, toRational, ZERO, type Rational } from "./rational.ts";

/** One row of the usage ledger, as rating receives it. */
export interface UsageEntry {
  /** Idempotency key: the ledger may hand the same entry over twice; it counts once. */
  id: string;
  orgId: number;
  /** The app the usage belongs to; null for usage of the org as a whole. */
  app: string | null;
  meter: LedgerMeter;
  /** A whole number of ledger units (seconds, bytes, byte-hours, domain-days). */
  quantity: bigint | number;
  /** When it happened (ISO 8601 with a zone). */
  at: string;
}

const LEDGER_INDEX: Readonly<Record<string, number>> = Object.fromEntries(BILLING_METERS.map((m, i) => [METERS[m].ledger, i]));

/**
 * Ledger units in one billing unit. Storage and domains are averages over the period, so their
 * divisor grows with its length: a GB-month is 10^9 bytes held for every hour of the period, a
 * domain-month one domain for every day of it.
 */
export function countLedgerUnitsPerBillingUnit(meter: BillingMeter, periodSeconds: number): Rational {
  switch (meter) {
    case "build_minutes": return toRational(60n);
    case "bandwidth_gb": return toRational(1_000_000_000n);
    case "storage_gb_month": return toRational(1_000_000_000n * BigInt(periodSeconds), 3600n);
    case "custom_domains": return toRational(BigInt(periodSeconds), 86_400n);
  }
}

/** Usage of one meter in one segment: exact ledger units per app. */
export interface MeterUsage {
  apps: Map<string | null, Rational>;
  ids: string[] | null;
  count: number;
}

/** A running sum kept in a float while it is exact, so most entries cost no BigInt. */
interface Sum {
  small: number;
  big: bigint;
}

function addTo(sum: Sum, q: bigint | number): void {
  if (typeof q === "bigint") {
    sum.big += q;
    return;
  }
  const s = sum.small + q;
  if (s > Number.MAX_SAFE_INTEGER) {
    sum.big += BigInt(sum.small) + BigInt(q);
    sum.small = 0;
  } else sum.small = s;
}

function checkQuantity(e: UsageEntry): void {
  const q = e.quantity;
  if (typeof q === "bigint" ? q < 0n : !(Number.isSafeInteger(q) && q >= 0)) {
    throw new RangeError(`ledger entry ${e.id}: quantity ${String(q)} is not a whole number ≥ 0`);
  }
}

/** Sums the entries in [fromMs, toMs) per segment, meter and app. */
export function collectUsage(options: { entries: Iterable<UsageEntry>; orgId: number; segments: PlanSegment[]; fromMs: number; toMs: number; keepIds: boolean }): MeterUsage[][] {
  const { segments, fromMs, toMs, keepIds, orgId } = options;
  const buckets = segments.map(() => BILLING_METERS.map(() => ({ apps: new Map<string | null, Sum>(), ids: keepIds ? ([] as string[]) : null, count: 0 })));
  const seen = new Set<string>();
  const last = segments.length - 1;
  for (const e of options.entries) {
    if (seen.has(e.id)) continue;
    seen.add(e.id);
    if (e.orgId !== orgId) throw new RangeError(`ledger entry ${e.id} belongs to org ${e.orgId}, not ${orgId}`);
    const m = LEDGER_INDEX[e.meter];
    if (m === undefined) throw new RangeError(`ledger entry ${e.id}: unknown meter ${JSON.stringify(e.meter)}`);
    checkQuantity(e);
    const ms = parseInstant(e.at, `ledger entry ${e.id}`);
    if (ms < fromMs || ms >= toMs) continue;
    // Usage before the org's first plan (which should not exist) counts in the first segment.
    let s = last;
    while (s > 0 && ms < segments[s]!.fromMs) s--;
    const bucket = buckets[s]![m]!;
    let sum = bucket.apps.get(e.app);
    if (!sum) bucket.apps.set(e.app, (sum = { small: 0, big: 0n }));
    addTo(sum, e.quantity);
    bucket.ids?.push(e.id);
    bucket.count += 1;
  }
  return buckets.map((meters) => meters.map((b) => ({
    apps: new Map([...b.apps].map(([app, s]) => [app, toRational(s.big + BigInt(s.small))])),
    ids: b.ids ? b.ids.sort() : null,
    count: b.count,
  })));
}

/** Adds `from` × `factor` into `into`, app by app. */
export function mergeUsage(into: MeterUsage, from: MeterUsage, factor: Rational): void {
  for (const [app, q] of from.apps) into.apps.set(app, add(into.apps.get(app) ?? ZERO, multiply(q, factor)));
  if (into.ids && from.ids) into.ids.push(...from.ids);
  into.count += from.count;
}

/** No usage of any meter: what a segment starts with. */
export function makeEmptyUsage(keepIds: boolean): MeterUsage[] {
  return BILLING_METERS.map(() => ({ apps: new Map(), ids: keepIds ? [] : null, count: 0 }));
}
