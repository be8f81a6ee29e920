/**
 * `billing:advice ORG`: where an org pays for more than it uses. Three checks, each a plain finding
 * with the numbers behind it and what to run:
 * - idle apps: a live release and web processes, but no request through the router in 7 days;
 * - scale above need: more web processes than the busiest hour of the last 7 days asks for (one web
 *   process per ADVICE_RPS_PER_PROCESS requests/s, at least one);
 * - a cheaper plan: each plan of the catalogue rated over the last 3 closed months of the org's ledger
 *   (as if the org had been on it all along), against what its plans cost it; a plan without a fee only
 *   when no month's builds went past its minutes (it stops builds there).
 */
import { findPlan, rateInvoice, startingPlan, toMonthlyPeriod, type Catalogue, type Plan } from "../../core/index.ts";
import { loadCatalogue, planHistoryOf, q, toIso, usageEntriesOf, type Db } from "../../store/queries/index.ts";

/** Requests per second one web process is taken to serve comfortably, for the scale check. */
export const ADVICE_RPS_PER_PROCESS = 20;
const IDLE_DAYS = 7;
const PLAN_MONTHS = 3;

export type Finding =
  | { kind: "idle_app"; app: string; processes: number; text: string; command: string }
  | { kind: "over_scaled"; app: string; web: number; enough: number; peakRps: number; text: string; command: string }
  | { kind: "cheaper_plan"; plan: string; currentCents: number; planCents: number; months: string[]; text: string; command: string };

export interface Advice {
  orgId: number;
  findings: Finding[];
}

export async function adviseOrg(db: Db, orgId: number, slug: string, now = new Date()): Promise<Advice> {
  const findings: Finding[] = [];
  const since = new Date(now.getTime() - IDLE_DAYS * 86_400_000).toISOString();
  const apps = await db.any(q`
    SELECT a.name, a.formation, a.created_at,
           COALESCE((SELECT sum(requests) FROM bandwidth_usage b WHERE b.app_id = a.id AND b.hour >= ${since}::timestamptz), 0) AS requests,
           COALESCE((SELECT max(requests) FROM bandwidth_usage b WHERE b.app_id = a.id AND b.hour >= ${since}::timestamptz), 0) AS busiest_hour
      FROM apps a
     WHERE a.org_id = ${orgId} AND a.live_deployment_id IS NOT NULL AND NOT a.stopped
     ORDER BY a.name`);
  for (const a of apps) {
    const formation = (typeof a.formation === "string" ? JSON.parse(a.formation) : a.formation ?? {}) as Record<string, number>;
    const web = formation.web ?? 1;
    const processes = Object.values({ web: 1, ...formation }).reduce((n, c) => n + c, 0);
    const name = String(a.name);
    // An app younger than the window has not had the time to be idle.
    const oldEnough = Date.parse(toIso(a.created_at)) <= Date.parse(since);
    if (Number(a.requests) === 0 && web > 0 && oldEnough) {
      findings.push({
        kind: "idle_app", app: name, processes,
        text: `${name} has had no requests in ${IDLE_DAYS} days but runs ${processes} process${processes === 1 ? "" : "es"}`,
        command: `ps:stop ${name} (or apps:destroy ${name} --confirm ${name})`,
      });
      continue;
    }
    const peakRps = Number(a.busiest_hour) / 3600;
    const enough = Math.max(1, Math.ceil(peakRps / ADVICE_RPS_PER_PROCESS));
    if (web > enough) {
      findings.push({
        kind: "over_scaled", app: name, web, enough, peakRps,
        text: `${name} runs ${web} web processes; its busiest hour in ${IDLE_DAYS} days averaged ${peakRps.toFixed(2)} requests/s, which ${enough} handle${enough === 1 ? "s" : ""}`,
        command: `ps:scale ${name} web=${enough}`,
      });
    }
  }
  const cheaper = await cheaperPlan(db, orgId, now);
  if (cheaper) findings.push({ ...cheaper, command: `billing:plan ${slug} ${cheaper.plan}` });
  return { orgId, findings };
}

/** The plan that would have cost least over the last closed months, when it is not what the org paid. */
async function cheaperPlan(db: Db, orgId: number, now: Date): Promise<Omit<Extract<Finding, { kind: "cheaper_plan" }>, "command"> | null> {
  const catalogue: Catalogue = await loadCatalogue(db);
  const history = await planHistoryOf(db, orgId, startingPlan(catalogue).code);
  const created = Date.parse(history[0]?.from ?? now.toISOString());
  const months: Array<{ start: string; end: string }> = [];
  for (let i = 1; i <= PLAN_MONTHS; i++) {
    const p = toMonthlyPeriod(new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - i, 1)).toISOString());
    if (Date.parse(p.start) >= created) months.push(p);
  }
  if (months.length === 0) return null;
  const ledger = await Promise.all(months.map((p) => usageEntriesOf(db, orgId, p.start, p.end)));
  const rate = (planHistory: Parameters<typeof rateInvoice>[0]["planHistory"]) =>
    months.reduce((sum, period, i) => sum + rateInvoice({ orgId, catalogue, planHistory, period, entries: ledger[i]!, trace: "count" }).totalCents, 0);
  const currentCents = rate(history);
  let best: { plan: Plan; cents: number } | null = null;
  // A plan without a fee stops builds at its minutes (quota.ts): it fits only if no month went past them.
  const buildMinutes = ledger.map((entries) => entries.reduce((n, e) => n + (e.meter === "build_seconds" ? Number(e.quantity) : 0), 0) / 60);
  const fits = (plan: Plan) => plan.monthlyCents > 0 || plan.allowances.build_minutes === null || buildMinutes.every((m) => m <= (plan.allowances.build_minutes ?? 0));
  for (const plan of catalogue.plans.filter((p) => !p.custom && fits(p))) {
    const cents = rate([{ plan: plan.code, from: months.at(-1)!.start }]);
    if (best === null || cents < best.cents) best = { plan, cents };
  }
  const now0 = [...history].reverse().find((h) => Date.parse(h.from) <= now.getTime());
  if (!best || best.cents >= currentCents || (now0 && findPlan(catalogue, now0.plan)?.code === best.plan.code)) return null;
  const dollars = (c: number) => `$${(c / 100).toFixed(2)}`;
  const names = months.map((m) => m.start.slice(0, 7)).reverse();
  return {
    kind: "cheaper_plan", plan: best.plan.code, currentCents, planCents: best.cents, months: names,
    text: `on ${best.plan.name} the last ${months.length} month(s) (${names.join(", ")}) would have cost ${dollars(best.cents)} instead of ${dollars(currentCents)}`,
  };
}
