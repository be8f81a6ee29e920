/**
 * Billing operations (SSH `billing:*` and `/api/v1/orgs/ORG/billing/…`), each with its permission
 * check: anyone signed in reads the catalogue; an org's admins and owners read its plan, usage and
 * invoices; its owners manage billing (`billing:manage`: plan, spend cap, payment pages); platform
 * admins see every org, set the catalogue (API) and Enterprise terms, close months and record what
 * became of invoices when deck has no Stripe.
 */
import {
  BILLING_METERS, DeckError, decide, describeLine, findPlan, planInForce, startingPlan, formatDollars, isInvoiceAction, METERS, parseCatalogue, parsePlan, toMonthlyPeriod,
  type BillingMeter, type Catalogue, type Plan, type RatedInvoice, type UsageLine,
} from "../core/index.ts";
import { usageNow } from "../billing/account/usage-now.ts";
import { adviseOrg, type Finding } from "../billing/account/advice.ts";
import { changeInvoiceStatus, closePeriod, renderInvoiceHtml, renderInvoicePdf, toInvoiceView, type InvoiceView } from "../billing/invoices/index.ts";
import type { DeployDeps } from "../deploy/index.ts";
import {
  audit, countPlanChangesSince, deleteScheduledPlanChanges, findInvoice, insertPlanChange, ledgerEntriesOfLine, listInvoicesOfOrg, loadBillingAccount, loadCatalogue, planHistoryOf, saveCatalogue, setSpendCap,
  type Invoice, type InvoiceSummary, type OrgRow, type PlanChangeRow,
} from "../store/queries/index.ts";
import { refusedBy, type Caller } from "./access.ts";
import { visibleOrg } from "./accounts.ts";
import { recordAction } from "./audit.ts";
import { q } from "../store/queries/db.ts";

/** The org, when the caller may manage its billing (its owners, platform admins). */
export async function orgForBilling(deps: DeployDeps, caller: Caller, slug: string): Promise<OrgRow> {
  const org = await visibleOrg(deps, caller, slug);
  if (!decide(caller.actor, "billing:manage", org.id).allow) {
    const { userId, ...by } = refusedBy(caller);
    await audit(deps.db, { userId, action: "billing:manage", target: `org:${org.slug}`, sourceIp: caller.sourceIp, result: "denied", data: { ...by, orgId: org.id } });
    throw new DeckError("forbidden", `permission denied: billing:manage in ${org.slug} needs the owner role`);
  }
  return org;
}

function requirePlatformAdmin(caller: Caller, what: string): void {
  if (!caller.actor.isAdmin) throw new DeckError("forbidden", `permission denied: only a platform admin may ${what}`);
}

/** A plan as users read it: the fee and, per meter, what is included and what more costs. */
export interface PlanView {
  code: string;
  name: string;
  monthlyCents: number;
  custom: boolean;
  meters: Array<{ meter: BillingMeter; unit: string; label: string; included: number | null; unitCents: number }>;
}

export function viewPlan(catalogue: Catalogue, plan: Plan): PlanView {
  return {
    code: plan.code, name: plan.name, monthlyCents: plan.monthlyCents, custom: plan.custom === true,
    meters: BILLING_METERS.map((m) => ({
      meter: m, unit: METERS[m].unit, label: METERS[m].label,
      included: plan.allowances[m] === undefined ? 0 : plan.allowances[m]!, unitCents: plan.prices?.[m] ?? catalogue.prices[m],
    })),
  };
}

/** The catalogue in force as JSON (what `billing:catalogue:set` and `PUT /billing/catalogue` take). */
export async function billingCatalogue(deps: DeployDeps): Promise<Catalogue> {
  return loadCatalogue(deps.db);
}

/** Every plan of the catalogue in force. */
export async function billingPlans(deps: DeployDeps): Promise<PlanView[]> {
  const catalogue = await loadCatalogue(deps.db);
  return catalogue.plans.map((p) => viewPlan(catalogue, p));
}

