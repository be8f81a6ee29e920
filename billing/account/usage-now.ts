/**
 * An org's billing month so far, live: the plan in force, the ledger until now rated, and a forecast to
 * the end of the month (core/billing forecastPeriod). What `billing:usage`, quotas and spend caps read.
 */
import { forecastPeriod, planInForce, rateInvoice, startingPlan, toMonthlyPeriod, type Forecast, type Plan, type RatedInvoice, type RatingInput } from "../../core/index.ts";
import { loadCatalogue, openCreditsOf, planHistoryOf, usageEntriesOf, type Db } from "../../store/queries/index.ts";

export interface UsageNow {
  orgId: number;
  /** The plan in force now (an Enterprise org's own terms). */
  plan: Plan;
  input: RatingInput;
  forecast: Forecast;
  /**
   * What the month has cost so far, as spend caps count it: the fees accrued until now, and the usage
   * so far beyond the whole month's allowance (usage within the allowance costs nothing, however early
   * in the month). Credits are not taken off.
   */
  spentCents: number;
  /** The whole month rated with the ledger as it is now: its usage lines hold what was used so far against the whole month's allowance. */
  monthSoFar: RatedInvoice;
}

export async function usageNow(db: Db, orgId: number, now = new Date()): Promise<UsageNow> {
  const catalogue = await loadCatalogue(db);
  const period = toMonthlyPeriod(now.toISOString());
  const planHistory = await planHistoryOf(db, orgId, startingPlan(catalogue).code);
  const [entries, credits] = await Promise.all([usageEntriesOf(db, orgId, period.start, period.end), openCreditsOf(db, orgId)]);
  const input: RatingInput = { orgId, catalogue, planHistory, period, entries, credits, trace: "count" };
  const forecast = forecastPeriod(input, now.toISOString());
  const fees = forecast.soFar.lines.reduce((a, l) => a + (l.kind === "fee" ? l.amountCents : 0), 0);
  const monthSoFar = rateInvoice({ ...input, credits: [] });
  const usage = monthSoFar.lines.reduce((a, l) => a + (l.kind === "usage" ? l.amountCents : 0), 0);
  const plan = planInForce(catalogue, planHistory, now.getTime());
  return { orgId, plan, input, forecast, spentCents: fees + usage, monthSoFar };
}
