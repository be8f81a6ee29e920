/**
 * An org's billing month so far, live: the plan in force, the ledger until now rated, and a forecast to
 * the end of the month (core/billing forecastPeriod). What `billing:usage`, quotas and spend caps read.
 */
import { findPlan, forecastPeriod, toMonthlyPeriod, type Forecast, type Plan, type RatingInput } from "../../core/index.ts";
import { loadCatalogue, openCreditsOf, planHistoryOf, usageEntriesOf, type Db } from "../../store/queries/index.ts";

export interface UsageNow {
  orgId: number;
  /** The plan in force now (an Enterprise org's own terms). */
  plan: Plan;
  input: RatingInput;
  forecast: Forecast;
}

export async function usageNow(db: Db, orgId: number, now = new Date()): Promise<UsageNow> {
  const catalogue = await loadCatalogue(db);
  const period = toMonthlyPeriod(now.toISOString());
  const planHistory = await planHistoryOf(db, orgId, catalogue.plans[0]!.code);
  const [entries, credits] = await Promise.all([usageEntriesOf(db, orgId, period.start, period.end), openCreditsOf(db, orgId)]);
  const input: RatingInput = { orgId, catalogue, planHistory, period, entries, credits, trace: "count" };
  const forecast = forecastPeriod(input, now.toISOString());
  const current = [...planHistory].reverse().find((h) => Date.parse(h.from) <= now.getTime()) ?? planHistory[0]!;
  const plan = current.customPlan ?? findPlan(catalogue, current.plan) ?? catalogue.plans[0]!;
  return { orgId, plan, input, forecast };
}