/** Replaces the catalogue (platform admins); it must read as a catalogue, and keep every plan an org is on. */
export async function setBillingCatalogue(deps: DeployDeps, caller: Caller, json: unknown): Promise<PlanView[]> {
  requirePlatformAdmin(caller, "set the billing catalogue");
  const parsed = parseCatalogue(json);
  if (!parsed.ok) throw new DeckError("bad_argument", `the catalogue does not read: ${parsed.error}`);
  // New organisations start on a plan without a fee (and its limits stop builds): there must be one.
  if (!parsed.catalogue.plans.some((p) => p.monthlyCents === 0 && !p.custom)) throw new DeckError("bad_argument", "the catalogue needs a plan without a fee and not custom: the one organisations start on");
  // Every plan an org is on, was on in a month not yet invoiced (last month and this one), or will move
  // to, stays, custom as it was: invoices still to come are rated with it.
  const since = new Date(Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth() - 1, 1)).toISOString();
  const inUse = await deps.db.any(q`
    SELECT plan, bool_or(custom_plan IS NOT NULL) AS custom FROM subscriptions WHERE starts_at >= ${since}::timestamptz
       OR id IN (SELECT DISTINCT ON (org_id) id FROM subscriptions ORDER BY org_id, starts_at DESC, id DESC) GROUP BY plan`);
  const problems: string[] = [];
  for (const r of inUse) {
    const p = findPlan(parsed.catalogue, String(r.plan));
    if (!p) problems.push(`${String(r.plan)} (organisations use it this month or last)`);
    else if (Boolean(r.custom) && !p.custom) problems.push(`${p.code} (must stay custom: organisations have terms of their own on it)`);
  }
  if (problems.length > 0) throw new DeckError("conflict", `the new catalogue leaves out or changes ${[...new Set(problems)].join(", ")}; move those organisations to another plan first`);
  await saveCatalogue(deps.db, parsed.catalogue, caller.user.id);
  await recordAction(deps, caller, "billing:catalogue", "billing", { plans: parsed.catalogue.plans.map((p) => p.code) });
  return parsed.catalogue.plans.map((p) => viewPlan(parsed.catalogue, p));
}

export interface OrgPlanView {
  org: string;
  plan: PlanView;
  since: string;
  /** A change not yet in force (a downgrade takes effect when the month ends). */
  scheduled: { plan: string; from: string } | null;
  history: Array<{ plan: string; from: string }>;
}

/** The org's plan now (with an Enterprise org's own terms), a scheduled change and its history (owners and admins). */
export async function orgPlan(deps: DeployDeps, caller: Caller, slug: string): Promise<OrgPlanView> {
  const org = await orgForBillingRead(deps, caller, slug);
  return planViewOf(deps, org);
}

async function planViewOf(deps: DeployDeps, org: OrgRow): Promise<OrgPlanView> {
  const catalogue = await loadCatalogue(deps.db);
  const history = await planHistoryOf(deps.db, org.id, startingPlan(catalogue).code);
  const now = Date.now();
  const current = [...history].reverse().find((h) => Date.parse(h.from) <= now) ?? history[0]!;
  const plan = planInForce(catalogue, history, now);
  const next = history.find((h) => Date.parse(h.from) > now);
  return {
    org: org.slug, plan: viewPlan(catalogue, plan), since: current.from, scheduled: next ? { plan: next.plan, from: next.from } : null,
    history: history.filter((h) => Date.parse(h.from) <= now).map((h) => ({ plan: h.plan, from: h.from })),
  };
}

/** Plan changes an org's owners may make in a calendar month: each one splits the month's invoice. */
export const PLAN_CHANGES_PER_MONTH = 5;

/**
 * Moves the org to another plan (owners). An upgrade takes effect now and the month's invoice prorates
 * both plans to the second; a move to a plan with a lower fee takes effect when the month ends, so a
 * plan is never worn for a moment to use its allowance (the org keeps what it pays for until then). A
 * later change replaces a scheduled one. Enterprise (a plan the catalogue marks custom) only by a
 * platform admin, with the org's terms as JSON, at once.
 */
