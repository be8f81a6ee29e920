import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { describe, it } from "node:test";
import fc from "fast-check";
import { DEFAULT_CATALOGUE, parseCatalogue, type Catalogue, type Plan } from "./catalogue.ts";
import { describeLine } from "./line-description.ts";
import { toMonthlyPeriod } from "./period.ts";
import type { PlanChange } from "./plan-segments.ts";
import { forecastPeriod } from "./forecast.ts";
import type { UsageEntry } from "./ledger-usage.ts";
import { rateInvoice, traceLine, type Credit, type RatedInvoice, type RatingInput, type UsageLine } from "./rating.ts";

const GOLDEN = new URL("./golden/", import.meta.url);

/** A golden file's input as rating takes it: the default catalogue unless one is given, string quantities as BigInt. */
function toRatingInput(raw: Record<string, unknown>): RatingInput {
  let catalogue: Catalogue = DEFAULT_CATALOGUE;
  if (raw.catalogue !== undefined) {
    const parsed = parseCatalogue(raw.catalogue);
    assert.ok(parsed.ok, parsed.ok ? "" : parsed.error);
    catalogue = parsed.catalogue;
  }
  const entries = (raw.entries as Array<UsageEntry & { quantity: number | string }>).map((e) => ({ ...e, quantity: typeof e.quantity === "string" ? BigInt(e.quantity) : e.quantity }));
  return { ...(raw as unknown as RatingInput), catalogue, entries };
}

describe("golden invoices (expected values worked out by hand in each file's `why`)", () => {
  const files = readdirSync(GOLDEN).filter((f) => f.endsWith(".json")).sort();
  it("has the edge cases the product needs", () => assert.ok(files.length >= 10, files.join(", ")));
  for (const file of files) {
    it(file, () => {
      const golden = JSON.parse(readFileSync(new URL(file, GOLDEN), "utf8")) as { why: string[]; input: Record<string, unknown>; expected: RatedInvoice };
      assert.ok(golden.why.length > 0);
      const invoice = rateInvoice(toRatingInput(golden.input));
      assert.deepEqual(invoice, golden.expected);
      for (const line of invoice.lines) assert.ok(describeLine(line).length > 0);
    });
  }
});

const PERIOD = { start: "2027-01-01T00:00:00Z", end: "2027-02-01T00:00:00Z" };
const makeEntry = (id: string, meter: UsageEntry["meter"], quantity: number | bigint, at: string, app: string | null = "web"): UsageEntry => ({ id, orgId: 1, app, meter, quantity, at });
const findUsageLine = (inv: RatedInvoice, segment: number, meter: UsageLine["meter"]): UsageLine =>
  inv.lines.find((l): l is UsageLine => l.kind === "usage" && l.segment === segment && l.meter === meter)!;

