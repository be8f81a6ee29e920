/**
 * `node --import tsx scripts/bench-billing.ts`: what rating a month costs, measured in one run.
 *
 * 1. One month (January 2027, 744 hours) for 10,000 apps spread over 1,000 orgs, each org rated on its
 *    own as the invoice run does: per app an entry for every hour of bandwidth and of storage (744
 *    each), three builds a day and a custom domain a day (≈1,600 entries per app, 16 million in all).
 *    Plans: half Free, the rest Pro, Business and Enterprise, one org in ten upgrading mid-month.
 *    Entries are made outside the timed part. The baseline is the same run's time to merely sum the
 *    same entries per meter; a second row shows the part of rating that reading timestamps and
 *    setting aside repeated ids takes.
 * 2. One org with 1,000 apps (1.6 million entries in one invoice), rated keeping every usage line's
 *    ledger ids and keeping counts only, for the memory the ids take.
 *
 * Peak memory is the process's peak resident set (getrusage); heap figures are read after a full
 * garbage collection.
 */
import { pathToFileURL } from "node:url";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { DEFAULT_CATALOGUE, parseInstant, rateInvoice, type PlanChange, type RatingInput, type UsageEntry } from "../core/billing/index.ts";

// A full collection before each heap reading, so it shows what is held rather than garbage not yet swept.
setFlagsFromString("--expose-gc");
const collectGarbage = runInNewContext("gc") as () => void;

const PERIOD = { start: "2027-01-01T00:00:00Z", end: "2027-02-01T00:00:00Z" };
const HOURS = 744;
const DAYS = 31;
const ORGS = 1000;
const APPS_PER_ORG = 10;

/** Deterministic pseudo-random numbers (mulberry32), so every run rates the same ledger. */
function makeRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const HOUR_ISO = Array.from({ length: HOURS }, (_, h) => new Date(Date.parse(PERIOD.start) + h * 3_600_000).toISOString());

/** One app's month of ledger entries, shaped as the ledger hands them over. */
function makeAppEntries(orgId: number, app: string, random: () => number): UsageEntry[] {
  const out: UsageEntry[] = [];
  const storedBytes = Math.floor((1 + random() * 49) * 1e9);
  for (let h = 0; h < HOURS; h++) {
    const at = HOUR_ISO[h]!;
    out.push({ id: `bw:${orgId}:${app}:${h}`, orgId, app, meter: "bandwidth_bytes", quantity: Math.floor(random() * 2e9), at });
    out.push({ id: `st:${orgId}:${app}:${h}`, orgId, app, meter: "storage_byte_hours", quantity: storedBytes, at });
  }
  for (let d = 0; d < DAYS; d++) {
    for (let b = 0; b < 3; b++) {
      const at = new Date(Date.parse(PERIOD.start) + d * 86_400_000 + Math.floor(random() * 86_400_000)).toISOString();
      out.push({ id: `build:${orgId}:${app}:${d}:${b}`, orgId, app, meter: "build_seconds", quantity: 30 + Math.floor(random() * 270), at });
    }
    out.push({ id: `dom:${orgId}:${app}:${d}`, orgId, app, meter: "domain_days", quantity: 1, at: HOUR_ISO[d * 24]! });
  }
  return out;
}

function makePlanHistory(orgId: number, random: () => number): PlanChange[] {
  const r = random();
  const first: PlanChange = r < 0.5 ? { plan: "free", from: "2026-06-01T00:00:00Z" }
    : r < 0.8 ? { plan: "pro", from: "2026-06-01T00:00:00Z" }
    : r < 0.95 ? { plan: "business", from: "2026-06-01T00:00:00Z" }
    : { plan: "enterprise", from: "2026-06-01T00:00:00Z", customPlan: { code: "enterprise", name: `Enterprise ${orgId}`, monthlyCents: 150_000, allowances: { build_minutes: null, bandwidth_gb: 50_000, storage_gb_month: 500, custom_domains: 20 } } };
  if (first.plan !== "free" || random() >= 0.2) return [first];
  return [first, { plan: "pro", from: new Date(Date.parse(PERIOD.start) + Math.floor(random() * HOURS * 3_600_000)).toISOString() }];
}

/**
 * One org's input. The entries go through JSON as they would arrive from the ledger: every id and
 * timestamp its own string, read from the wire, not one shared or built by concatenation here.
 */
function makeOrgInput(orgId: number, apps: number): RatingInput & { entries: UsageEntry[] } {
  const random = makeRandom(orgId);
  const made: UsageEntry[] = [];
  for (let a = 0; a < apps; a++) for (const e of makeAppEntries(orgId, `app-${orgId}-${a}`, random)) made.push(e);
  const entries = JSON.parse(JSON.stringify(made)) as UsageEntry[];
  return { orgId, catalogue: DEFAULT_CATALOGUE, planHistory: makePlanHistory(orgId, random), period: PERIOD, entries };
}

/** The baseline: one pass adding every entry's quantity to its meter's total. */
function sumEntries(entries: readonly UsageEntry[]): number {
  const totals: Record<string, number> = { build_seconds: 0, bandwidth_bytes: 0, storage_byte_hours: 0, domain_days: 0 };
  for (const e of entries) totals[e.meter]! += Number(e.quantity);
  return totals.bandwidth_bytes! + totals.build_seconds! + totals.storage_byte_hours! + totals.domain_days!;
}