export async function setOrgPlan(deps: DeployDeps, caller: Caller, slug: string, code: string, termsJson?: string): Promise<OrgPlanView & { changed: boolean; kept?: boolean }> {
  const org = await orgForBilling(deps, caller, slug);
  const catalogue = await loadCatalogue(deps.db);
  const plan = findPlan(catalogue, code);
  if (!plan) throw new DeckError("bad_argument", `there is no plan "${code.slice(0, 40)}"; plans: ${catalogue.plans.map((p) => p.code).join(", ")} (billing:plans)`);
  let custom: Plan | null = null;
  if (plan.custom) {
    requirePlatformAdmin(caller, `put an organisation on ${plan.name} (its terms are set per organisation)`);
    if (termsJson === undefined) throw new DeckError("bad_argument", `${plan.name} needs the organisation's terms as JSON, e.g. billing:plan ${org.slug} ${plan.code} '{"monthlyCents":50000,"allowances":{"build_minutes":null,"bandwidth_gb":50000}}'`);
    let raw: unknown;
    try {
      raw = JSON.parse(termsJson);
    } catch {
      throw new DeckError("bad_argument", "the terms are not JSON");
    }
    const parsed = parsePlan({ code: plan.code, name: plan.name, ...(raw as object), custom: true });
    if (!parsed.ok) throw new DeckError("bad_argument", `the terms do not read: ${parsed.error}`);
    custom = parsed.plan;
  } else if (termsJson !== undefined) {
    throw new DeckError("bad_argument", `${plan.name} has the catalogue's terms; only a custom plan takes terms of its own`);
  }
  const before = await planViewOf(deps, org);
  if (before.plan.code === plan.code && custom === null && !before.scheduled) return { ...before, changed: false };
  const now = new Date();
  const period = toMonthlyPeriod(now.toISOString());
  if (!caller.actor.isAdmin && (await countPlanChangesSince(deps.db, org.id, period.start)) >= PLAN_CHANGES_PER_MONTH) {
    throw new DeckError("conflict", `${org.slug} changed plan ${PLAN_CHANGES_PER_MONTH} times this month, the most; the next change can be made from ${period.end.slice(0, 10)}`);
  }
  const downgrade = custom === null && !before.plan.custom && plan.monthlyCents < before.plan.monthlyCents;
  await deleteScheduledPlanChanges(deps.db, org.id);
  if (before.plan.code === plan.code && custom === null) {
    // Back to the plan in force: the scheduled change is gone, nothing else to do.
    await recordAction(deps, caller, "billing:plan", `org:${org.slug}`, { orgId: org.id, kept: plan.code });
    return { ...(await planViewOf(deps, org)), changed: true, kept: true };
  }
  const row: PlanChangeRow = await insertPlanChange(deps.db, {
    orgId: org.id, plan: plan.code, customPlan: custom, createdBy: caller.user.id, ...(downgrade ? { startsAt: new Date(period.end) } : {}),
  });
  await recordAction(deps, caller, "billing:plan", `org:${org.slug}`, { orgId: org.id, from: before.plan.code, to: row.plan, from_at: row.from });
  await deps.onPlanChanged?.(org.id);
  return { ...(await planViewOf(deps, org)), changed: true };
}

/** "$20.00/month; 1,000 build minutes, 1,000 GB bandwidth included". */
export function describePlan(p: PlanView): string {
  const fee = p.custom && p.monthlyCents === 0 ? "terms set per organisation" : `${formatDollars(p.monthlyCents)}/month`;
  const included = p.meters.filter((m) => m.included === null || m.included > 0)
    .map((m) => (m.included === null ? `unlimited ${m.label.toLowerCase()}` : `${m.included.toLocaleString("en-US")} ${m.unit} ${m.label.toLowerCase()}`));
  return `${fee}${included.length ? `; ${included.join(", ")} included` : ""}`;
}

/** The org, when the caller may read its billing: its owners and admins, platform admins. */
async function orgForBillingRead(deps: DeployDeps, caller: Caller, slug: string): Promise<OrgRow> {
  const org = await visibleOrg(deps, caller, slug);
  if (!decide(caller.actor, "audit:read", org.id).allow) {
    throw new DeckError("forbidden", `permission denied: reading ${org.slug}'s billing needs the admin or owner role`);
  }
  return org;
}

export interface UsageView {
  org: string;
  plan: string;
  period: { start: string; end: string };
  now: string;
  /** Cost so far this month: fees accrued until now, and usage so far beyond the whole month's allowance. */
  soFarCents: number;
  /** The month's cost if usage goes on as it has: the forecast at its end. */
  forecastCents: number;
  spendCapCents: number | null;
  meters: Array<{ meter: BillingMeter; label: string; unit: string; used: string; included: string | null; forecastUsed: string; soFarCents: number; forecastCents: number }>;
  apps: Array<{ app: string | null; soFarCents: number; forecastCents: number }>;
}

