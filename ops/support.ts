/**
 * Support and business views for platform admins: one user as support needs them (their orgs, apps and
 * what went wrong for them lately), every organisation with its plan and counts, and the billing
 * overview (revenue, recurring revenue by plan, overdue invoices, who uses most this month).
 */
import { DeckError, forecastPeriod, parsePeriod, planInForce, rateInvoice, startingPlan, toMonthlyPeriod, type RatingInput, type UsageEntry } from "../core/index.ts";
import type { DeployDeps } from "../deploy/index.ts";
import { loadCatalogue, membershipsOf } from "../store/queries/index.ts";
import {
  appsOfUser, dailyLedgerOfAllOrgs, findSupportUser, listOrgsWithCounts, listOverdueInvoices, planHistoriesOfAllOrgs, recentTroublesOfUser, sumPaidInvoices,
  type UserTroubleRow,
} from "../store/queries/support.ts";
import type { Caller } from "./access.ts";
import { requirePlatformAdmin } from "./admin.ts";


const DAY_MS = 86_400_000;

// ---------- one user ----------
/** How far back, and how many, of a user's troubles support sees. */
export const RECENT_ERRORS_DAYS = 7;
export const RECENT_ERRORS_LIMIT = 20;

export interface RecentError {
  at: string;
  app: string | null;
  kind: "deploy" | "denied" | "sign-in";
  message: string;
}

export interface SupportUserView {
  email: string;
  name: string | null;
  isAdmin: boolean;
  createdAt: string;
  suspendedAt: string | null;
  suspendReason: string | null;
  mfaEnabled: boolean;
  lastSignInAt: string | null;
  orgs: { slug: string; role: string }[];
  apps: { name: string; org: string; status: string }[];
  keys: number;
  tokens: number;
  recentErrors: RecentError[];
}

/** One user as support sees them: who they are, where they belong, and what went wrong for them in the last 7 days. */
export async function supportUser(deps: DeployDeps, caller: Caller, email: string, now = new Date()): Promise<SupportUserView> {
  await requirePlatformAdmin(deps, caller, "support:user", "look users up");
  const user = await findSupportUser(deps.db, email);
  if (!user) throw new DeckError("not_found", `no user with email ${email.slice(0, 80)} (see users:list)`);
  const since = new Date(now.getTime() - RECENT_ERRORS_DAYS * DAY_MS).toISOString();
  const [memberships, apps, troubles] = await Promise.all([
    membershipsOf(deps.db, user.id),
    appsOfUser(deps.db, user.id),
    recentTroublesOfUser(deps.db, { userId: user.id, email: user.email, since, limit: RECENT_ERRORS_LIMIT }),
  ]);
  const { id: _id, ...shown } = user;
  return { ...shown, orgs: memberships.map((m) => ({ slug: m.orgSlug, role: m.role })), apps, recentErrors: troubles.map(describeTrouble) };
}

/** What sign-in failures were, in words. */
const SIGN_IN_REASONS: Readonly<Record<string, string>> = {
  invalid_credentials: "wrong email or password",
  invalid_mfa_code: "wrong two-factor code",
  rate_limited: "too many attempts",
  account_suspended: "the account is suspended",
};

/** One trouble as one line. */
export function describeTrouble(t: UserTroubleRow): RecentError {
  switch (t.kind) {
    case "deploy": {
      const error = t.error?.split("\n").find((l) => l.trim())?.trim().slice(0, 300);
      return { at: t.at, app: t.app, kind: "deploy", message: error ? `deploy failed: ${error}` : "deploy failed" };
    }
    case "denied":
      return { at: t.at, app: t.app, kind: "denied", message: `permission denied: ${t.action}${t.target ? ` on ${t.target}` : ""}` };
    case "sign-in": {
      const how = t.action === "oauth:sign-in" ? "sign-in through an identity provider" : "password sign-in";
      const why = t.reason ? (SIGN_IN_REASONS[t.reason] ?? t.reason) : "refused";
      return { at: t.at, app: null, kind: "sign-in", message: `${how} failed: ${why}` };
    }
  }
}

// ---------- every organisation ----------
export interface OrgSummary {
  slug: string;
  name: string;
  /** The plan in force now (its code). */
  plan: string | null;
  members: number;
  apps: number;
  createdAt: string;
}

/** Every organisation with its plan in force now and how many members and apps it has (platform admins). */
export async function listEveryOrganization(deps: DeployDeps, caller: Caller, now = new Date()): Promise<OrgSummary[]> {
  await requirePlatformAdmin(deps, caller, "orgs:all", "list every organisation");
  const catalogue = await loadCatalogue(deps.db);
  const [orgs, histories] = await Promise.all([listOrgsWithCounts(deps.db), planHistoriesOfAllOrgs(deps.db, startingPlan(catalogue).code)]);
  return orgs.map((o) => {
    const history = histories.get(o.id);
    return { slug: o.slug, name: o.name, plan: history ? planInForce(catalogue, history, now.getTime()).code : null, members: o.members, apps: o.apps, createdAt: o.createdAt };
  });
}

// ---------- the billing overview ----------
/**
 * deck issues invoices without payment terms of their own; an open invoice counts as overdue this long
 * after it was issued (Stripe charges the saved card well before).
 */