/** What rating does per entry before any arithmetic: read the timestamp and set aside repeated ids. */
function readEntries(entries: readonly UsageEntry[]): number {
  const seen = new Set<string>();
  let latest = 0;
  for (const e of entries) {
    if (seen.has(e.id)) continue;
    seen.add(e.id);
    latest = Math.max(latest, parseInstant(e.at, e.id));
  }
  return latest;
}

const formatMb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MB`;
const readPeakRss = () => process.resourceUsage().maxRSS * 1024;

/** Wall-clock and CPU milliseconds; CPU time keeps ratios honest on a machine busy with other work. */
interface Clock {
  wall: number;
  cpu: number;
}

function timeInto<T>(clock: Clock, run: () => T): T {
  const wall = performance.now();
  const cpu = process.cpuUsage();
  const result = run();
  const used = process.cpuUsage(cpu);
  clock.wall += performance.now() - wall;
  clock.cpu += (used.user + used.system) / 1000;
  return result;
}

const formatRow = (what: string, clock: Clock, baseline: Clock, extra = "") =>
  `| ${what} | ${(clock.wall / 1000).toFixed(2)} | ${(clock.cpu / 1000).toFixed(2)} | ${(clock.cpu / baseline.cpu).toFixed(1)}× |${extra}`;

async function manyOrgs(): Promise<string[]> {
  const rating: Clock = { wall: 0, cpu: 0 };
  const summing: Clock = { wall: 0, cpu: 0 };
  const reading: Clock = { wall: 0, cpu: 0 };
  let entries = 0;
  let lines = 0;
  let cents = 0;
  let heapPeak = 0;
  let check = 0;
  for (let org = 1; org <= ORGS; org++) {
    const input = makeOrgInput(org, APPS_PER_ORG);
    entries += input.entries.length;
    check += timeInto(summing, () => sumEntries(input.entries));
    check += timeInto(reading, () => readEntries(input.entries));
    const invoice = timeInto(rating, () => rateInvoice(input));
    lines += invoice.lines.length;
    cents += invoice.totalCents;
    if (org % 100 === 0) {
      collectGarbage();
      heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed);
    }
  }
  if (!Number.isFinite(check)) throw new Error("the baseline summed nothing");
  return [
    `Rating one month (January 2027) for ${(ORGS * APPS_PER_ORG).toLocaleString("en-US")} apps in ${ORGS.toLocaleString("en-US")} orgs: ${entries.toLocaleString("en-US")} ledger entries, ${lines.toLocaleString("en-US")} invoice lines, $${(cents / 100).toLocaleString("en-US", { minimumFractionDigits: 2 })} invoiced; each org rated on its own with every line's ledger ids kept`,
    "",
    "| measure | wall s | CPU s | CPU vs summing the entries |",
    "|---|---|---|---|",
    formatRow("baseline: add up every entry's quantity per meter (one pass, floats)", summing, summing),
    formatRow("read every timestamp and set aside repeated ids (part of rating)", reading, summing),
    formatRow("rateInvoice for all orgs (exact sums, segments, prorating, per-app split, ids)", rating, summing),
    "",
    `Per org: ${(rating.cpu / ORGS).toFixed(1)} ms CPU for ${(entries / ORGS).toLocaleString("en-US")} entries (${((entries / rating.cpu) * 1000 / 1e6).toFixed(2)} million entries per CPU second). Peak memory: ${formatMb(readPeakRss())} resident; heap in use with one org's entries and invoice: ${formatMb(heapPeak)}.`,
  ];
}

async function oneLargeOrg(): Promise<string[]> {
  const apps = 1000;
  const input = makeOrgInput(ORGS + 1, apps);
  const rows: string[] = [];
  const invoices: unknown[] = []; // held until both are measured, so the heap reading counts each
  const summing: Clock = { wall: 0, cpu: 0 };
  timeInto(summing, () => sumEntries(input.entries));
  for (const trace of ["ids", "count"] as const) {
    collectGarbage();
    const heapBefore = process.memoryUsage().heapUsed;
    const clock: Clock = { wall: 0, cpu: 0 };
    const invoice = timeInto(clock, () => rateInvoice({ ...input, trace }));
    collectGarbage();
    const held = process.memoryUsage().heapUsed - heapBefore;
    rows.push(formatRow(`rateInvoice keeping ${trace === "ids" ? "every line's ledger ids" : "counts only (traceLine recomputes ids)"}`, clock, summing, ` ${formatMb(Math.max(0, held))} (${invoice.lines.length} lines) |`));
    invoices.push(invoice);
  }
  return [
    `One org with ${apps.toLocaleString("en-US")} apps: ${input.entries.length.toLocaleString("en-US")} entries in one invoice`,
    "",
    "| measure | wall s | CPU s | CPU vs summing | heap held by the invoice |",
    "|---|---|---|---|---|",
    formatRow("baseline: add up every entry's quantity per meter", summing, summing, " |"),
    ...rows,
    "",
    `Peak resident memory of the whole run: ${formatMb(readPeakRss())} (the entries themselves are most of it).`,
  ];
}

export async function billingBench(): Promise<string[]> {
  return [...(await manyOrgs()), "", ...(await oneLargeOrg())];
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  process.stdout.write(`${(await billingBench()).join("\n")}\n`);
}