/** Cost so far this month and a forecast to its end, per meter and per app, from the ledger as it is now. */
export async function billingUsage(deps: DeployDeps, caller: Caller, slug: string): Promise<UsageView> {
  const org = await orgForBillingRead(deps, caller, slug);
  const [u, account] = await Promise.all([usageNow(deps.db, org.id), loadBillingAccount(deps.db, org.id)]);
  const { forecast } = u.forecast;
  const soFar = u.monthSoFar;
  const usageLines = (inv: RatedInvoice) => inv.lines.filter((l): l is UsageLine => l.kind === "usage");
  const sum = (values: string[]) => values.reduce((a, v) => a + Number(v), 0);
  const meters = BILLING_METERS.map((m) => {
    const now = usageLines(soFar).filter((l) => l.meter === m);
    const later = usageLines(forecast).filter((l) => l.meter === m);
    const unlimited = now.some((l) => l.allowance === null);
    return {
      meter: m, label: METERS[m].label, unit: METERS[m].unit,
      used: trimDecimal(sum(now.map((l) => l.used))), included: unlimited ? null : trimDecimal(sum(now.map((l) => l.allowance ?? "0"))),
      forecastUsed: trimDecimal(sum(later.map((l) => l.used))),
      soFarCents: now.reduce((a, l) => a + l.amountCents, 0), forecastCents: later.reduce((a, l) => a + l.amountCents, 0),
    };
  });
  const forecastByApp = new Map(forecast.apps.map((a) => [a.app, a.amountCents]));
  const apps = soFar.apps.map((a) => ({ app: a.app, soFarCents: a.amountCents, forecastCents: forecastByApp.get(a.app) ?? a.amountCents }));
  for (const a of forecast.apps) if (!apps.some((x) => x.app === a.app)) apps.push({ app: a.app, soFarCents: 0, forecastCents: a.amountCents });
  return {
    org: org.slug, plan: u.plan.name, period: u.input.period, now: u.forecast.now,
    soFarCents: u.spentCents, forecastCents: forecast.totalCents, spendCapCents: account.spendCapCents, meters, apps,
  };
}

const trimDecimal = (n: number) => String(Math.round(n * 1000) / 1000);

/** Sets (dollars, "50" or "50.00") or removes ("off") the org's monthly spend cap (owners). */
export async function setBillingCap(deps: DeployDeps, caller: Caller, slug: string, raw: string): Promise<{ org: string; spendCapCents: number | null }> {
  const org = await orgForBilling(deps, caller, slug);
  let cents: number | null;
  if (raw === "off" || raw === "none") cents = null;
  else {
    const m = /^\$?(\d{1,9})(?:\.(\d{1,2}))?$/.exec(raw);
    if (!m) throw new DeckError("bad_argument", `"${raw.slice(0, 20)}" is not an amount in dollars like 50 or 49.99 (or off)`);
    cents = Number(m[1]) * 100 + Number((m[2] ?? "").padEnd(2, "0"));
  }
  await setSpendCap(deps.db, org.id, cents);
  await recordAction(deps, caller, "billing:cap", `org:${org.slug}`, { orgId: org.id, cents });
  return { org: org.slug, spendCapCents: cents };
}

/** The org's invoices, newest first (owners and admins; platform admins any org). */
export async function billingInvoices(deps: DeployDeps, caller: Caller, slug: string): Promise<InvoiceSummary[]> {
  const org = await orgForBillingRead(deps, caller, slug);
  return listInvoicesOfOrg(deps.db, org.id);
}

/** One invoice of the org by its number, with the lines as people read them. */
export async function billingInvoice(deps: DeployDeps, caller: Caller, slug: string, number: string): Promise<{ invoice: Invoice; view: InvoiceView }> {
  const org = await orgForBillingRead(deps, caller, slug);
  const invoice = /^[A-Z]{2,10}-\d{4}-\d{6,12}$/.test(number) ? await findInvoice(deps.db, { number, orgId: org.id }) : null;
  if (!invoice) throw new DeckError("not_found", `${org.slug} has no invoice ${number.slice(0, 30)} (billing:invoices ${org.slug} lists them)`);
  return { invoice, view: toInvoiceView(invoice) };
}

export async function billingInvoicePdf(deps: DeployDeps, caller: Caller, slug: string, number: string): Promise<Buffer> {
  return renderInvoicePdf((await billingInvoice(deps, caller, slug, number)).invoice);
}

export async function billingInvoiceHtml(deps: DeployDeps, caller: Caller, slug: string, number: string): Promise<string> {
  return renderInvoiceHtml((await billingInvoice(deps, caller, slug, number)).invoice);
}

/**
 * Records what became of an invoice (platform admins): paid (without Stripe, deck learns of payment from
 * them), void, or uncollectible; refused with the reason when its status does not allow it.
 */