describe("rating", () => {
  it("sums quantities past 2^53 exactly", () => {
    const inv = rateInvoice({
      orgId: 1, catalogue: DEFAULT_CATALOGUE, planHistory: [{ plan: "pro", from: "2026-01-01T00:00:00Z" }], period: PERIOD,
      entries: [makeEntry("a", "storage_byte_hours", Number.MAX_SAFE_INTEGER, "2027-01-02T00:00:00Z"), makeEntry("b", "storage_byte_hours", Number.MAX_SAFE_INTEGER, "2027-01-03T00:00:00Z"), makeEntry("c", "storage_byte_hours", 1n, "2027-01-04T00:00:00Z")],
    });
    assert.equal(findUsageLine(inv, 0, "storage_gb_month").ledgerQuantity, "18014398509481983");
    // 18014398509481983 / (1e9 × 744) GB-month × 2¢ = 48,425.80…¢
    assert.equal(findUsageLine(inv, 0, "storage_gb_month").amountCents, 48426);
  });

  it("keeps only counts when asked, and traceLine finds the ids again for billing:explain", () => {
    const input: RatingInput = {
      orgId: 1, catalogue: DEFAULT_CATALOGUE, planHistory: [{ plan: "free", from: "2026-01-01T00:00:00Z" }], period: PERIOD,
      entries: [makeEntry("z", "build_seconds", 60, "2027-01-02T00:00:00Z"), makeEntry("y", "build_seconds", 60, "2027-01-03T00:00:00Z"), makeEntry("x", "bandwidth_bytes", 5, "2027-01-03T00:00:00Z")],
      trace: "count",
    };
    const line = findUsageLine(rateInvoice(input), 0, "build_minutes");
    assert.equal(line.entryIds, undefined);
    assert.equal(line.entryCount, 2);
    assert.deepEqual(traceLine(input, line), ["y", "z"]);
  });

  it("refuses a history naming a plan the catalogue lacks, an Enterprise change without terms, and another org's entries", () => {
    const base = { orgId: 1, catalogue: DEFAULT_CATALOGUE, period: PERIOD, entries: [] };
    assert.throws(() => rateInvoice({ ...base, planHistory: [{ plan: "gold", from: "2026-01-01T00:00:00Z" }] }), /plan "gold", which the catalogue does not have/);
    assert.throws(() => rateInvoice({ ...base, planHistory: [{ plan: "enterprise", from: "2026-01-01T00:00:00Z" }] }), /set per org but the change carries no terms/);
    assert.throws(() => rateInvoice({ ...base, planHistory: [] }), /no plan is in force/);
    assert.throws(() => rateInvoice({ ...base, planHistory: [{ plan: "pro", from: "2026-01-01T00:00:00Z" }], entries: [{ ...makeEntry("a", "build_seconds", 1, "2027-01-02T00:00:00Z"), orgId: 2 }] }), /belongs to org 2, not 1/);
    assert.throws(() => rateInvoice({ ...base, planHistory: [{ plan: "pro", from: "2026-01-01T00:00:00Z" }], entries: [makeEntry("a", "build_seconds", -1, "2027-01-02T00:00:00Z")] }), /ledger entry a: quantity -1/);
    assert.throws(() => rateInvoice({ ...base, planHistory: [{ plan: "pro", from: "2026-01-01T00:00:00Z" }], entries: [makeEntry("a", "build_seconds", 1.5, "2027-01-02T00:00:00Z")] }), /quantity 1.5/);
    assert.throws(() => rateInvoice({ ...base, planHistory: [{ plan: "pro", from: "2026-01-01T00:00:00Z" }], entries: [makeEntry("a", "build_seconds", 1, "2027-01-02T00:00:00")] }), /not an ISO 8601 instant with a zone/);
  });

  it("does not split the fee when the same plan is set again mid-month", () => {
    const inv = rateInvoice({
      orgId: 1, catalogue: { ...DEFAULT_CATALOGUE, plans: [...DEFAULT_CATALOGUE.plans, { code: "odd", name: "Odd", monthlyCents: 99, allowances: {} }] },
      planHistory: [{ plan: "odd", from: "2026-01-01T00:00:00Z" }, { plan: "odd", from: "2027-01-16T12:00:00Z" }], period: PERIOD, entries: [],
    });
    // Two halves would be 49.5 → 50 twice = 100¢ for a 99¢ plan.
    assert.deepEqual(inv.lines.filter((l) => l.kind === "fee").map((l) => l.amountCents), [99]);
  });
});

describe("forecastPeriod", () => {
  const input: RatingInput = {
    orgId: 1, catalogue: DEFAULT_CATALOGUE, period: PERIOD,
    planHistory: [{ plan: "pro", from: "2026-01-01T00:00:00Z" }, { plan: "business", from: "2027-01-20T00:00:00Z" }],
    entries: [makeEntry("b1", "build_seconds", 36_000, "2027-01-05T00:00:00Z"), makeEntry("b2", "build_seconds", 99_999, "2027-01-25T00:00:00Z")],
  };

  it("rates the month so far as accrued and projects usage linearly on the plan in force now", () => {
    // 10 of 31 days gone (864,000 of 2,678,400 s). So far: fee 2000 × 10/31 = 645.16 → 645; allowance 1000 × 10/31
    // = 322.580645 min; 600 min used → 277.419355 over → 277. Forecast: 600 × 31/10 = 1860 min on Pro all month
    // (the Business change is not in force yet), 860 over → 860; fee 2000.
    const f = forecastPeriod(input, "2027-01-11T00:00:00.250Z");
    assert.equal(f.now, "2027-01-11T00:00:00.000Z");
    assert.equal(f.elapsedSeconds, 864_000);
    assert.deepEqual(f.soFar.lines.filter((l) => l.kind === "fee").map((l) => l.amountCents), [645]);
    const soFar = findUsageLine(f.soFar, 0, "build_minutes");
    assert.deepEqual([soFar.used, soFar.allowance, soFar.overage, soFar.amountCents], ["600", "322.580645", "277.419355", 277]);
    assert.equal(f.soFar.totalCents, 922);
    const ahead = findUsageLine(f.forecast, 0, "build_minutes");
    assert.deepEqual([ahead.plan, ahead.ledgerQuantity, ahead.used, ahead.allowance, ahead.overage, ahead.amountCents, ahead.entryIds], ["pro", "111600", "1860", "1000", "860", 860, ["b1"]]);
    assert.equal(f.forecast.totalCents, 2860);
  });

  it("is the invoice itself once the period is over, and only fees before it starts", () => {
    const end = forecastPeriod(input, "2027-03-05T00:00:00Z");
    assert.deepEqual(end.soFar, rateInvoice(input));
    assert.deepEqual(end.forecast, rateInvoice(input));
    const before = forecastPeriod(input, "2026-12-30T00:00:00Z");
    assert.equal(before.soFar.totalCents, 0);
    assert.equal(before.forecast.totalCents, 2000);
  });
});