export const PAYMENT_TERMS_DAYS = 30;
/** Orgs in the overview's usage table, and overdue invoices listed at most. */
export const TOP_USAGE_ORGS = 10;
const MAX_OVERDUE = 200;

export interface BillingOverview {
  period: { start: string; end: string };
  currency: "usd";
  /** Invoices paid this calendar month (UTC). */
  revenueCents: number;
  /** The monthly fee of every org's plan in force now (an Enterprise org's own). */
  mrrCents: number;
  subscriptions: { plan: string; orgs: number; mrrCents: number }[];
  overdue: { org: string; number: string; totalCents: number; status: string; dueAt: string | null; daysOverdue: number }[];
  topUsage: { org: string; plan: string; buildMinutes: number; bandwidthBytes: number; storageGbMonths: number; estimateCents: number }[];
}

/** Revenue, recurring revenue by plan, overdue invoices and this month's heaviest users, in a handful of queries (platform admins). */
export async function billingOverview(deps: DeployDeps, caller: Caller, now = new Date()): Promise<BillingOverview> {
  await requirePlatformAdmin(deps, caller, "billing:overview", "see the billing overview");
  const catalogue = await loadCatalogue(deps.db);
  const period = toMonthlyPeriod(now.toISOString());
  const dueAfterMs = PAYMENT_TERMS_DAYS * DAY_MS;
  const [orgs, histories, revenueCents, overdue, ledger] = await Promise.all([
    listOrgsWithCounts(deps.db),
    planHistoriesOfAllOrgs(deps.db, startingPlan(catalogue).code),
    sumPaidInvoices(deps.db, period.start, period.end),
    listOverdueInvoices(deps.db, { openedBefore: new Date(now.getTime() - dueAfterMs).toISOString(), limit: MAX_OVERDUE }),
    dailyLedgerOfAllOrgs(deps.db, period.start, period.end),
  ]);

  const byPlan = new Map<string, { plan: string; orgs: number; mrrCents: number }>();
  for (const o of orgs) {
    const plan = planInForce(catalogue, histories.get(o.id) ?? [], now.getTime());
    const row = byPlan.get(plan.code) ?? { plan: plan.code, orgs: 0, mrrCents: 0 };
    row.orgs += 1;
    row.mrrCents += plan.monthlyCents;
    byPlan.set(plan.code, row);
  }
  const subscriptions = [...byPlan.values()].sort((a, b) => b.mrrCents - a.mrrCents || b.orgs - a.orgs || a.plan.localeCompare(b.plan));

  const slugs = new Map(orgs.map((o) => [o.id, o.slug]));
  const topUsage = [...ledger].flatMap(([orgId, entries]) => {
    const history = histories.get(orgId);
    const slug = slugs.get(orgId);
    if (!history || !slug) return [];
    const input: RatingInput = { orgId, catalogue, planHistory: history, period, entries, credits: [], trace: "count" };
    return [{ org: slug, plan: planInForce(catalogue, history, now.getTime()).code, ...totalsOf(entries, period), estimateCents: spentSoFar(input, now) }];
  }).sort((a, b) => b.estimateCents - a.estimateCents || b.bandwidthBytes - a.bandwidthBytes || a.org.localeCompare(b.org)).slice(0, TOP_USAGE_ORGS);

  return {
    period, currency: catalogue.currency, revenueCents, mrrCents: subscriptions.reduce((a, s) => a + s.mrrCents, 0), subscriptions,
    overdue: overdue.map((i) => {
      const dueMs = i.openedAt ? Date.parse(i.openedAt) + dueAfterMs : null;
      return {
        org: i.org, number: i.number, totalCents: i.totalCents, status: i.status, dueAt: dueMs === null ? null : new Date(dueMs).toISOString(),
        daysOverdue: dueMs === null ? 0 : Math.max(0, Math.floor((now.getTime() - dueMs) / DAY_MS)),
      };
    }),
    topUsage,
  };
}

/** An org's month so far in the units people read: build minutes, bytes, and GB held on average over the month. */
function totalsOf(entries: readonly UsageEntry[], period: { start: string; end: string }): { buildMinutes: number; bandwidthBytes: number; storageGbMonths: number } {
  const sum = (meter: UsageEntry["meter"]) => entries.reduce((a, e) => a + (e.meter === meter ? Number(e.quantity) : 0), 0);
  const { startMs, endMs } = parsePeriod(period);
  const hours = (endMs - startMs) / 3_600_000;
  const round = (n: number, places: number) => Math.round(n * 10 ** places) / 10 ** places;
  return {
    buildMinutes: round(sum("build_seconds") / 60, 2),
    bandwidthBytes: sum("bandwidth_bytes"),
    storageGbMonths: round(sum("storage_byte_hours") / (1e9 * hours), 3),
  };
}

/**
 * What the month has cost so far, as `billing:usage` and spend caps count it (billing/account/usage-now.ts):
 * the fees accrued until now, and the usage so far beyond the whole month's allowance.
 */
function spentSoFar(input: RatingInput, now: Date): number {
  const fees = forecastPeriod(input, now.toISOString()).soFar.lines.reduce((a, l) => a + (l.kind === "fee" ? l.amountCents : 0), 0);
  const usage = rateInvoice(input).lines.reduce((a, l) => a + (l.kind === "usage" ? l.amountCents : 0), 0);
  return fees + usage;
}