export async function markInvoice(deps: DeployDeps, caller: Caller, slug: string, number: string, action: string): Promise<InvoiceSummary> {
  requirePlatformAdmin(caller, "record what became of an invoice");
  const org = await visibleOrg(deps, caller, slug);
  if (!isInvoiceAction(action) || action === "open") throw new DeckError("bad_argument", `say paid, void or uncollectible (not "${action.slice(0, 20)}")`);
  const r = await changeInvoiceStatus(deps.db, { number, orgId: org.id, action, now: new Date() });
  if (!r.ok) throw new DeckError(r.code === "invoice_not_found" ? "not_found" : "conflict", r.reason);
  await recordAction(deps, caller, `billing:invoice:${action}`, `org:${org.slug}`, { orgId: org.id, number });
  return r.invoice;
}

export interface ExplainedLine {
  invoice: string;
  line: number;
  description: string;
  amountCents: number;
  /** The ledger entries the line came from, oldest first (at most `limit`), and how many there are. */
  entries: Array<{ key: string; app: string | null; meter: string; quantity: string; at: string }>;
  total: number;
}

/** Traces line LINE (1-based, as billing:invoice numbers them) of an invoice to its ledger entries. */
export async function explainInvoiceLine(deps: DeployDeps, caller: Caller, slug: string, number: string, lineNumber: number, limit = 200): Promise<ExplainedLine> {
  const { invoice } = await billingInvoice(deps, caller, slug, number);
  const line = invoice.rated.lines[lineNumber - 1];
  if (!Number.isInteger(lineNumber) || !line) throw new DeckError("bad_argument", `${invoice.number} has lines 1 to ${invoice.rated.lines.length}`);
  const base = { invoice: invoice.number, line: lineNumber, description: describeLine(line), amountCents: line.amountCents };
  if (line.kind !== "usage") return { ...base, entries: [], total: 0 };
  // A segment's usage is what the ledger stamped within it (the first segment from the period's start).
  const from = line.segment === 0 ? invoice.rated.period.start : line.from;
  const found = await ledgerEntriesOfLine(deps.db, { orgId: invoice.orgId!, meter: METERS[line.meter].ledger, from, to: line.to, recordedBy: invoice.createdAt, limit });
  return { ...base, ...found };
}

/**
 * Closes one month of an org into its invoice now (platform admins): for a month the invoice job has
 * passed over, or to replace a voided invoice. The month must have ended; one already invoiced is shown.
 */
export async function closeBillingMonth(deps: DeployDeps, caller: Caller, slug: string, month: string): Promise<{ invoice: InvoiceSummary; opened: boolean }> {
  requirePlatformAdmin(caller, "close a billing month by hand");
  const org = await visibleOrg(deps, caller, slug);
  if (!/^\d{4}-(0[1-9]|1[0-2])$/.test(month)) throw new DeckError("bad_argument", `"${month.slice(0, 20)}" is not a month like 2027-01`);
  const period = toMonthlyPeriod(`${month}-01T00:00:00Z`);
  const r = await closePeriod(deps.db, { orgId: org.id, period, now: new Date() });
  if (r.outcome === "opened" || r.outcome === "existing") {
    if (r.outcome === "opened") await recordAction(deps, caller, "billing:close", `org:${org.slug}`, { orgId: org.id, month, number: r.invoice.number });
    return { invoice: r.invoice, opened: r.outcome === "opened" };
  }
  throw new DeckError(r.outcome === "period_not_ended" ? "conflict" : "not_found", r.reason);
}

/** Where the org pays for more than it uses: idle apps, scale above need, a cheaper plan (owners and admins). */
export async function billingAdvice(deps: DeployDeps, caller: Caller, slug: string): Promise<{ org: string; findings: Finding[] }> {
  const org = await orgForBillingRead(deps, caller, slug);
  return { org: org.slug, findings: (await adviseOrg(deps.db, org.id, org.slug)).findings };
}

/** A Stripe page for the org's owners: Checkout to save the card invoices are charged to, or the billing portal. */
export async function billingPaymentPage(deps: DeployDeps, caller: Caller, slug: string, page: "payment" | "portal"): Promise<{ org: string; url: string }> {
  const org = await orgForBilling(deps, caller, slug);
  if (!deps.paymentPages) throw new DeckError("not_found", "deck has no Stripe account configured (STRIPE_SECRET_KEY); invoices are paid as a platform admin records them");
  const back = deps.config.publicUrl ?? `http://${deps.config.host}:${deps.config.apiPort}`;
  const url = page === "payment" ? await deps.paymentPages.paymentLink(org.id, back) : await deps.paymentPages.portalLink(org.id, back);
  return { org: org.slug, url };
}