// ---------------------------------------------------------------------------------------------------
// Properties over generated orgs, months, plan histories and ledgers.

const DAY = 86_400_000;
const monthArb = fc.record({ year: fc.integer({ min: 2026, max: 2029 }), month: fc.integer({ min: 0, max: 11 }) })
  .map(({ year, month }) => toMonthlyPeriod(new Date(Date.UTC(year, month, 15)).toISOString()));
const customPlanArb: fc.Arbitrary<Plan> = fc.record({
  monthlyCents: fc.integer({ min: 0, max: 500_000 }),
  build: fc.option(fc.integer({ min: 0, max: 5000 }), { nil: null }),
  bandwidth: fc.integer({ min: 0, max: 5000 }),
}).map(({ monthlyCents, build, bandwidth }) => ({ code: "enterprise", name: "Enterprise", monthlyCents, allowances: { build_minutes: build, bandwidth_gb: bandwidth } }));
const planArb = fc.oneof(fc.constantFrom("free", "pro", "business").map((plan) => ({ plan })), customPlanArb.map((customPlan) => ({ plan: "enterprise", customPlan })));

const scenarioArb = monthArb.chain((period) => {
  const startMs = Date.parse(period.start);
  const endMs = Date.parse(period.end);
  const instant = fc.integer({ min: startMs - 3 * DAY, max: endMs + 3 * DAY }).map((ms) => new Date(ms).toISOString());
  // Up to what a large org uses in a month; storage as BigInt beyond 2^53 byte-hours.
  const usage = fc.oneof(
    fc.record({ meter: fc.constant("build_seconds" as const), quantity: fc.integer({ min: 0, max: 5_000_000 }) }),
    fc.record({ meter: fc.constant("bandwidth_bytes" as const), quantity: fc.integer({ min: 0, max: 2_000_000_000_000 }) }),
    fc.record({ meter: fc.constant("storage_byte_hours" as const), quantity: fc.oneof(fc.integer({ min: 0, max: 10 ** 14 }), fc.bigInt({ min: 0n, max: 10n ** 16n })) }),
    fc.record({ meter: fc.constant("domain_days" as const), quantity: fc.integer({ min: 0, max: 400 }) }),
  );
  return fc.record({
    period: fc.constant(period),
    first: planArb,
    changes: fc.array(fc.record({ change: planArb, at: instant }), { maxLength: 3 }),
    entries: fc.array(fc.record({ app: fc.constantFrom("api", "web", "worker", null), usage, at: instant }), { maxLength: 80 }),
    credits: fc.array(fc.record({ cents: fc.integer({ min: 1, max: 20_000 }), reason: fc.constantFrom("goodwill", "promotion") }), { maxLength: 3 }),
  }).map((s): RatingInput => ({
    orgId: 1, catalogue: DEFAULT_CATALOGUE, period: s.period,
    planHistory: [{ ...s.first, from: new Date(startMs - 40 * DAY).toISOString() }, ...s.changes.map(({ change, at }) => ({ ...change, from: at }))],
    entries: s.entries.map((e, i) => ({ id: `e${i}`, orgId: 1, app: e.app, ...e.usage, at: e.at })),
    credits: s.credits.map((c, i): Credit => ({ id: `c${i}`, ...c })),
  }));
});

const entriesOf = (input: RatingInput): UsageEntry[] => [...input.entries];
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

describe("rating properties", () => {
  it("the total is the sum of the lines; app shares add up to their line", () => {
    fc.assert(fc.property(scenarioArb, (input) => {
      const inv = rateInvoice(input);
      assert.equal(inv.totalCents, sum(inv.lines.map((l) => l.amountCents)));
      assert.equal(inv.subtotalCents, sum(inv.lines.filter((l) => l.kind !== "credit").map((l) => l.amountCents)));
      assert.equal(inv.totalCents, inv.subtotalCents - inv.creditCents);
      assert.ok(inv.totalCents >= 0);
      for (const l of inv.lines) if (l.kind === "usage") assert.equal(sum(l.apps.map((a) => a.amountCents)), l.amountCents);
      assert.equal(sum(inv.apps.map((a) => a.amountCents)), sum(inv.lines.filter((l) => l.kind === "usage").map((l) => l.amountCents)));
    }), { numRuns: 200 });
  });

  it("does not depend on the order entries arrive in", () => {
    fc.assert(fc.property(scenarioArb, fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 80, maxLength: 80 }), (input, keys) => {
      const shuffled = entriesOf(input).map((e, i) => ({ e, k: keys[i]! })).sort((a, b) => a.k - b.k).map(({ e }) => e);
      assert.deepEqual(rateInvoice({ ...input, entries: shuffled }), rateInvoice(input));
    }), { numRuns: 200 });
  });

  it("entries handed over again in overlapping batches count once", () => {
    fc.assert(fc.property(scenarioArb, fc.array(fc.tuple(fc.nat(), fc.nat()), { minLength: 1, maxLength: 5 }), (input, cuts) => {
      const all = entriesOf(input);
      const batches = cuts.map(([a, b]) => all.slice(Math.min(a, b) % (all.length + 1), Math.max(a, b) % (all.length + 1) + 1));
      assert.deepEqual(rateInvoice({ ...input, entries: [...batches.flat(), ...all, ...batches.flat().reverse()] }), rateInvoice(input));
    }), { numRuns: 200 });
  });

  it("a plan change mid-month never charges more fee than the dearer plan's full month", () => {
    fc.assert(fc.property(monthArb, customPlanArb, customPlanArb, fc.double({ min: 0, max: 1, noNaN: true }), (period, low, high, at) => {
      const startMs = Date.parse(period.start);
      const endMs = Date.parse(period.end);
      const change = new Date(startMs + Math.floor((endMs - startMs) * at)).toISOString();
      const history: PlanChange[] = [{ plan: "enterprise", from: "2020-01-01T00:00:00Z", customPlan: low }, { plan: "enterprise", from: change, customPlan: high }];
      const inv = rateInvoice({ orgId: 1, catalogue: DEFAULT_CATALOGUE, period, planHistory: history, entries: [] });
      assert.ok(sum(inv.lines.filter((l) => l.kind === "fee").map((l) => l.amountCents)) <= Math.max(low.monthlyCents, high.monthlyCents));
    }), { numRuns: 500 });
    for (const [from, to] of [["free", "pro"], ["pro", "business"], ["free", "business"]] as const) {
      for (let day = 1; day < 28; day++) {
        const inv = rateInvoice({ orgId: 1, catalogue: DEFAULT_CATALOGUE, period: PERIOD, entries: [], planHistory: [{ plan: from, from: "2026-01-01T00:00:00Z" }, { plan: to, from: `2027-01-${String(day).padStart(2, "0")}T13:17:29Z` }] });
        assert.ok(sum(inv.lines.filter((l) => l.kind === "fee").map((l) => l.amountCents)) <= DEFAULT_CATALOGUE.plans.find((p) => p.code === to)!.monthlyCents);
      }
    }
  });

  it("a forecast at the period's end is the invoice; on one plan, cost so far never exceeds the forecast", () => {
    fc.assert(fc.property(scenarioArb, fc.double({ min: 0, max: 1, noNaN: true }), (input, at) => {
      const startMs = Date.parse(input.period.start);
      const endMs = Date.parse(input.period.end);
      assert.deepEqual(forecastPeriod(input, input.period.end).forecast, rateInvoice(input));
      const now = new Date(startMs + (endMs - startMs) * at).toISOString();
      const mid = forecastPeriod(input, now);
      for (const inv of [mid.soFar, mid.forecast]) assert.equal(inv.totalCents, sum(inv.lines.map((l) => l.amountCents)));
      const onePlan = forecastPeriod({ ...input, planHistory: input.planHistory.slice(0, 1) }, now);
      assert.ok(onePlan.soFar.subtotalCents <= onePlan.forecast.subtotalCents, `${onePlan.soFar.subtotalCents} > ${onePlan.forecast.subtotalCents}`);
    }), { numRuns: 200 });
  });
});
